"""The store under concurrent use from threads, and from two connections to one file (as two processes would)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from agent.models import TaskStatus
from agent.store import SqliteStore, StoreError, memory_store

from .conftest import at, make_result, task_id

THREADS = 16
T = TypeVar("T")


def _all_at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(0..count-1)` on `count` threads released together by a barrier; re-raise any thread's error."""
    barrier = threading.Barrier(count)

    def start(index: int) -> T:
        barrier.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count)))


def test_concurrent_inserts_of_one_id_have_exactly_one_winner(store: SqliteStore) -> None:
    outcomes = _all_at_once(THREADS, lambda index: store.insert(make_result(1, run=index + 1)))
    assert outcomes.count(True) == 1
    winner = outcomes.index(True)
    stored = store.get(task_id(1))
    assert stored is not None and stored.run == winner + 1


def test_concurrent_inserts_through_two_connections_to_one_file_have_exactly_one_winner(db_path: Path) -> None:
    stores = [SqliteStore(db_path), SqliteStore(db_path)]
    try:
        for round_number in range(20):
            outcomes = _all_at_once(
                THREADS, lambda index, n=round_number: stores[index % 2].insert(make_result(n, run=index + 1))
            )
            assert outcomes.count(True) == 1, f"round {round_number}: {outcomes}"
        assert len(stores[0].list(limit=1000)) == 20
    finally:
        for opened in stores:
            opened.close()


def test_connections_opening_a_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    # The agent starting on a fresh volume while `nodetask-agent tasks` (or a probe) opens the same file: whoever
    # creates the schema, every opener must get the store, none a "table already exists".
    for round_number in range(10):
        path = tmp_path / f"fresh-{round_number}.db"
        stores = _all_at_once(4, lambda _, fresh=path: SqliteStore(fresh))
        try:
            stores[0].save(make_result(1))
            assert all(opened.get(task_id(1)) == make_result(1) for opened in stores)
        finally:
            for opened in stores:
                opened.close()


def test_concurrent_saves_and_reads_from_threads_see_only_whole_rows(store: SqliteStore) -> None:
    rows_per_thread = 40

    def writer(index: int) -> None:
        for step in range(rows_per_thread):
            number = index * 1000 + step
            store.save(make_result(number, params={"writer": index, "step": step}))
            store.save(make_result(number, status=TaskStatus.COMPLETED, completed_at=at(number + 1), run=2))

    def reader(_: int) -> int:
        seen = 0
        for _ in range(rows_per_thread):
            for row in store.list(limit=50):
                # A row is written in one statement: a completed row always carries its completion fields.
                assert (row.status is TaskStatus.COMPLETED) == (row.completed_at is not None) == (row.run == 2)
                seen += 1
            store.list_stale()
            store.latest_by_type("config-patch", status=TaskStatus.COMPLETED, order_by="completed_at")
            assert store.ping()
        return seen

    writers = THREADS // 2
    _all_at_once(THREADS, lambda index: writer(index) if index < writers else reader(index))
    rows = store.list(limit=10_000)
    assert len(rows) == writers * rows_per_thread
    assert all(row.status is TaskStatus.COMPLETED for row in rows)
    assert store.list_stale() == []


def test_memory_store_is_one_database_for_every_thread() -> None:
    shared = memory_store()
    try:
        shared.save(make_result(1))
        seen_elsewhere = _all_at_once(4, lambda _: shared.get(task_id(1)))
        assert all(row is not None and row.id == task_id(1) for row in seen_elsewhere)
        _all_at_once(4, lambda index: shared.save(make_result(10 + index)))
        assert len(shared.list()) == 5
    finally:
        shared.close()


def test_two_memory_stores_are_separate_databases() -> None:
    first, second = memory_store(), memory_store()
    try:
        first.save(make_result(1))
        assert second.get(task_id(1)) is None
    finally:
        first.close()
        second.close()


def test_close_while_other_threads_work_ends_them_with_store_errors_not_crashes(store: SqliteStore) -> None:
    started = threading.Event()

    def busy(index: int) -> str:
        try:
            for step in range(10_000):
                store.save(make_result(index * 100_000 + step))
                started.set()
        except StoreError as error:
            return str(error)
        return "finished"

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(busy, index) for index in range(3)]
        assert started.wait(10)
        store.close()
        outcomes = [future.result() for future in futures]
    assert all("closed" in outcome or outcome == "finished" for outcome in outcomes)
    assert any("closed" in outcome for outcome in outcomes)


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_rows_written_by_threads_survive_reopening(db_path: Path, synchronous: str) -> None:
    opened = SqliteStore(db_path, synchronous=synchronous)  # type: ignore[arg-type]
    _all_at_once(8, lambda index: opened.save(make_result(index)))
    opened.close()
    with SqliteStore(db_path) as reopened:
        assert sorted(row.id for row in reopened.list()) == [task_id(n) for n in range(8)]

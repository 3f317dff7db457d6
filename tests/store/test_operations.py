"""Every store operation, on a real SQLite file and on the memory store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from agent.models import Progress, ResourceRef, RetryPolicy, TaskResult, TaskStatus, TaskType
from agent.store import SqliteStore, StoreError

from .conftest import at, make_result, task_id

FULL_ROW = dict(
    type="snapshot-restore",
    status=TaskStatus.FAILED,
    run=3,
    resumes=2,
    params={"bucket": "snapshots", "prefix": "pacific-1/", "options": {"verify": True, "parts": [1, 2.5, None]}},
    result={"height": 123456789, "sha256": "ab" * 32},
    error="download of s3://snapshots/pacific-1/x.tar.lz4 failed: NoSuchKey",
    reason="ChecksumMismatch",
    hint="check the snapshot key",
    retryable=True,
    started_at=at(1.5),
    completed_at=at(90.25),
    timeout_seconds=3600,
    retry=RetryPolicy(limit=4, backoff_seconds=2.5),
    retry_nonce="second-try",
    source=ResourceRef(namespace="sei", name="restore-1", uid="4f0c9a8e-uid", generation=7),
)


def test_save_then_get_returns_every_persisted_field(store: SqliteStore) -> None:
    saved = make_result(1, **FULL_ROW)
    store.save(saved)
    assert store.get(saved.id) == saved


def test_progress_is_not_persisted(store: SqliteStore) -> None:
    store.save(make_result(1, progress=Progress(current=5, total=10, unit="bytes")))
    loaded = store.get(task_id(1))
    assert loaded is not None and loaded.progress is None


def test_get_of_absent_id_is_none(store: SqliteStore) -> None:
    store.save(make_result(1))
    assert store.get(task_id(2)) is None


def test_save_overwrites_every_column_of_an_existing_row(store: SqliteStore) -> None:
    store.save(make_result(1, **FULL_ROW))
    replacement = make_result(1, type="mark-ready", status=TaskStatus.RUNNING, submitted_at=at(500))
    store.save(replacement)
    assert store.get(task_id(1)) == replacement
    assert len(store.list()) == 1


@pytest.mark.parametrize(
    "value",
    [
        {"greeting": "héllo wörld", "cjk": "節點", "emoji": "🚀", "rtl": "שלום"},
        {"deep": {"deeper": {"deepest": [{"a": [1, [2, [3]]]}]}}},
        {"int": 2**63 - 1, "big": 2**80, "negative": -5, "float": 0.1, "exp": 1e-300, "bool": False, "null": None},
        {"empty_object": {}, "empty_list": [], "empty_string": "", "quote": "\"'\\\n\t"},
        {},
    ],
    ids=["unicode", "nested", "numbers", "empties", "empty-dict"],
)
def test_params_and_result_round_trip_through_json(store: SqliteStore, value: dict[str, Any]) -> None:
    store.save(make_result(1, params=value, result=value))
    loaded = store.get(task_id(1))
    assert loaded is not None
    assert loaded.params == value and loaded.result == value


def test_absent_params_and_result_read_back_as_none(store: SqliteStore) -> None:
    store.save(make_result(1, params=None, result=None))
    loaded = store.get(task_id(1))
    assert loaded is not None and loaded.params is None and loaded.result is None


def test_absent_params_are_stored_as_json_null_and_result_as_sql_null_like_the_seed(
    file_store: SqliteStore, raw_sql: Callable[..., list[tuple[Any, ...]]]
) -> None:
    file_store.save(make_result(1, params=None, result=None))
    assert raw_sql("SELECT params, result FROM task_results") == [("null", None)]


def test_timestamps_are_stored_as_fixed_width_utc_text(
    file_store: SqliteStore, raw_sql: Callable[..., list[tuple[Any, ...]]]
) -> None:
    file_store.save(make_result(0, submitted_at=at(0), completed_at=at(0.1)))
    assert raw_sql("SELECT submitted_at, completed_at FROM task_results") == [
        ("2026-03-31T22:36:27.000000Z", "2026-03-31T22:36:27.100000Z")
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [("params", {"ratio": float("nan")}), ("result", {"when": datetime(2026, 1, 1)}), ("result", {"set": {1, 2}})],
    ids=["nan-params", "datetime-result", "set-result"],
)
def test_save_of_non_json_value_is_refused_naming_task_and_field(
    store: SqliteStore, field: str, value: dict[str, Any]
) -> None:
    bad = make_result(1).model_copy(update={field: value})
    with pytest.raises(StoreError, match=rf"{task_id(1)}.*{field}"):
        store.save(bad)
    with pytest.raises(StoreError, match=field):
        store.insert(bad)
    assert store.get(task_id(1)) is None


def test_save_many_writes_every_row_and_overwrites_existing_ones(store: SqliteStore) -> None:
    store.save(make_result(1, **FULL_ROW))
    rows = [make_result(n, status=TaskStatus.RUNNING, resumes=1) for n in range(1, 4)]
    store.save_many(rows)
    assert [store.get(task_id(n)) for n in range(1, 4)] == rows


def test_save_many_with_an_unencodable_row_writes_none(store: SqliteStore) -> None:
    rows = [make_result(1), make_result(2).model_copy(update={"result": {"ratio": float("nan")}})]
    with pytest.raises(StoreError, match=rf"{task_id(2)}.*result"):
        store.save_many(rows)
    assert store.get(task_id(1)) is None


def test_save_many_refused_by_the_database_midway_keeps_the_rows_as_they_were(
    file_store: SqliteStore, raw_sql: Callable[..., list[tuple[Any, ...]]]
) -> None:
    before = [make_result(n, status=TaskStatus.RUNNING) for n in range(1, 4)]
    file_store.save_many(before)
    raw_sql(
        "CREATE TRIGGER refuse_third BEFORE INSERT ON task_results "
        f"WHEN NEW.id = '{task_id(3)}' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
    )
    with pytest.raises(StoreError, match="refused by trigger"):
        file_store.save_many([row.model_copy(update={"resumes": 1}) for row in before])
    assert [file_store.get(task_id(n)) for n in range(1, 4)] == before


def test_unpaired_surrogates_are_stored_as_replacement_characters(store: SqliteStore) -> None:
    store.save(make_result(1, error="bad \ud800 byte", params={"name": "x\udfffy"}))
    loaded = store.get(task_id(1))
    assert loaded is not None
    assert loaded.error == "bad \ufffd byte"
    assert loaded.params == {"name": "x\ufffdy"}


def test_insert_adds_an_absent_row_and_refuses_an_existing_one_unchanged(store: SqliteStore) -> None:
    first = make_result(1, **FULL_ROW)
    assert store.insert(first) is True
    assert store.insert(make_result(1, type="mark-ready")) is False
    assert store.get(task_id(1)) == first


def test_delete_reports_whether_a_row_was_removed(store: SqliteStore) -> None:
    store.save(make_result(1))
    store.save(make_result(2))
    assert store.delete(task_id(1)) is True
    assert store.delete(task_id(1)) is False
    assert store.get(task_id(1)) is None
    assert [row.id for row in store.list()] == [task_id(2)]


def test_list_is_newest_first_and_honours_the_limit(store: SqliteStore) -> None:
    for number in (3, 1, 5, 2, 4):
        store.save(make_result(number))
    assert [row.id for row in store.list()] == [task_id(n) for n in (5, 4, 3, 2, 1)]
    assert [row.id for row in store.list(limit=2)] == [task_id(5), task_id(4)]
    assert store.list(limit=0) == []


def test_list_orders_rows_inside_one_second_by_their_fraction(store: SqliteStore) -> None:
    # The seed's trimmed timestamps sorted "...27Z" after "...27.9Z"; fixed-width text must not.
    fractions = {1: 0.0, 2: 0.9, 3: 0.1234, 4: 0.000001, 5: 0.5}
    for number, fraction in fractions.items():
        store.save(make_result(number, submitted_at=at(fraction)))
    newest_first = sorted(fractions, key=lambda number: fractions[number], reverse=True)
    assert [row.id for row in store.list()] == [task_id(n) for n in newest_first]


def test_list_breaks_exact_timestamp_ties_by_id(store: SqliteStore) -> None:
    for number in (2, 3, 1):
        store.save(make_result(number, submitted_at=at(0)))
    assert [row.id for row in store.list()] == [task_id(3), task_id(2), task_id(1)]


def test_list_refuses_a_negative_limit(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.list(limit=-1)


def test_list_stale_returns_only_running_rows_oldest_first(store: SqliteStore) -> None:
    store.save(make_result(4))
    store.save(make_result(1))
    store.save(make_result(2, status=TaskStatus.COMPLETED, completed_at=at(3)))
    store.save(make_result(3, status=TaskStatus.FAILED, completed_at=at(3)))
    store.save(make_result(5, status=TaskStatus.CANCELLED, completed_at=at(6)))
    store.save(make_result(0, submitted_at=at(0.5)))
    assert [row.id for row in store.list_stale()] == [task_id(0), task_id(1), task_id(4)]


def test_list_stale_is_empty_when_nothing_runs(store: SqliteStore) -> None:
    store.save(make_result(1, status=TaskStatus.COMPLETED, completed_at=at(2)))
    assert store.list_stale() == []


def _readiness_history(store: SqliteStore) -> None:
    """mark-ready rows whose submission order differs from their completion order, plus noise of other types."""
    ready = TaskType.MARK_READY.value
    store.save(make_result(1, type=ready, status=TaskStatus.COMPLETED, completed_at=at(50)))
    store.save(make_result(2, type=ready, status=TaskStatus.COMPLETED, completed_at=at(20)))
    store.save(make_result(3, type=ready, status=TaskStatus.FAILED, completed_at=at(30)))
    store.save(make_result(4, type=ready, status=TaskStatus.RUNNING))
    store.save(make_result(9, type=TaskType.MARK_NOT_READY.value, status=TaskStatus.COMPLETED, completed_at=at(99)))


@pytest.mark.parametrize(
    ("status", "order_by", "expected"),
    [
        (None, "submitted_at", 4),
        (None, "completed_at", 1),
        (TaskStatus.COMPLETED, "submitted_at", 2),
        (TaskStatus.COMPLETED, "completed_at", 1),
        (TaskStatus.FAILED, "submitted_at", 3),
        (TaskStatus.RUNNING, "submitted_at", 4),
        (TaskStatus.RUNNING, "completed_at", None),
        (TaskStatus.CANCELLED, "submitted_at", None),
    ],
)
def test_latest_by_type_picks_the_newest_matching_row(
    store: SqliteStore, status: TaskStatus | None, order_by: Any, expected: int | None
) -> None:
    _readiness_history(store)
    latest = store.latest_by_type(TaskType.MARK_READY, status=status, order_by=order_by)
    assert (latest.id if latest else None) == (task_id(expected) if expected else None)


def test_latest_by_type_of_a_type_without_rows_is_none(store: SqliteStore) -> None:
    _readiness_history(store)
    assert store.latest_by_type("snapshot-upload") is None


def test_latest_by_type_refuses_an_unknown_order(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="order_by"):
        store.latest_by_type("mark-ready", order_by="id")  # type: ignore[arg-type]


NOW = at(10_000)


def _old(number: int, task_type: str = "config-patch", status: TaskStatus = TaskStatus.COMPLETED) -> TaskResult:
    return make_result(number, type=task_type, status=status, completed_at=at(number + 0.5))


def test_prune_deletes_old_terminal_rows_and_keeps_recent_and_running_ones(store: SqliteStore) -> None:
    store.save(_old(1))
    store.save(_old(2, status=TaskStatus.FAILED))
    store.save(_old(3, status=TaskStatus.CANCELLED))
    store.save(make_result(4, status=TaskStatus.RUNNING))  # old but still running
    store.save(make_result(5, status=TaskStatus.COMPLETED, completed_at=NOW - timedelta(seconds=1)))  # recent
    assert store.prune(NOW - timedelta(seconds=100)) == 3
    assert sorted(row.id for row in store.list()) == [task_id(4), task_id(5)]
    assert store.prune(NOW - timedelta(seconds=100)) == 0


def test_prune_keeps_the_newest_completed_readiness_rows(store: SqliteStore) -> None:
    ready, hold = TaskType.MARK_READY.value, TaskType.MARK_NOT_READY.value
    store.save(_old(1, ready))
    store.save(_old(2, ready))  # newest completed mark-ready: kept
    store.save(_old(3, ready, TaskStatus.FAILED))  # newer, but failed: readiness never comes from it
    store.save(_old(4, hold))
    store.save(_old(5, hold))  # newest completed mark-not-ready: kept
    # Submitted last but completed first: the newest by submission is kept as well as the newest by completion.
    store.save(make_result(6, type=hold, status=TaskStatus.COMPLETED, completed_at=at(4)))
    deleted = store.prune(NOW)
    assert sorted(row.id for row in store.list()) == [task_id(2), task_id(5), task_id(6)]
    assert deleted == 3
    assert store.latest_by_type(ready, status=TaskStatus.COMPLETED, order_by="completed_at") == _old(2, ready)


def test_prune_ages_a_terminal_row_without_completion_time_by_its_submission(store: SqliteStore) -> None:
    store.save(make_result(1, status=TaskStatus.FAILED))
    store.save(make_result(2, status=TaskStatus.FAILED, submitted_at=NOW))
    assert store.prune(NOW - timedelta(seconds=1)) == 1
    assert [row.id for row in store.list()] == [task_id(2)]


def test_prune_refuses_a_naive_datetime(store: SqliteStore) -> None:
    store.save(_old(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.prune(datetime(2030, 1, 1))
    assert store.get(task_id(1)) is not None


def test_ping_answers_while_open(store: SqliteStore) -> None:
    assert store.ping() is True


def test_after_close_ping_is_false_and_every_call_raises_naming_the_store(store: SqliteStore) -> None:
    store.save(make_result(1))
    store.close()
    store.close()  # idempotent
    assert store.ping() is False
    calls: list[Callable[[], object]] = [
        lambda: store.get(task_id(1)),
        lambda: store.save(make_result(2)),
        lambda: store.insert(make_result(2)),
        lambda: store.list(),
        lambda: store.list_stale(),
        lambda: store.delete(task_id(1)),
        lambda: store.latest_by_type("config-patch"),
        lambda: store.prune(NOW),
    ]
    for call in calls:
        with pytest.raises(StoreError, match=rf"task store {store.path} is closed"):
            call()


def test_store_is_a_context_manager_that_closes(store: SqliteStore) -> None:
    with store as same:
        assert same.ping()
    assert store.ping() is False

"""The engine's rules (docs/design.md section 4), one test or parametrized group per rule.

Engine tests register small controllable handlers under real task type names (the engine, not the handler, is under
test); the readiness handlers are the real ones. Every test runs against a real SQLite file.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.engine import Engine, EngineClosed, EventKind, TaskEvent
from agent.engine.engine import RESUME_SPACING
from agent.engine.transitions import LOG_FIELDS, TRANSITION_LOGGER
from agent.models import (
    InvalidTaskID,
    Reason,
    ResourceRef,
    RetryPolicy,
    Task,
    TaskError,
    TaskStatus,
    TaskType,
    UnsupportedType,
    utcnow,
)
from agent.models.params import TaskParams
from agent.models.settings import AgentSettings
from agent.store import SqliteStore
from agent.tasks import HandlerRegistry, HandlerSpec, TaskContext
from agent.tasks.readiness import HANDLERS as READINESS_HANDLERS
from tests.fixtures.waiting import wait_until

ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
OTHER_ID = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"

# Test handlers borrow real type names; the engine only cares that the type is registered.
WORK = TaskType.AWAIT_CONDITION
CRASH = TaskType.CONFIG_VALIDATE
TYPED = TaskType.RESULT_EXPORT
FAILING = TaskType.CONFIG_PATCH


class WorkParams(TaskParams):
    label: str = ""
    fail_times: int = 0
    ignore_cancel: bool = False


class TypedParams(TaskParams):
    height: int
    mode: str = "full"


class Work:
    """A handler whose runs the test controls: it blocks until released, and records what happened to it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.release = asyncio.Event()
        self.failures_left: dict[str, int] = {}
        self.entered = asyncio.Event()

    async def __call__(self, params: WorkParams, ctx: TaskContext) -> dict[str, Any]:
        self.started.append(ctx.task_id)
        self.entered.set()
        remaining = self.failures_left.setdefault(ctx.task_id, params.fail_times)
        try:
            if params.ignore_cancel:
                await _shielded(self.release.wait())
            else:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(ctx.task_id)
            raise
        if remaining > 0:
            self.failures_left[ctx.task_id] = remaining - 1
            raise TaskError(f"planned failure, {remaining - 1} left", reason="Planned")
        self.finished.append(ctx.task_id)
        return {"label": params.label, "run": ctx.run, "resumes": ctx.resumes}


async def _shielded(awaitable: Any) -> None:
    """Wait for `awaitable` even through cancellation (a misbehaving handler)."""
    inner = asyncio.ensure_future(awaitable)
    while not inner.done():
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            continue


async def crash(params: WorkParams, ctx: TaskContext) -> dict[str, Any]:
    raise KeyError("boom-key")


async def typed(params: TypedParams, ctx: TaskContext) -> dict[str, Any]:
    return {"height": params.height}


async def failing_with_result(params: WorkParams, ctx: TaskContext) -> dict[str, Any]:
    raise TaskError("committed but failed", reason="InactiveProposal", result={"inclusionStatus": "committed_failed"})


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture
def work() -> Work:
    return Work()


@pytest.fixture
def registry(work: Work) -> HandlerRegistry:
    return HandlerRegistry(
        [
            HandlerSpec(WORK, WorkParams, work),
            HandlerSpec(CRASH, WorkParams, crash),
            HandlerSpec(TYPED, TypedParams, typed),
            HandlerSpec(FAILING, WorkParams, failing_with_result),
            *READINESS_HANDLERS,
        ]
    )


class Harness:
    """Opens engines on one store file, as successive agent processes would."""

    def __init__(self, registry: HandlerRegistry, db_path: Path, settings: AgentSettings):
        self.registry = registry
        self.db_path = db_path
        self.settings = settings
        self.stores: list[SqliteStore] = []
        self.events: list[TaskEvent] = []

    def engine(self, **options: Any) -> Engine:
        store = SqliteStore(self.db_path)
        self.stores.append(store)
        engine = Engine(self.registry, store, self.settings, stop_grace=1.0, **options)
        engine.add_listener(self.events.append)
        return engine

    def kinds(self, task_id: str) -> list[EventKind]:
        return [event.kind for event in self.events if event.result.id == task_id]

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
async def harness(registry: HandlerRegistry, db_path: Path, settings: AgentSettings) -> AsyncIterator[Harness]:
    harness = Harness(registry, db_path, settings)
    yield harness
    harness.close()


@pytest.fixture
async def engine(harness: Harness) -> AsyncIterator[Engine]:
    engine = harness.engine()
    yield engine
    await engine.shutdown(grace=1)


def task(task_type: TaskType = WORK, task_id: str | None = ID, **fields: Any) -> Task:
    return Task(id=task_id, type=task_type, **fields)


# ------------------------------------------------------------------------ submit


async def test_new_task_runs_to_completion_and_is_stored(engine: Engine, work: Work, harness: Harness) -> None:
    work.release.set()
    task_id = await engine.submit(task(params={"label": "x"}))
    result = await engine.wait(task_id)
    assert result.status is TaskStatus.COMPLETED
    assert result.result == {"label": "x", "run": 1, "resumes": 0}
    assert (result.run, result.resumes, result.reason) == (1, 0, Reason.SUCCEEDED)
    assert result.completed_at is not None and result.started_at is not None
    assert harness.kinds(task_id) == [EventKind.ACCEPTED, EventKind.STARTED, EventKind.SUCCEEDED]


async def test_a_failure_carrying_a_result_stores_it_with_the_failure(engine: Engine) -> None:
    """A gov task's failure keeps its `inclusionStatus`: a controller branches on it."""
    result = await engine.wait(await engine.submit(task(FAILING)))
    assert (result.status, result.reason) == (TaskStatus.FAILED, "InactiveProposal")
    assert result.result == {"inclusionStatus": "committed_failed"}
    assert (await engine.get(ID)).result == {"inclusionStatus": "committed_failed"}  # type: ignore[union-attr]


async def test_submit_while_running_is_a_no_op(engine: Engine, work: Work) -> None:
    await engine.submit(task())
    await work.entered.wait()
    assert await engine.submit(task()) == ID
    work.release.set()
    await engine.wait(ID)
    assert work.started == [ID]


async def test_submit_of_a_completed_task_is_a_no_op(engine: Engine, work: Work) -> None:
    work.release.set()
    await engine.wait(await engine.submit(task()))
    assert await engine.submit(task(retry_nonce="new")) == ID
    assert work.started == [ID]
    stored = await engine.get(ID)
    assert stored is not None and stored.run == 1 and stored.status is TaskStatus.COMPLETED


@pytest.mark.parametrize(
    ("first_nonce", "second_nonce", "retry", "reruns"),
    [
        (None, None, False, False),
        ("a", "a", False, False),
        ("a", None, False, False),
        ("a", "b", False, True),
        (None, "b", False, True),
        (None, None, True, True),
    ],
)
async def test_failed_task_reruns_only_when_asked(
    engine: Engine, work: Work, first_nonce: str | None, second_nonce: str | None, retry: bool, reruns: bool
) -> None:
    work.release.set()
    await engine.wait(await engine.submit(task(params={"failTimes": 1}, retry_nonce=first_nonce)))
    failed = await engine.get(ID)
    assert failed is not None and failed.status is TaskStatus.FAILED and failed.reason == "Planned"

    await engine.submit(task(params={"failTimes": 1}, retry_nonce=second_nonce), retry=retry)
    result = await engine.wait(ID)
    if reruns:
        assert (result.status, result.run, result.error) == (TaskStatus.COMPLETED, 2, "")
        assert work.started == [ID, ID]
    else:
        assert (result.status, result.run) == (TaskStatus.FAILED, 1)
        assert work.started == [ID]


async def test_concurrent_submits_of_one_id_run_it_once(engine: Engine, work: Work) -> None:
    ids = await asyncio.gather(*(engine.submit(task()) for _ in range(50)))
    assert set(ids) == {ID}
    work.release.set()
    await engine.wait(ID)
    assert work.started == [ID]


async def test_two_engines_on_one_store_file_never_both_run_a_task(harness: Harness, work: Work) -> None:
    first, second = harness.engine(), harness.engine()
    await asyncio.gather(first.submit(task()), second.submit(task()))
    work.release.set()
    await asyncio.gather(first.wait(ID), second.wait(ID))
    assert work.started == [ID]
    await first.shutdown()
    await second.shutdown()


@pytest.mark.parametrize(
    "spelling",
    [
        "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
        "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
        "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "6ba7b8109dad11d180b400c04fd430c8",
    ],
)
async def test_task_ids_are_canonicalised_so_spellings_of_one_uuid_are_one_task(
    engine: Engine, work: Work, spelling: str
) -> None:
    work.release.set()
    await engine.wait(await engine.submit(task()))
    assert await engine.submit(task(task_id=spelling)) == ID
    assert work.started == [ID]


@pytest.mark.parametrize(
    "bad_id",
    ["not-a-uuid", "6ba7b810-9dad-11d1-80b4-00c04fd430c", "6ba7b8109dad-11d1-80b4-00c04fd430c8x", "../../etc", " "],
)
async def test_invalid_task_id_is_refused_and_nothing_is_stored(engine: Engine, bad_id: str) -> None:
    with pytest.raises(InvalidTaskID, match="valid UUID") as caught:
        await engine.submit(task(task_id=bad_id))
    assert caught.value.reason == Reason.INVALID_TASK_ID
    assert await engine.recent() == []


async def test_unknown_type_is_refused_and_nothing_is_stored(engine: Engine) -> None:
    with pytest.raises(UnsupportedType, match="no-such-type") as caught:
        await engine.submit(Task(id=ID, type="no-such-type"))
    assert caught.value.reason == Reason.UNSUPPORTED_TYPE
    assert "mark-ready" in caught.value.hint
    assert await engine.recent() == []


async def test_submit_without_id_generates_a_fresh_one(engine: Engine, work: Work) -> None:
    work.release.set()
    first = await engine.submit(task(task_id=None))
    second = await engine.submit(task(task_id=None))
    assert first != second
    assert {(await engine.wait(i)).status for i in (first, second)} == {TaskStatus.COMPLETED}


# ------------------------------------------------------------------ params / crashes / deadlines


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({}, "params.height: required field is missing"),
        ({"height": "tall"}, "params.height"),
        ({"height": 1, "colour": "red"}, "params.colour: unknown field"),
        ({"height": 1.5}, "params.height"),
    ],
)
async def test_invalid_params_fail_the_task_naming_the_field(
    engine: Engine, harness: Harness, params: dict[str, Any], named: str
) -> None:
    await engine.submit(task(TYPED, params=params))
    result = await engine.wait(ID)
    assert (result.status, result.reason) == (TaskStatus.FAILED, Reason.PARAMS_INVALID)
    assert named in result.error
    assert harness.kinds(ID) == [EventKind.ACCEPTED, EventKind.FAILED]


async def test_valid_params_reach_the_handler_typed(engine: Engine) -> None:
    result = await engine.wait(await engine.submit(task(TYPED, params={"height": 7})))
    assert result.result == {"height": 7}


async def test_handler_exception_fails_the_task_and_the_engine_carries_on(engine: Engine, work: Work) -> None:
    await engine.submit(task(CRASH))
    result = await engine.wait(ID)
    assert (result.status, result.reason) == (TaskStatus.FAILED, Reason.HANDLER_CRASHED)
    assert "KeyError" in result.error and "boom-key" in result.error
    work.release.set()
    assert (await engine.wait(await engine.submit(task(task_id=OTHER_ID)))).status is TaskStatus.COMPLETED


async def test_handler_returning_a_non_object_is_a_crash(harness: Harness) -> None:
    async def returns_list(params: WorkParams, ctx: TaskContext) -> Any:
        return [1, 2]

    harness.registry = HandlerRegistry([HandlerSpec(WORK, WorkParams, returns_list)])
    engine = harness.engine()
    result = await engine.wait(await engine.submit(task()))
    assert result.reason == Reason.HANDLER_CRASHED and "list" in result.error


async def test_timeout_ends_the_run_with_deadline_exceeded(engine: Engine, work: Work) -> None:
    await engine.submit(task(timeout_seconds=1))
    result = await engine.wait(ID, timeout=10)
    assert (result.status, result.reason) == (TaskStatus.FAILED, Reason.DEADLINE_EXCEEDED)
    assert "1s" in result.error
    assert work.cancelled == [ID]


async def test_a_handler_that_ignores_its_deadline_is_reported_overdue(engine: Engine, work: Work) -> None:
    await engine.submit(task(params={"ignoreCancel": True}, timeout_seconds=1))
    await work.entered.wait()
    assert engine.overdue() == []
    # the timeout fired (after 1 s), the handler did not stop
    assert await wait_until(lambda: engine.overdue() == [ID], what="the task reported overdue", timeout=15)
    work.release.set()
    result = await engine.wait(ID, timeout=10)
    assert (result.status, result.reason) == (TaskStatus.FAILED, Reason.DEADLINE_EXCEEDED)
    assert engine.overdue() == []


async def test_handler_raising_its_own_timeout_is_a_crash_not_a_deadline(harness: Harness) -> None:
    async def times_out(params: WorkParams, ctx: TaskContext) -> Any:
        raise TimeoutError("upstream took too long")

    harness.registry = HandlerRegistry([HandlerSpec(WORK, WorkParams, times_out)])
    engine = harness.engine()
    result = await engine.wait(await engine.submit(task(timeout_seconds=60)))
    assert result.reason == Reason.HANDLER_CRASHED and "upstream took too long" in result.error


# ------------------------------------------------------------------------ retry policy


@pytest.mark.slow
async def test_retry_policy_reruns_failures_until_success(engine: Engine, work: Work, harness: Harness) -> None:
    work.release.set()
    policy = RetryPolicy(limit=3, backoff_seconds=0)
    result = await engine.wait(await engine.submit(task(params={"failTimes": 2}, retry=policy)))
    assert (result.status, result.run, result.error) == (TaskStatus.COMPLETED, 3, "")
    assert harness.kinds(ID).count(EventKind.RETRYING) == 2


async def test_retry_policy_gives_up_after_its_limit(engine: Engine, work: Work) -> None:
    work.release.set()
    policy = RetryPolicy(limit=1, backoff_seconds=0)
    result = await engine.wait(await engine.submit(task(params={"failTimes": 5}, retry=policy)))
    assert (result.status, result.run, result.reason) == (TaskStatus.FAILED, 2, "Planned")
    assert work.started == [ID, ID]


async def test_retry_policy_never_repeats_invalid_params(engine: Engine) -> None:
    policy = RetryPolicy(limit=5, backoff_seconds=0)
    result = await engine.wait(await engine.submit(task(TYPED, params={}, retry=policy)))
    assert (result.reason, result.run) == (Reason.PARAMS_INVALID, 1)


def test_retry_backoff_grows_with_each_run_and_is_capped() -> None:
    policy = RetryPolicy(limit=10, backoff_seconds=10)
    assert [policy.delay_before(n) for n in (2, 3, 4)] == [10, 20, 30]
    assert policy.delay_before(100) == 300


# ------------------------------------------------------------------------ cancel / remove


async def test_cancel_stops_the_handler_and_stores_cancelled(engine: Engine, work: Work, harness: Harness) -> None:
    await engine.submit(task())
    await work.entered.wait()
    cancelled = await engine.cancel(ID)
    assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED
    assert work.cancelled == [ID]
    stored = await engine.get(ID)
    assert stored is not None and (stored.status, stored.reason) == (TaskStatus.CANCELLED, Reason.CANCELLED)
    assert harness.kinds(ID)[-1] is EventKind.CANCELLED
    assert await engine.submit(task()) == ID  # a cancelled task stays cancelled
    assert work.started == [ID]


async def test_cancel_of_a_finished_task_changes_nothing(engine: Engine, work: Work) -> None:
    work.release.set()
    await engine.wait(await engine.submit(task()))
    result = await engine.cancel(ID)
    assert result is not None and result.status is TaskStatus.COMPLETED


async def test_remove_stops_the_handler_and_deletes_the_row(engine: Engine, work: Work, harness: Harness) -> None:
    await engine.submit(task())
    await work.entered.wait()
    assert await engine.remove(ID) is True
    assert work.cancelled == [ID]
    assert await engine.get(ID) is None
    assert await engine.remove(ID) is False
    assert harness.kinds(ID)[-1] is EventKind.REMOVED


async def test_removed_task_is_never_resurrected_by_a_handler_that_ignores_cancellation(
    engine: Engine, work: Work
) -> None:
    await engine.submit(task(params={"ignoreCancel": True}))
    await work.entered.wait()
    assert await engine.remove(ID) is True  # waits stop_grace (1 s) for a handler that will not stop
    work.release.set()
    for _ in range(20):
        await asyncio.sleep(0.05)
    assert work.finished == [ID]  # the stubborn handler did finish...
    assert await engine.get(ID) is None  # ...and its outcome was dropped
    with pytest.raises(LookupError):
        await engine.wait(ID)


async def test_removed_task_can_be_submitted_again_as_new(engine: Engine, work: Work) -> None:
    await engine.submit(task())
    await work.entered.wait()
    await engine.remove(ID)
    work.release.set()
    result = await engine.wait(await engine.submit(task()))
    assert (result.status, result.run) == (TaskStatus.COMPLETED, 1)


# ------------------------------------------------------------------------ shutdown / recover


async def test_shutdown_leaves_rows_running_and_recover_resumes_them(harness: Harness, work: Work) -> None:
    first = harness.engine()
    await first.submit(task(params={"label": "resumed"}))
    await work.entered.wait()
    await first.shutdown()
    assert work.cancelled == [ID]
    stale = await first.get(ID)
    assert stale is not None and stale.status is TaskStatus.RUNNING
    with pytest.raises(EngineClosed):
        await first.submit(task(task_id=OTHER_ID))

    second = harness.engine()
    work.release.set()
    assert await second.recover() == [ID]
    result = await second.wait(ID)
    assert (result.status, result.run, result.resumes) == (TaskStatus.COMPLETED, 1, 1)
    assert result.result == {"label": "resumed", "run": 1, "resumes": 1}
    assert harness.kinds(ID)[-2:] == [EventKind.RESUMED, EventKind.SUCCEEDED]
    await second.shutdown()


async def test_held_resumed_runs_report_at_once_and_start_their_handlers_spaced_after_release(
    harness: Harness,
) -> None:
    started: list[tuple[str, float]] = []
    gate = asyncio.Event()

    async def recording(params: WorkParams, ctx: TaskContext) -> dict[str, Any]:
        started.append((ctx.task_id, asyncio.get_running_loop().time()))
        await gate.wait()
        return {}

    hold_spec = next(s for s in READINESS_HANDLERS if s.task_type is TaskType.MARK_NOT_READY)
    harness.registry = HandlerRegistry([HandlerSpec(WORK, WorkParams, recording), hold_spec])
    ids = [f"{n}0000000-0000-4000-8000-000000000000" for n in range(1, 5)]
    first = harness.engine()
    for task_id in ids:
        await first.submit(task(task_id=task_id))
    hold = "50000000-0000-4000-8000-000000000000"
    await first.submit(Task(id=hold, type=TaskType.MARK_NOT_READY))
    await first.wait(hold)
    await asyncio.sleep(0.05)
    await first.shutdown()
    store = harness.stores[-1]
    hold_row = store.get(hold)
    assert hold_row is not None
    store.save(hold_row.model_copy(update={"status": TaskStatus.RUNNING, "completed_at": None}))  # a stale hold
    started.clear()
    harness.events.clear()

    second = harness.engine()
    second.hold_resumed()
    assert sorted(await second.recover()) == sorted([*ids, hold])
    assert harness.kinds(hold)[-1] is EventKind.SUCCEEDED  # holds never wait
    await asyncio.sleep(0.2)
    assert all(harness.kinds(task_id) == [EventKind.RESUMED] for task_id in ids)  # each reported at once...
    assert started == []  # ...while no resumed handler runs

    second.release_resumed()
    await wait_until(lambda: len(started) >= len(ids), what="every resumed handler started", interval=0.001)
    assert [task_id for task_id, _ in started] == ids  # in the order they were resumed
    first_start, last_start = started[0][1], started[-1][1]
    assert last_start - first_start >= (len(ids) - 1) * RESUME_SPACING * 0.9  # not all in the same instant
    gate.set()
    for task_id in ids:
        assert (await second.wait(task_id)).status is TaskStatus.COMPLETED
    await second.shutdown()


async def test_resumed_run_keeps_its_original_deadline(harness: Harness, work: Work) -> None:
    first = harness.engine()
    await first.submit(task(timeout_seconds=1))
    await work.entered.wait()
    await first.shutdown()
    store = harness.stores[-1]
    row = store.get(ID)
    assert row is not None
    store.save(row.model_copy(update={"started_at": utcnow() - timedelta(seconds=5)}))

    second = harness.engine()
    await second.recover()
    result = await second.wait(ID)
    assert (result.status, result.reason) == (TaskStatus.FAILED, Reason.DEADLINE_EXCEEDED)


async def test_recover_fails_rows_whose_type_this_agent_does_not_know(harness: Harness, work: Work) -> None:
    first = harness.engine()
    await first.submit(task())
    await work.entered.wait()
    await first.shutdown()
    harness.registry = HandlerRegistry(READINESS_HANDLERS)
    second = harness.engine()
    await second.recover()
    result = await second.get(ID)
    assert result is not None and (result.status, result.reason) == (TaskStatus.FAILED, Reason.UNSUPPORTED_TYPE)


async def test_recover_runs_holds_before_anything_else_and_supersedes_older_releases(harness: Harness) -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def slow_hold(params: Any, ctx: TaskContext) -> dict[str, Any]:
        order.append(f"hold-start:{ctx.task_id[:8]}")
        await gate.wait()
        order.append("hold-end")
        return {}

    async def work_handler(params: WorkParams, ctx: TaskContext) -> dict[str, Any]:
        order.append(f"work:{ctx.task_id[:8]}")
        await gate.wait()
        return {}

    hold_spec = next(s for s in READINESS_HANDLERS if s.task_type is TaskType.MARK_NOT_READY)
    ready_spec = next(s for s in READINESS_HANDLERS if s.task_type is TaskType.MARK_READY)
    harness.registry = HandlerRegistry(
        [
            HandlerSpec(TaskType.MARK_NOT_READY, hold_spec.params_model, slow_hold),
            ready_spec,
            HandlerSpec(WORK, WorkParams, work_handler),
        ]
    )
    old_ready, hold, new_ready, other = (
        "10000000-0000-4000-8000-000000000000",
        "20000000-0000-4000-8000-000000000000",
        "30000000-0000-4000-8000-000000000000",
        "40000000-0000-4000-8000-000000000000",
    )
    first = harness.engine()
    # Leave rows running as a crash would: submit while the handlers block, then shut down.
    await first.submit(Task(id=hold, type=TaskType.MARK_NOT_READY))
    await first.submit(task(task_id=other))
    await asyncio.sleep(0.01)
    await first.shutdown()
    # mark-ready finishes instantly, so its stale rows are written directly: one older than the hold, one newer.
    store = harness.stores[-1]
    hold_row = store.get(hold)
    assert hold_row is not None and hold_row.status is TaskStatus.RUNNING
    for task_id, offset in ((old_ready, -1), (new_ready, +1)):
        row = hold_row.model_copy(
            update={
                "id": task_id,
                "type": TaskType.MARK_READY,
                "submitted_at": hold_row.submitted_at + timedelta(seconds=offset),
            }
        )
        store.save(row)
    order.clear()

    second = harness.engine()
    recovering = asyncio.create_task(second.recover())
    deadline = asyncio.get_running_loop().time() + 10
    while not order and asyncio.get_running_loop().time() < deadline:  # store calls hop to a thread: allow for load
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # time for anything wrongly started beside the hold to show
    assert order == [f"hold-start:{hold[:8]}"]  # nothing else started while the hold runs
    gate.set()
    handled = await recovering
    assert set(handled) == {old_ready, hold, new_ready, other}
    await second.wait(other)
    assert order[:2] == [f"hold-start:{hold[:8]}", "hold-end"]
    superseded = await second.get(old_ready)
    assert superseded is not None and (superseded.status, superseded.reason) == (TaskStatus.FAILED, "Superseded")
    released = await second.wait(new_ready)
    assert released.status is TaskStatus.COMPLETED
    assert second.healthz() is True
    await second.shutdown()


# ------------------------------------------------------------------------ readiness


async def test_readiness_follows_successful_gate_tasks_and_survives_restart(harness: Harness) -> None:
    first = harness.engine()
    assert first.healthz() is False and first.status()["status"] == "Initializing"
    await first.wait(await first.submit(Task(type=TaskType.MARK_READY)))
    assert first.healthz() is True and first.status()["status"] == "Ready"
    await first.shutdown()

    second = harness.engine()
    assert second.healthz() is True  # restored from history, not lost on restart
    await second.wait(await second.submit(Task(type=TaskType.MARK_NOT_READY)))
    assert second.healthz() is False
    await second.shutdown()

    third = harness.engine()
    assert third.healthz() is False
    await third.wait(await third.submit(Task(type=TaskType.MARK_READY)))
    assert third.healthz() is True
    await third.shutdown()


async def test_failed_mark_ready_does_not_set_ready(engine: Engine) -> None:
    result = await engine.wait(await engine.submit(Task(type=TaskType.MARK_READY, params={"force": True})))
    assert result.reason == Reason.PARAMS_INVALID
    assert engine.healthz() is False


async def test_livez_reports_the_store(harness: Harness) -> None:
    engine = harness.engine()
    assert engine.livez() is True
    await engine.store.close()
    assert engine.livez() is False


# ------------------------------------------------------------------------ progress and listeners


async def test_progress_is_throttled_for_listeners_and_latest_is_visible(harness: Harness) -> None:
    step = asyncio.Event()

    async def reporter(params: WorkParams, ctx: TaskContext) -> dict[str, Any]:
        for done in range(1, 101):
            ctx.progress(done, 100, "blocks", f"block {done}")
        await step.wait()
        return {}

    harness.registry = HandlerRegistry([HandlerSpec(WORK, WorkParams, reporter)])
    engine = harness.engine(progress_interval=60)
    await engine.submit(task())
    await asyncio.sleep(0.05)
    live = await engine.get(ID)
    assert live is not None and live.progress is not None
    assert (live.progress.current, live.progress.total, live.progress.percent) == (100, 100, 100.0)
    assert (await engine.recent())[0].progress == live.progress
    assert harness.kinds(ID).count(EventKind.PROGRESS) == 1
    step.set()
    done = await engine.wait(ID)
    assert done.progress is None
    await engine.shutdown()


async def test_a_failing_listener_does_not_break_the_engine(engine: Engine, work: Work) -> None:
    def broken(event: TaskEvent) -> None:
        raise RuntimeError("listener bug")

    engine.add_listener(broken)
    work.release.set()
    assert (await engine.wait(await engine.submit(task()))).status is TaskStatus.COMPLETED


async def test_prune_removes_old_terminal_rows(harness: Harness, work: Work) -> None:
    engine = harness.engine()
    work.release.set()
    await engine.wait(await engine.submit(task()))
    assert await engine.prune(utcnow() + timedelta(days=365)) == 1
    assert await engine.get(ID) is None
    await engine.shutdown()


async def test_retention_loop_prunes_at_once_and_survives_a_failing_store(
    registry: HandlerRegistry, db_path: Path, home: Path, work: Work
) -> None:
    settings = AgentSettings(home=home, retention=timedelta(microseconds=1))
    store = SqliteStore(db_path)
    engine = Engine(registry, store, settings)
    work.release.set()
    await engine.wait(await engine.submit(task()))
    loop = asyncio.create_task(engine.prune_forever(interval=0.05))
    give_up = time.monotonic() + 15
    while await engine.get(ID) is not None:  # pruned by the first pass
        assert not loop.done() and time.monotonic() < give_up, "the row was not pruned"
        await asyncio.sleep(0.02)
    store.close()  # every later pass fails: the loop logs and keeps going
    await asyncio.sleep(0.15)
    assert not loop.done()
    loop.cancel()
    await engine.shutdown()


# ------------------------------------------------------------------------ threads


def test_submissions_from_other_threads_are_serialised_by_the_loop(
    registry: HandlerRegistry, db_path: Path, settings: AgentSettings, work: Work
) -> None:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run_loop() -> None:
        asyncio.set_event_loop(loop)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    ready.wait()
    store = SqliteStore(db_path)

    async def make() -> Engine:
        return Engine(registry, store, settings)

    engine = asyncio.run_coroutine_threadsafe(make(), loop).result()
    loop.call_soon_threadsafe(work.release.set)
    futures = [asyncio.run_coroutine_threadsafe(engine.submit(task()), loop) for _ in range(20)]
    assert {future.result(timeout=10) for future in futures} == {ID}
    result = asyncio.run_coroutine_threadsafe(engine.wait(ID), loop).result(timeout=10)
    assert result.status is TaskStatus.COMPLETED and work.started == [ID]
    asyncio.run_coroutine_threadsafe(engine.shutdown(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    store.close()


# ------------------------------------------------------------------ transition log lines

NODETASK = ResourceRef(namespace="sei", name="validator-0-work")


def transition_lines(caplog: pytest.LogCaptureFixture, task_id: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == TRANSITION_LOGGER and getattr(record, "task_id", None) == task_id
    ]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: getattr(record, attribute) for attribute, key in LOG_FIELDS.items() if hasattr(record, attribute)}


async def test_every_transition_of_a_nodetask_is_one_log_line_with_its_fields(
    engine: Engine, work: Work, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, TRANSITION_LOGGER)
    work.release.set()
    await engine.wait(await engine.submit(task(source=NODETASK)))
    lines = transition_lines(caplog, ID)
    assert [record.getMessage() for record in lines] == ["task accepted", "task started", "task succeeded"]
    assert fields(lines[-1]) == {
        "event": "succeeded",
        "task_id": ID,
        "type": WORK.value,
        "run": 1,
        "namespace": "sei",
        "name": "validator-0-work",
    }


async def test_a_task_failing_params_invalid_before_its_handler_writes_its_failed_line(
    engine: Engine, work: Work, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, TRANSITION_LOGGER)
    await engine.wait(await engine.submit(task(TYPED, source=NODETASK, params={"height": "tall"})))
    accepted, failed = transition_lines(caplog, ID)
    assert fields(accepted)["event"] == "accepted"
    assert failed.levelno == logging.WARNING
    assert fields(failed) == {
        "event": "failed",
        "task_id": ID,
        "type": TYPED.value,
        "run": 1,
        "reason": Reason.PARAMS_INVALID,
        "namespace": "sei",
        "name": "validator-0-work",
    }
    assert failed.getMessage().startswith("task failed (ParamsInvalid): ") and "height" in failed.getMessage()
    assert work.started == []


async def test_retrying_and_cancelled_are_logged_with_the_run_and_reason(
    engine: Engine, work: Work, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, TRANSITION_LOGGER)
    await engine.submit(task(params={"fail_times": 1}, retry=RetryPolicy(limit=1, backoff_seconds=0)))
    await work.entered.wait()
    work.release.set()
    await wait_until(
        lambda: any(fields(r)["event"] == "retrying" for r in transition_lines(caplog, ID)), what="the retrying line"
    )
    await engine.cancel(ID)
    events = [fields(record) for record in transition_lines(caplog, ID)]
    retrying = next(item for item in events if item["event"] == "retrying")
    assert (retrying["run"], retrying["reason"]) == (2, "Planned")
    assert events[-1]["event"] == "cancelled" and "namespace" not in events[-1]

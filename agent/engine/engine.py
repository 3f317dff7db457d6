"""The task engine: runs each task as its own asyncio task and keeps every outcome in the store.

Rules (docs/design.md section 4), each covered by `tests/engine/`:

- `submit` is idempotent on the task ID. A task whose type has no handler, or whose ID is not a UUID, is refused
  (`UnsupportedType` / `InvalidTaskID`, nothing stored). IDs are canonicalised to lowercase. An ID already stored as
  running, completed or cancelled is a no-op that returns the ID. A failed ID runs again, with `run + 1`, only when
  asked: `retry=True`, or a `retry_nonce` different from the stored one. Check-and-insert is atomic (one lock on the
  loop plus an INSERT that refuses an existing row, so even two engines on one file cannot both start a task). A
  running row is resumed only by `recover()`, never by a submit: another process sharing the store may be running it.
- Params are validated with the handler's pydantic model before anything runs; a validation error stores a failed
  row with reason `ParamsInvalid` and a message naming the field. Before that, params nested deeper than 32 levels or
  larger than 64 KiB as JSON (`agent.models.limits`) fail `ParamsInvalid` naming the bound, and are stored as a small
  marker, never as given (nothing recursive may ever touch them).
- An ID is an idempotency key for the same work only: a submission whose ID is stored with another type or other
  params is refused with `TaskIdConflict` (nothing stored, nothing run, the stored task untouched).
- A handler result larger than 64 KiB as JSON fails the task `ResultTooLarge` (it would be copied into the NodeTask's
  status, which etcd caps at 1.5 MiB for the whole object); it is not retried.
- A handler's `TaskError` fails the task with its reason; any other exception fails it with `HandlerCrashed` and the
  exception text, and the process carries on. `timeout_seconds` bounds each run from its start (a resumed run keeps its
  original start, so a restart does not extend the deadline) and ends it with `DeadlineExceeded`.
- The retry policy re-runs failures automatically (`run + 1`, backoff between runs), except failures that cannot be
  helped by running again: `ParamsInvalid` and `Superseded`. While a retry is pending the row stays `running`.
- `cancel` stops the handler and stores `cancelled`; `remove` stops it and deletes the row. A stopped run never
  writes again, so a removed task is never resurrected.
- `shutdown` cancels every handler and leaves their rows `running`; `recover` on the next start runs them again with
  `resumes + 1` (handlers are idempotent). Holds first: stale `mark-not-ready` rows run to completion before anything
  else, and a stale `mark-ready` older than the newest completed hold is failed as `Superseded` instead of run.
- Readiness: only a successful `mark-ready` sets it and only a successful `mark-not-ready` clears it; at start-up it
  is restored from the newest completed of the two in the store, so a restart never strands seid at the gate.
- Handlers report progress through their `TaskContext`; listeners get at most one progress event per task per
  `progress_interval`, and `get` always shows the latest report.

- Store failures (docs/reliability.md): every store call runs on the store's own thread (`GuardedStore`), never on
  the event loop. A run whose outcome (or retry row) cannot be stored keeps it in memory and retries until the store
  takes it (sooner when the store recovers), its status staying Running with a message saying why; only then is the
  outcome published. A submit that cannot be stored raises `StoreError` and nothing starts (the caller tries again).
- Bounded work (docs/reliability.md, B8/B9): at most `settings.max_tasks` tasks queued or running (executing runs,
  retries waiting for their backoff, deferred rows); a submission that would start one more is refused `TooManyTasks`
  (nothing stored), except readiness tasks. Finished rows are pruned by count (`settings.retention_count`) as well as
  by age, every `retention_count // 10` finishes and with the hourly prune. A new task is refused
  `DiskBudgetExceeded` (nothing stored, except readiness tasks) while the home's volume has less free space than
  `settings.min_free_bytes`, or the agent's own files there (store, WAL, tx records) exceed
  `settings.store_budget_bytes`; the latter starts retention at once (`agent.engine.disk`, measured at most once a
  second).
- Ownership (B6): a submission without a source (the HTTP API) of an ID whose row has one (a NodeTask's or a local
  manifest's) is refused `TaskOwned`, whatever its state. A re-run whose submission names no deadline keeps the
  row's `timeout_seconds`.
- Crash loops: a running row is resumed at most `KILL_LIMIT` times across consecutive unclean process stops (the
  store's `unclean_stops`); after that it fails `AgentKilled` instead of killing the agent again at every start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import ValidationError

from agent.io.loops import every
from agent.models import (
    ParamsInvalid,
    Progress,
    Reason,
    Task,
    TaskError,
    TaskIdConflict,
    TaskOwned,
    TaskRejected,
    TaskResult,
    TaskStatus,
    TaskType,
    TooManyTasks,
    UnsupportedType,
    normalize_task_id,
    utcnow,
)
from agent.models.limits import MAX_RESULT_BYTES, json_bounds_problem
from agent.models.params import WIRE_CONTEXT, TaskParams, format_validation_error
from agent.models.settings import AgentSettings
from agent.store import GuardedStore, Store, StoreError, StoreHealth
from agent.tasks import HandlerRegistry, HandlerSpec, KubeReader, TaskContext

from .disk import DiskBudget
from .events import EventKind, TaskEvent
from .transitions import log_transition, task_fields

log = logging.getLogger(__name__)

Listener = Callable[[TaskEvent], None]

# Failures that running again cannot fix: the retry policy never repeats them.
_NOT_RETRIED = frozenset({Reason.PARAMS_INVALID, Reason.SUPERSEDED, Reason.RESULT_TOO_LARGE})

KILL_LIMIT = 3
"""A task still running after this many resumes, each ended by an unclean process stop, fails `AgentKilled`."""
PERSIST_RETRY_CAP = 10.0
"""A run waiting for the store to take its outcome tries again at least this often (and at once on recovery)."""
RESUME_SPACING = 0.01
"""Seconds between the handler starts of resumed runs: a restart that resumes many tasks starts their handlers at
most 100 per second (the first at once; 1,000 over 10 s), so they do not all hit the node's RPC and the agent's event
loop in the same instant. Each run's RESUMED event (its status) is immediate, and its deadline counts from its
original start as always. See also `hold_resumed`."""


class _Stop(Enum):
    CANCEL = "cancel"
    REMOVE = "remove"
    SHUTDOWN = "shutdown"


@dataclass(eq=False)
class _Run:
    """One executing task: its asyncio task, why it is being stopped (if it is), and its latest progress."""

    task_id: str
    row: TaskResult
    task: asyncio.Task[None] = field(init=False)
    stop: _Stop | None = None
    final: TaskResult | None = None
    """The terminal row this run stored (lets `wait` answer without reading it back)."""
    progress: Progress | None = None
    progress_emitted_at: float = float("-inf")


class EngineClosed(RuntimeError):
    """The engine is shutting down and accepts no new work."""


class Engine:
    """Runs tasks through their handlers and records every outcome in `store`."""

    def __init__(
        self,
        registry: HandlerRegistry,
        store: Store,
        settings: AgentSettings,
        *,
        progress_interval: float = 1.0,
        stop_grace: float = 10.0,
        kube: KubeReader | None = None,
        disk: DiskBudget | None = None,
    ) -> None:
        self._registry = registry
        self._disk = disk if disk is not None else DiskBudget(settings)
        self._db = store if isinstance(store, GuardedStore) else GuardedStore(store)
        self._store = self._db.store
        self._deferred: dict[str, TaskResult] = {}
        self._kube = kube  # handed to every handler (TaskContext.kube): the agent's one Kubernetes access path
        self._settings = settings
        self._progress_interval = progress_interval
        self._stop_grace = stop_grace
        self._runs: dict[str, _Run] = {}
        self._last_resume_start = float("-inf")
        self._resumed_may_start = asyncio.Event()
        self._resumed_may_start.set()
        self._listeners: list[Listener] = []
        self._submit_lock = asyncio.Lock()
        self._finished_since_prune = 0
        self._pruning: asyncio.Task[None] | None = None
        self._closing = False
        self._ready = self._readiness_from_history()

    # ----------------------------------------------------------------- submission

    async def submit(self, task: Task, *, retry: bool = False) -> str:
        """Start `task` unless its ID already ran (see the module rules); returns the canonical task ID."""
        if self._closing:
            raise EngineClosed("the engine is shutting down")
        spec = _spec_for(self._registry, task.type)
        task_id = normalize_task_id(task.id) if task.id else str(uuid.uuid4())
        params, problem = storable_params(task.params)
        task = task.model_copy(update={"params": params})
        async with self._submit_lock:
            row = _new_row(task_id, task)
            refusal = self._refusal(task)
            if refusal is not None:  # only a no-op (the ID is known and nothing would start) may pass
                existing = await self._db.get(task_id)
                if existing is None or _would_start(existing, task, retry):
                    self._refuse_owned(existing, task)
                    raise refusal
            if refusal is not None or not await self._db.insert(row):  # the common case, a new ID, costs one statement
                existing = await self._db.get(task_id)
                if existing is not None:
                    self._refuse_owned(existing, task)
                    conflict = task_id_conflict(existing, task)
                    if conflict is not None:
                        raise conflict
                if existing is None or existing.status is not TaskStatus.FAILED:
                    return task_id  # running, completed or cancelled (or removed this instant): a no-op
                if not (retry or _new_nonce(task, existing)):
                    return task_id
                row = _rerun_row(existing, task)
                await self._db.save(row)
            self._emit(EventKind.ACCEPTED, row)
            if problem is not None:  # too deep or too large: failed without being validated, stored or served
                await self._finish_failed(row, ParamsInvalid(problem))
            else:
                await self._start(row, spec, EventKind.STARTED)
        return task_id

    def _active(self) -> int:
        """Tasks queued or running: executing runs (a retry waiting for its backoff included) and deferred rows."""
        return len(self._runs) + len(self._deferred)

    def _refusal(self, task: Task) -> TaskRejected | None:
        """Why a new run of `task` may not start now: `TooManyTasks` beyond `max_tasks`, `DiskBudgetExceeded` beyond
        the disk budget (which also starts retention at once). Readiness tasks are never refused: a flood of other
        work must not keep an operator from holding the node (`mark-not-ready`) or releasing it."""
        if task.type in (TaskType.MARK_READY, TaskType.MARK_NOT_READY):
            return None
        if self._active() >= self._settings.max_tasks:
            return TooManyTasks(self._settings.max_tasks, self._active())
        refusal = self._disk.refusal()
        if refusal is not None and refusal.setting == "NODETASK_STORE_BUDGET_BYTES":
            self._prune_soon("retention-over-budget")
        return refusal

    @staticmethod
    def _refuse_owned(existing: TaskResult | None, task: Task) -> None:
        """A task of a NodeTask (or a local manifest) is driven only through it: a submission without a source (the
        HTTP API) of such an ID is refused, never a no-op and never a re-run without the resource's deadline."""
        if existing is not None and existing.source is not None and task.source is None:
            owner = f"{existing.source.namespace}/{existing.source.name}"
            raise TaskOwned(existing.id, owner)

    def check(self, task: Task) -> str:
        """Validate `task` as `submit` would, storing and running nothing; returns its canonical ID.

        Raises `UnsupportedType`, `InvalidTaskID` or `ParamsInvalid` (see `check_task`)."""
        task_id, _, _ = check_task(self._registry, task, self._settings)
        return task_id

    async def _start(self, row: TaskResult, spec: HandlerSpec[Any], kind: EventKind, *, spaced: bool = False) -> None:
        """Validate the row's params (a failure stores ParamsInvalid) and run its handler as an asyncio task (its first
        event at once; with `spaced`, the handler as resumed runs start: `hold_resumed`, `RESUME_SPACING`)."""
        try:
            params = _validate_params(spec, row.params, self._settings)
        except ParamsInvalid as error:
            await self._finish_failed(row, error)
            return
        run = _Run(row.id, row)
        self._runs[row.id] = run
        run.task = asyncio.create_task(self._execute(run, spec, params, kind, spaced), name=f"task-{row.type}-{row.id}")

    # ------------------------------------------------------------------ execution

    async def _execute(
        self, run: _Run, spec: HandlerSpec[Any], params: TaskParams, first: EventKind, spaced: bool = False
    ) -> None:
        row = run.row
        kind = first
        try:
            while True:
                self._emit(kind, row)
                if spaced:  # a resumed run waits for its turn (hold_resumed, RESUME_SPACING); cancellable
                    await self._resumed_may_start.wait()
                    await asyncio.sleep(self._resume_delay())
                    spaced = False
                outcome = await self._run_handler(run, spec, params)
                if run.stop is not None:
                    return  # cancel/remove/shutdown owns the row now
                if not isinstance(outcome, TaskError):
                    await self._finish(run, row.model_copy(update=_completed(outcome)))
                    return
                if outcome.reason in _NOT_RETRIED or row.run > row.retry.limit:
                    await self._finish(run, row.model_copy(update=_failed(outcome)))
                    return
                delay = row.retry.delay_before(row.run + 1)
                row = row.model_copy(
                    update={
                        **_failure_fields(outcome),
                        "run": row.run + 1,
                        "status": TaskStatus.RUNNING,
                        "started_at": None,
                    }
                )
                run.row = row
                await self._persist(row, run)
                self._emit(EventKind.RETRYING, row)
                await asyncio.sleep(delay)
                row = row.model_copy(update={"started_at": utcnow()})
                run.row = row
                await self._persist(row, run)
                kind = EventKind.STARTED
        except asyncio.CancelledError:
            # cancel(), remove() and shutdown() record the outcome themselves; an unexplained cancellation (the loop
            # going away) is treated as a shutdown: the row stays running for recover().
            return
        finally:
            if self._runs.get(run.task_id) is run:
                del self._runs[run.task_id]

    async def _run_handler(
        self, run: _Run, spec: HandlerSpec[Any], params: TaskParams
    ) -> dict[str, Any] | TaskError | None:
        row = run.row
        context = TaskContext(
            task_id=row.id,
            task_type=TaskType(row.type),
            run=row.run,
            resumes=row.resumes,
            settings=self._settings,
            log=logging.LoggerAdapter(logging.getLogger(f"agent.task.{row.type}"), task_fields(row)),
            report=lambda progress: self._on_progress(run, progress),
            kube=self._kube,
        )
        remaining = _remaining(row)
        if remaining is not None and remaining <= 0:
            return _deadline_error(row)
        try:
            async with asyncio.timeout(remaining) as deadline:
                result = await spec.handler(params, context)
        except TaskError as error:
            return error
        except TimeoutError as error:
            if deadline.expired():
                return _deadline_error(row, context.deadline_cause)
            return _crash(error)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a handler bug must fail its task, never the agent
            log.exception("handler for %s task %s crashed", row.type, row.id)
            return _crash(error)
        if deadline.expired():  # the handler swallowed the cancellation and finished late: still past its deadline
            return _deadline_error(row, context.deadline_cause)
        return _checked_result(result)

    def _on_progress(self, run: _Run, progress: Progress) -> None:
        run.progress = progress
        now = time.monotonic()
        if now - run.progress_emitted_at >= self._progress_interval:
            run.progress_emitted_at = now
            self._emit(EventKind.PROGRESS, run.row.model_copy(update={"progress": progress}))

    async def _finish(self, run: _Run, row: TaskResult) -> None:
        """Store a terminal row, unless the run was stopped (then its stopper owns the row)."""
        if run.stop is not None:
            return
        await self._record_terminal(row, run)
        run.final = row

    async def _finish_failed(self, row: TaskResult, error: TaskError) -> None:
        await self._record_terminal(row.model_copy(update=_failed(error)))

    async def _persist(self, row: TaskResult, run: _Run | None = None) -> None:
        """Save `row`, retrying until the store takes it (see the module rules); cancellation ends the wait (the row
        then stays as last stored: running, so the next start resumes it)."""
        await self._persist_all([row], run)

    async def _persist_all(self, rows: list[TaskResult], run: _Run | None = None) -> None:
        """`_persist` for several rows at once, in one transaction."""
        failures = 0
        while rows:
            try:
                await (self._db.save(rows[0]) if len(rows) == 1 else self._db.save_many(rows))
            except StoreError as error:
                failures += 1
                if run is not None:
                    message = f"waiting for the task store to record this run's state ({error})"
                    run.progress = Progress(message=message[:500])
                await self._db.pause(min(PERSIST_RETRY_CAP, 0.5 * 2 ** min(failures, 5)))
                continue
            if run is not None and failures:
                run.progress = None
            return

    async def _record_terminal(self, row: TaskResult, run: _Run | None = None) -> None:
        await self._persist(row, run)
        if row.status is TaskStatus.COMPLETED:
            if row.type == TaskType.MARK_READY:
                self._ready = True
            elif row.type == TaskType.MARK_NOT_READY:
                self._ready = False
        self._count_finished()
        kind = {
            TaskStatus.COMPLETED: EventKind.SUCCEEDED,
            TaskStatus.FAILED: EventKind.FAILED,
            TaskStatus.CANCELLED: EventKind.CANCELLED,
        }[row.status]
        self._emit(kind, row)

    # ------------------------------------------------------------- cancel / remove

    async def cancel(self, task_id: str) -> TaskResult | None:
        """Stop the task's handler and store it as cancelled. A task already terminal is left as it is."""
        task_id = normalize_task_id(task_id)
        run = self._runs.get(task_id)
        row: TaskResult | None
        if run is not None:
            self._signal(run, _Stop.CANCEL)
            await self._await_stop(run)
            row = run.row
        else:
            row = await self._db.get(task_id)
        if row is None or row.terminal:
            return row
        cancelled = row.model_copy(
            update={
                "status": TaskStatus.CANCELLED,
                "completed_at": utcnow(),
                "reason": Reason.CANCELLED,
                "error": "cancelled on request",
                "hint": "",
                "retryable": False,
            }
        )
        await self._record_terminal(cancelled)
        return cancelled

    async def remove(self, task_id: str) -> bool:
        """Stop the task's handler and delete its row; returns whether a row existed."""
        task_id = normalize_task_id(task_id)
        run = self._runs.get(task_id)
        if run is not None:
            self._signal(run, _Stop.REMOVE)  # before the delete: nothing this run does afterwards reaches the store
        self._deferred.pop(task_id, None)
        row = await self._db.get(task_id)
        deleted = await self._db.delete(task_id)
        if run is not None:
            await self._await_stop(run)
        if deleted and row is not None:
            self._emit(EventKind.REMOVED, row)
        return deleted

    @staticmethod
    def _signal(run: _Run, why: _Stop) -> None:
        run.stop = why
        run.task.cancel()

    async def _await_stop(self, run: _Run) -> None:
        done, _ = await asyncio.wait({run.task}, timeout=self._stop_grace)
        if not done:
            log.warning(
                "%s task %s did not stop within %.0fs of being cancelled; its outcome will be ignored",
                run.row.type,
                run.task_id,
                self._stop_grace,
            )

    # --------------------------------------------------------- shutdown / recover

    async def shutdown(self, grace: float | None = None) -> None:
        """Cancel every running handler and wait up to `grace` seconds; their rows stay `running` for `recover`."""
        self._closing = True
        if self._pruning is not None:
            self._pruning.cancel()
            await asyncio.gather(self._pruning, return_exceptions=True)
        runs = list(self._runs.values())
        for run in runs:
            self._signal(run, _Stop.SHUTDOWN)
        if runs:
            await asyncio.wait([run.task for run in runs], timeout=self._stop_grace if grace is None else grace)

    async def recover(self, defer: Callable[[TaskResult], bool] | None = None) -> list[str]:
        """Resume the work a previous process left running; returns the IDs resumed or finished here.

        A row resumed `KILL_LIMIT` times, each time ended by an unclean stop of the process, fails `AgentKilled`.
        Holds first: every stale `mark-not-ready` runs to completion before anything else starts. Then a stale
        `mark-ready` older than the newest completed hold is failed as `Superseded`; a row whose type this agent does
        not know is failed as `UnsupportedType`; a row for which `defer(row)` is true is kept aside (see `deferred`,
        `resume_deferred`, `fail_deferred`); every other row runs again with `resumes + 1`.
        """
        handled: list[str] = []
        stale = [row for row in await self._db.list_stale() if row.id not in self._runs]
        unclean_stops = int(getattr(self._store, "unclean_stops", 0))
        for row in [row for row in stale if unclean_stops >= KILL_LIMIT and row.resumes >= KILL_LIMIT]:
            await self._finish_failed(row, _killed_error(row, unclean_stops))
            stale.remove(row)
            handled.append(row.id)
        for hold in (row for row in stale if row.type == TaskType.MARK_NOT_READY):
            spec = self._registry.get(hold.type)
            assert spec is not None, "mark-not-ready is always registered"
            await self._resume(hold, spec, spaced=False)  # awaited right here: nothing else runs before it
            await self.wait(hold.id)
            handled.append(hold.id)
        newest_hold = await self._db.latest_by_type(TaskType.MARK_NOT_READY, status=TaskStatus.COMPLETED)
        resuming: list[tuple[TaskResult, HandlerSpec[Any]]] = []
        for row in stale:
            if row.type == TaskType.MARK_NOT_READY:
                continue
            spec = self._registry.get(row.type)
            if spec is None:
                await self._finish_failed(row, UnsupportedType(row.type, [str(t) for t in self._registry.types()]))
            elif row.type == TaskType.MARK_READY and newest_hold and row.submitted_at < newest_hold.submitted_at:
                await self._finish_failed(
                    row,
                    TaskError(
                        f"superseded by hold {newest_hold.id} (mark-not-ready submitted later)",
                        reason=Reason.SUPERSEDED,
                        hint="submit a new mark-ready once the hold's work is done",
                    ),
                )
            elif defer is not None and defer(row):
                self._deferred[row.id] = row
                continue
            else:
                resuming.append((row, spec))
            handled.append(row.id)
        # One transaction for all of them: one store round trip and one commit each cost about 0.6 ms, 1,000 rows of
        # a restart 0.6 s, during which no status could say the tasks resumed.
        rows = [_resumed(row) for row, _ in resuming]
        await self._persist_all(rows)
        for row, (_, spec) in zip(rows, resuming, strict=True):
            await self._start(row, spec, EventKind.RESUMED, spaced=True)
        return handled

    def deferred(self) -> list[TaskResult]:
        """Rows `recover` kept aside (neither resumed nor failed yet)."""
        return list(self._deferred.values())

    async def resume_deferred(self, task_id: str) -> None:
        """Resume a deferred row (no-op when it is not deferred)."""
        row = self._deferred.pop(task_id, None)
        spec = None if row is None else self._registry.get(row.type)
        if row is not None and spec is not None:
            await self._resume(row, spec)

    async def fail_deferred(self, task_id: str, error: TaskError) -> TaskResult | None:
        """Fail a deferred row with `error`; the failed row (None when it was not deferred)."""
        row = self._deferred.pop(task_id, None)
        if row is None:
            return None
        failed = row.model_copy(update=_failed(error))
        await self._record_terminal(failed)
        return failed

    async def _resume(self, row: TaskResult, spec: HandlerSpec[Any], *, spaced: bool = True) -> None:
        row = _resumed(row)
        await self._persist(row)
        await self._start(row, spec, EventKind.RESUMED, spaced=spaced)

    def hold_resumed(self) -> None:
        """Until `release_resumed`, resumed runs report (their RESUMED event) but their handlers wait. The agent holds
        them while it reports a restart (list, resumed statuses written), so that 1,000 handlers starting their work
        do not compete with the statuses saying they resumed. Holds (`mark-not-ready`) never wait."""
        self._resumed_may_start.clear()

    def release_resumed(self) -> None:
        """Let held resumed handlers start, `RESUME_SPACING` apart."""
        self._resumed_may_start.set()

    def _resume_delay(self) -> float:
        """How long the next resumed handler waits so that resumed handlers start `RESUME_SPACING` apart."""
        now = time.monotonic()
        start = max(now, self._last_resume_start + RESUME_SPACING)
        self._last_resume_start = start
        return start - now

    # ------------------------------------------------------------------ read side

    async def get(self, task_id: str) -> TaskResult | None:
        """The stored row, with the latest progress report while it runs (None when unknown)."""
        try:
            task_id = normalize_task_id(task_id)
        except TaskError:
            return None
        row = await self._db.get(task_id)
        return None if row is None else self._with_progress(row)

    async def recent(self, limit: int = 100, *, after: TaskResult | None = None) -> list[TaskResult]:
        """The newest `limit` rows (with `after`, the ones that follow that row: one page of a longer listing)."""
        rows = await self._db.list(limit, after=after)
        return [self._with_progress(row) for row in rows]

    def running_rows(self) -> list[TaskResult]:
        """The rows of the executing runs, from memory (no store access), with their latest progress."""
        return [
            run.row.model_copy(update={"progress": run.progress}) if run.progress is not None else run.row
            for run in self._runs.values()
        ]

    def _with_progress(self, row: TaskResult) -> TaskResult:
        run = self._runs.get(row.id)
        if run is not None and run.progress is not None and not row.terminal:
            return row.model_copy(update={"progress": run.progress})
        return row

    def is_running(self, task_id: str) -> bool:
        return task_id in self._runs

    def running(self) -> list[str]:
        return list(self._runs)

    def overdue(self) -> list[str]:
        """Running tasks past their deadline: the timeout fired but the handler has not stopped (a handler that
        ignores cancellation, or a blocked event loop). Normally empty; exported as a gauge so an alert can see it."""
        return [run.task_id for run in self._runs.values() if (left := _remaining(run.row)) is not None and left < 0]

    async def wait(self, task_id: str, timeout: float | None = None) -> TaskResult:  # noqa: ASYNC109
        """Wait until the task's current run ends, then return its row (LookupError if it is not stored).

        Returns a `running` row only when the engine shut down underneath the wait.
        """
        task_id = normalize_task_id(task_id)
        run = self._runs.get(task_id)
        if run is not None:
            await asyncio.wait_for(asyncio.shield(run.task), timeout)
            if run.final is not None:
                return run.final
        row = await self._db.get(task_id)
        if row is None:
            raise LookupError(f"task {task_id} is not stored")
        return row

    def healthz(self) -> bool:
        """Ready: the newest successful readiness task was a mark-ready (see `store_health` for the store's part)."""
        return self._ready

    def livez(self) -> bool:
        """Alive while the engine's store is open: a failing store is reported by `store_health`, not here (a
        restart cures neither a full volume nor another process's lock)."""
        return not self._db.closed

    def store_health(self) -> StoreHealth:
        """Whether the store can be written now (and if not, since when and why)."""
        return self._db.health

    @property
    def store(self) -> GuardedStore:
        """The store as the loop uses it (its recovery probe and listeners)."""
        return self._db

    def status(self) -> dict[str, Any]:
        return {"status": "Ready" if self._ready else "Initializing", "running": len(self._runs)}

    async def prune(self, now: datetime | None = None) -> int:
        """Delete terminal rows older than the retention period, and all but the newest `retention_count` terminal
        rows (readiness history is kept by the store)."""
        self._finished_since_prune = 0
        return await self._db.prune(
            (now or utcnow()) - self._settings.retention, keep_newest=self._settings.retention_count
        )

    def _count_finished(self) -> None:
        """Retention by count is applied as tasks finish, not only hourly: every `retention_count // 10` (at least
        1) terminal rows start one background prune, so the store holds at most ~110% of `retention_count`
        terminal rows however fast a client submits."""
        self._finished_since_prune += 1
        if self._finished_since_prune < max(1, self._settings.retention_count // 10):
            return
        self._prune_soon("retention-by-count")

    def _prune_soon(self, name: str) -> None:
        """Start one background prune unless one is already running."""
        if self._closing or (self._pruning is not None and not self._pruning.done()):
            return
        self._pruning = asyncio.create_task(self._prune_quietly(), name=name)

    async def _prune_quietly(self) -> None:
        try:
            await self.prune()
        except StoreError:
            pass  # the store logs its failures (throttled); the next finish or the hourly prune tries again
        finally:
            self._disk.forget()  # the next submission measures what retention freed

    async def prune_forever(self, interval: float = 3600.0) -> None:
        """Apply the retention period now and then every `interval` seconds, until cancelled.

        A failing prune is logged (throttled) and tried again: retention must never take the agent down.
        """
        name = f"pruning finished tasks older than {self._settings.retention}"
        await every(name, interval, self.prune, first_delay=0)

    # ------------------------------------------------------------------ listeners

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` on every event, on the loop; it must not block (queue the work instead)."""
        self._listeners.append(listener)

    def _emit(self, kind: EventKind, row: TaskResult) -> None:
        log_transition(kind, row)
        event = TaskEvent(kind, row)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("engine listener %r failed on %s of task %s", listener, kind, row.id)

    def _readiness_from_history(self) -> bool:
        ready = self._store.latest_by_type(TaskType.MARK_READY, status=TaskStatus.COMPLETED, order_by="completed_at")
        hold = self._store.latest_by_type(TaskType.MARK_NOT_READY, status=TaskStatus.COMPLETED, order_by="completed_at")
        if ready is None or ready.completed_at is None:
            return False
        return hold is None or hold.completed_at is None or ready.completed_at > hold.completed_at


# ---------------------------------------------------------------------- row helpers


def check_task(
    registry: HandlerRegistry, task: Task, settings: AgentSettings | None = None
) -> tuple[str, HandlerSpec[Any], TaskParams]:
    """Validate a task without running or storing anything: (canonical ID, handler, typed params).

    Raises `UnsupportedType`, `InvalidTaskID` or `ParamsInvalid`, exactly as `Engine.submit` would refuse or fail the
    task: the params model, then, given the `settings` the task would run with, the handler's precheck. The local
    runner uses it to refuse a whole plan before running any of it.
    """
    spec = _spec_for(registry, task.type)
    task_id = normalize_task_id(task.id) if task.id else str(uuid.uuid4())
    return task_id, spec, _validate_params(spec, task.params, settings)


OMITTED_PARAMS_KEY = "$omitted"
"""Params that break the bounds are stored as `{"$omitted": "<which bound>"}`: never the value itself."""


def storable_params(params: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """(the params to store, the bound they break or None). Params nested deeper or larger than
    `agent.models.limits` allows are replaced by a small marker naming the bound, so that nothing recursive (the
    store's JSON, pydantic's serializer, `/v0/tasks`) ever handles them."""
    if params is None:
        return None, None
    problem = json_bounds_problem(params)
    if problem is None:
        return params, None
    return {OMITTED_PARAMS_KEY: problem}, problem


def task_id_conflict(existing: TaskResult, task: Task) -> TaskIdConflict | None:
    """Why `task` is not the work already stored under its ID (another type, other params), or None when it is the
    same work (then the submission is the idempotent no-op it always was). `task.params` as `storable_params` made
    them; `None` and `{}` are the same params."""
    differences = []
    if existing.type != task.type:
        differences.append(f"stored type {existing.type!r}, submitted {task.type!r}")
    if (storable_params(existing.params)[0] or {}) != (storable_params(task.params)[0] or {}):
        differences.append(f"the params differ from the stored {existing.type} task's")
    return TaskIdConflict(existing.id, differences) if differences else None


def _spec_for(registry: HandlerRegistry, task_type: str) -> HandlerSpec[Any]:
    spec = registry.get(task_type)
    if spec is None:
        raise UnsupportedType(task_type, [str(t) for t in registry.types()])
    return spec


def _validate_params(spec: HandlerSpec[Any], raw: dict[str, Any] | None, settings: AgentSettings | None) -> TaskParams:
    if raw is not None:
        problem = raw.get(OMITTED_PARAMS_KEY) if len(raw) == 1 else None
        problem = problem if isinstance(problem, str) else json_bounds_problem(raw)
        if problem is not None:
            raise ParamsInvalid(problem, hint="params are limited in depth and size; see docs/reliability.md")
    try:
        params: TaskParams = spec.params_model.model_validate(raw or {}, context=WIRE_CONTEXT)
    except ValidationError as error:
        raise ParamsInvalid(format_validation_error(error, model=spec.params_model)) from None
    if spec.precheck is not None and settings is not None:
        spec.precheck(params, settings)
    return params


def _new_row(task_id: str, task: Task) -> TaskResult:
    now = utcnow()
    return TaskResult(
        id=task_id,
        type=task.type,
        status=TaskStatus.RUNNING,
        params=task.params,
        submitted_at=now,
        started_at=now,
        timeout_seconds=task.timeout_seconds,
        retry=task.retry,
        retry_nonce=task.retry_nonce,
        source=task.source,
    )


def _new_nonce(task: Task, existing: TaskResult) -> bool:
    return task.retry_nonce is not None and task.retry_nonce != existing.retry_nonce


def _would_start(existing: TaskResult, task: Task, retry: bool) -> bool:
    """Whether submitting `task` under `existing`'s ID would run it (a failed row asked to run again)."""
    return existing.status is TaskStatus.FAILED and (retry or _new_nonce(task, existing))


def _rerun_row(existing: TaskResult, task: Task) -> TaskResult:
    return existing.model_copy(
        update={
            "status": TaskStatus.RUNNING,
            "run": existing.run + 1,
            "params": task.params,
            "result": None,
            "error": "",
            "reason": "",
            "hint": "",
            "retryable": False,
            "started_at": utcnow(),
            "completed_at": None,
            # A submission that names no deadline (the HTTP API has none) keeps the one the task was given.
            "timeout_seconds": task.timeout_seconds if task.timeout_seconds is not None else existing.timeout_seconds,
            "retry": task.retry,
            "retry_nonce": task.retry_nonce if task.retry_nonce is not None else existing.retry_nonce,
            "source": task.source or existing.source,
        }
    )


def _completed(result: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "status": TaskStatus.COMPLETED,
        "completed_at": utcnow(),
        "result": result,
        "error": "",
        "reason": Reason.SUCCEEDED,
        "hint": "",
        "retryable": False,
    }


def _failure_fields(error: TaskError) -> dict[str, Any]:
    fields = {"error": error.message, "reason": error.reason, "hint": error.hint, "retryable": error.retryable}
    if error.result is not None:  # what a caller branches on besides the reason (a gov task's inclusionStatus)
        fields["result"] = error.result
    return fields


def _resumed(row: TaskResult) -> TaskResult:
    """`row` as it runs again: one more resume, its first start time kept."""
    return row.model_copy(update={"resumes": row.resumes + 1, "started_at": row.started_at or utcnow()})


def _failed(error: TaskError) -> dict[str, Any]:
    return {**_failure_fields(error), "status": TaskStatus.FAILED, "completed_at": utcnow()}


def _remaining(row: TaskResult) -> float | None:
    if row.timeout_seconds is None:
        return None
    started = row.started_at or utcnow()
    return row.timeout_seconds - (utcnow() - started).total_seconds()


def _deadline_error(row: TaskResult, cause: TaskError | None = None) -> TaskError:
    if cause is not None:  # the handler said what the wait was really stuck on (TaskContext.explain_deadline)
        return TaskError(
            f"run {row.run} exceeded its timeout of {row.timeout_seconds}s: {cause.message}",
            reason=cause.reason,
            hint=cause.hint,
            retryable=cause.retryable,
        )
    return TaskError(
        f"run {row.run} exceeded its timeout of {row.timeout_seconds}s",
        reason=Reason.DEADLINE_EXCEEDED,
        hint="raise spec.timeoutSeconds if the work legitimately takes longer",
        retryable=True,
    )


def _killed_error(row: TaskResult, unclean_stops: int) -> TaskError:
    return TaskError(
        f"the agent process died {unclean_stops} times in a row while this task was running (resumed "
        f"{row.resumes} times without an outcome): it keeps killing the agent, likely by exhausting its memory "
        "(OOM); not resumed again",
        reason=Reason.AGENT_KILLED,
        hint="check the pod's last state (kubectl describe pod: OOMKilled), raise the agent container's memory "
        "limit, then submit the task again (a new retryNonce)",
    )


def _crash(error: BaseException) -> TaskError:
    return TaskError(
        f"handler crashed: {type(error).__name__}: {error}",
        reason=Reason.HANDLER_CRASHED,
        hint="this is a bug in the agent; the agent keeps running — report it with the agent's log",
        retryable=True,
    )


def _checked_result(result: object) -> dict[str, Any] | TaskError | None:
    if result is None:
        return None
    if not isinstance(result, dict):
        return _crash(TypeError(f"handler returned {type(result).__name__}, not a JSON object"))
    problem = json_bounds_problem(result, what="result", max_bytes=MAX_RESULT_BYTES)
    if problem is not None and "not serializable" in problem:
        return _crash(TypeError(problem))
    if problem is not None:
        # The result is copied into the NodeTask's status: etcd refuses objects over 1.5 MiB, and a status patch
        # that can never succeed would leave the resource Running forever.
        return TaskError(
            f"the handler's {problem}",
            reason=Reason.RESULT_TOO_LARGE,
            hint="this is a bug in the agent (results must stay small); report it with the agent's log",
        )
    try:
        json.dumps(result)
    except (TypeError, ValueError) as error:
        return _crash(error)
    return result

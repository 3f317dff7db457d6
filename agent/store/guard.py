"""`GuardedStore`: the store as the event loop sees it, run on one dedicated thread, with a health state.

Why a thread
    SQLite blocks: a write waits up to `busy_timeout` (5 s) for another process's write lock, and a full volume or a
    slow disk stalls any statement. Run on the event loop, that froze probes, the watch and the status writer (the
    readiness probe's timeout is 3 s). Every call goes to one dedicated thread instead (one, so calls keep their order
    and the single connection is never used by two threads at once); the loop only awaits.

Health
    A failing call makes the store *unavailable*: the cause is logged at once, then at most once per `log_interval`
    with a count; `/healthz` answers 503 naming it and `/v0/status` shows it (the agent cannot record progress, so it
    must not claim to be ready), while `/livez` stays 200 (a restart cures neither a full volume nor another
    process's lock, and a restart loop would only add downtime). While unavailable, writes fail fast (no 5 s wait per
    call) and a recovery probe runs every `probe_interval`: take the write lock (`BEGIN IMMEDIATE`) and write a small
    file beside the database. When it succeeds the store is available again, the recovery is logged, and every
    `on_recovered` listener is called (the engine retries the outcomes it holds, the agent resyncs its NodeTasks).
    A successful read does not clear a failed write: with WAL, reads keep working under another writer's lock.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from agent.io.loops import LogThrottle, every
from agent.models import TaskResult, TaskStatus, utcnow

from .base import OrderColumn, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StoreHealth:
    """Whether the store can be written, and if not since when and why."""

    ok: bool
    cause: str = ""
    since: datetime | None = None
    failures: int = 0

    def describe(self) -> str:
        return "available" if self.ok else f"unavailable since {self.since:%H:%M:%SZ}: {self.cause}"


class GuardedStore:
    """Async access to a `Store` on one dedicated thread, with the health state described in the module docstring."""

    def __init__(self, store: Store, *, log_interval: float = 60.0, probe_interval: float = 2.0) -> None:
        self.store = store
        self.probe_interval = probe_interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="task-store")
        self._throttle = LogThrottle(log_interval)
        self._health = StoreHealth(ok=True)
        self._failed_write = False
        self._recovered = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._closed = False
        self._writes_in_flight = 0
        self._no_writes = asyncio.Event()
        self._no_writes.set()

    # -------------------------------------------------------------------------------------------- health

    @property
    def health(self) -> StoreHealth:
        return self._health

    @property
    def closed(self) -> bool:
        return self._closed

    def on_recovered(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the loop, must not block) each time the store becomes available again."""
        self._listeners.append(listener)

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the store becomes available meanwhile (for callers retrying a write)."""
        waiting = self._recovered
        try:
            await asyncio.wait_for(waiting.wait(), seconds)
        except TimeoutError:
            pass

    def _failed(self, error: StoreError, *, write: bool) -> None:
        now = utcnow()
        was_ok = self._health.ok
        self._failed_write = self._failed_write or write
        self._health = StoreHealth(
            ok=False,
            cause=str(error),
            since=now if was_ok else self._health.since,
            failures=self._health.failures + 1,
        )
        if was_ok:
            self._throttle.reset()
        suppressed = self._throttle.allow()
        if suppressed is not None:
            repeats = f" ({suppressed} more failure(s) since the last report)" if suppressed else ""
            log.error(
                "task store unavailable%s: %s; work that needs it waits and retries, /healthz answers 503",
                repeats,
                error,
            )

    def _succeeded(self, *, write: bool) -> None:
        if self._health.ok or (self._failed_write and not write):
            return
        since = self._health.since
        log.warning(
            "task store available again after %.0fs (%d failure(s)); resuming the work that waited for it",
            (utcnow() - since).total_seconds() if since else 0.0,
            self._health.failures,
        )
        self._health = StoreHealth(ok=True)
        self._failed_write = False
        recovered, self._recovered = self._recovered, asyncio.Event()
        recovered.set()
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("store recovery listener %r failed", listener)

    # --------------------------------------------------------------------------------------------- calls

    async def call(self, action: str, function: Callable[..., T], *args: Any, write: bool, **kwargs: Any) -> T:
        """Run `function(*args, **kwargs)` on the store's thread; record the outcome in the health state.

        While the store is unavailable because a write failed, a write fails at once with the known cause.
        """
        if self._closed:
            raise StoreError(f"task store is closed: cannot {action}")
        if write and not self._health.ok and self._failed_write:
            raise StoreError(f"cannot {action}: task store unavailable ({self._health.cause})")
        loop = asyncio.get_running_loop()
        if write:
            self._writes_in_flight += 1
            self._no_writes.clear()
        try:
            result = await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))
        except StoreError as error:
            self._failed(error, write=write)
            raise
        finally:
            if write:
                self._writes_in_flight -= 1
                if not self._writes_in_flight:
                    self._no_writes.set()
        self._succeeded(write=write)
        return result

    async def writes_settled(self, within: float) -> bool:
        """Wait until no write is on the store's thread (True), or `within` seconds (False). A write in flight is a
        state transition about to be published (a task that finishes at once stores its outcome right after it
        started): the status writer waits for it so that both go out as one patch."""
        try:
            await asyncio.wait_for(self._no_writes.wait(), within)
        except TimeoutError:
            return False
        return True

    async def save(self, result: TaskResult) -> None:
        await self.call("save", self.store.save, result, write=True)

    async def save_many(self, results: Sequence[TaskResult]) -> None:
        await self.call("save", self.store.save_many, results, write=True)

    async def insert(self, result: TaskResult) -> bool:
        return await self.call("insert", self.store.insert, result, write=True)

    async def get(self, task_id: str) -> TaskResult | None:
        return await self.call("get", self.store.get, task_id, write=False)

    async def list(self, limit: int = 100, *, after: TaskResult | None = None) -> builtins.list[TaskResult]:
        return await self.call("list", self.store.list, limit, after=after, write=False)

    async def list_stale(self) -> builtins.list[TaskResult]:
        return await self.call("list running tasks", self.store.list_stale, write=False)

    async def delete(self, task_id: str) -> bool:
        return await self.call("delete", self.store.delete, task_id, write=True)

    async def latest_by_type(
        self, task_type: str, *, status: TaskStatus | None = None, order_by: OrderColumn = "submitted_at"
    ) -> TaskResult | None:
        return await self.call(
            "find the latest task", self.store.latest_by_type, task_type, status=status, order_by=order_by, write=False
        )

    async def prune(self, older_than: datetime, *, keep_newest: int | None = None) -> int:
        return await self.call("prune", self.store.prune, older_than, keep_newest=keep_newest, write=True)

    # -------------------------------------------------------------------------------------------- recovery

    async def probe(self) -> bool:
        """Try the store's write probe now (only while unavailable); whether the store is available afterwards."""
        if self._health.ok or self._closed:
            return self._health.ok
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.store.probe_write)
        except StoreError as error:
            self._failed(error, write=True)
            return False
        self._succeeded(write=True)
        return True

    async def watch(self) -> None:
        """Probe every `probe_interval` seconds while unavailable, forever (cancel to stop)."""
        await every("task store recovery probe", self.probe_interval, self.probe)

    async def close(self, within: float = 10.0) -> None:
        """Close the store after the calls already queued (waiting at most `within` seconds for them)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(self._executor, self.store.close)
        try:
            await asyncio.wait_for(closing, within)
        except TimeoutError:
            log.error("task store did not close within %.0fs (a call is stuck in the database)", within)
        except StoreError as error:
            log.error("%s", error)
        self._executor.shutdown(wait=False)

    def close_now(self) -> None:
        """Close synchronously (no loop running): for callers that own the store outside asyncio."""
        self._closed = True
        self._executor.shutdown(wait=True)
        self.store.close()

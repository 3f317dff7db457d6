"""The store interface the engine is written against, and the one error every store operation raises."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol

from agent.models import TaskResult, TaskStatus

OrderColumn = Literal["submitted_at", "completed_at"]


class StoreError(Exception):
    """The task store could not do what was asked: opening, migrating, reading or writing failed.

    The message names the store's path, the operation (and the task ID when there is one) and the cause.
    """


class StoreInUse(StoreError):
    """Another process holds the store's exclusive lock (one process per store)."""


class Store(Protocol):
    """Where the engine keeps every task's state. Every method is safe to call from any
    thread; every failure is a `StoreError`."""

    def save(self, result: TaskResult) -> None:
        """Insert or overwrite the row of `result.id` with every persisted field of `result` (not `progress`)."""

    def save_many(self, results: Sequence[TaskResult]) -> None:
        """`save` each of `results` in one transaction: all of them are written, or none."""

    def insert(self, result: TaskResult) -> bool:
        """Insert `result` only if no row has its ID: True if inserted, False if the ID exists. Atomic: of several
        concurrent inserts of one ID exactly one returns True."""

    def get(self, task_id: str) -> TaskResult | None:
        """The row of `task_id`, or None when there is none."""

    def list(self, limit: int = 100, *, after: TaskResult | None = None) -> builtins.list[TaskResult]:
        """At most `limit` rows, newest `submitted_at` first (ties by ID); with `after`, those that follow it."""

    def list_stale(self) -> builtins.list[TaskResult]:
        """Every row still `running` (left over by a crash or shutdown), oldest `submitted_at` first."""

    def delete(self, task_id: str) -> bool:
        """Remove the row of `task_id`; whether there was one."""

    def latest_by_type(
        self, task_type: str, *, status: TaskStatus | None = None, order_by: OrderColumn = "submitted_at"
    ) -> TaskResult | None:
        """The newest row of `task_type` (optionally only with `status`), newest by `order_by`."""

    def prune(self, older_than: datetime, *, keep_newest: int | None = None) -> int:
        """Delete terminal rows completed before `older_than` (and, with `keep_newest`, all but that many newest
        terminal rows), keeping the newest completed mark-ready and mark-not-ready (readiness is restored from them
        at start-up). Returns how many rows were deleted."""

    def probe_write(self) -> None:
        """Raise `StoreError` unless the store could take a write now: its write lock is free and its volume accepts
        a small write (used to notice that a failed store has recovered)."""

    def ping(self) -> bool:
        """Whether the store answers a trivial query (liveness)."""

    def close(self) -> None:
        """Release the database; later calls raise `StoreError` and `ping` returns False."""

"""Errors that carry a stable reason. Any layer may raise them; the engine turns them into failed results."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from .types import Reason


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, compared case-insensitively; `""` when none is close."""
    by_folded = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(word.lower(), list(by_folded), n=1, cutoff=0.75)
    return f" (did you mean {by_folded[close[0]]!r}?)" if close else ""


class TaskError(Exception):
    """A task failed for a known reason.

    `message` says what went wrong and names the offending field, file, bucket/key or endpoint; `hint` says what an
    operator can do about it; `retryable` tells a retry policy (and a controller) whether running again may help.
    `result`, when given, is the failed task's result (a small JSON object, no secret): what a caller branches on
    besides the reason (a gov task's `inclusionStatus`).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = Reason.TASK_FAILED,
        hint: str = "",
        retryable: bool = False,
        result: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.reason = str(reason)
        self.hint = hint
        self.retryable = retryable
        self.result = result

    def __str__(self) -> str:
        return f"{self.message} [hint: {self.hint}]" if self.hint else self.message


class ParamsInvalid(TaskError):
    """The task's params do not fit its type's params model (never retryable)."""

    def __init__(self, message: str, *, hint: str = ""):
        super().__init__(message, reason=Reason.PARAMS_INVALID, hint=hint, retryable=False)


class TaskRejected(TaskError):
    """A submission the engine refuses outright: no row is stored and nothing runs."""


class InvalidTaskID(TaskRejected):
    """A task ID that is not a UUID (the Go sidecar's `ErrInvalidTaskID`, for clients that match on it)."""

    def __init__(self, task_id: str):
        super().__init__(
            f"task ID must be a valid UUID: {task_id!r}",
            reason=Reason.INVALID_TASK_ID,
            hint="use a UUID (for example the resource's metadata.uid) or leave spec.taskId unset",
        )
        self.task_id = task_id


class UnsupportedType(TaskRejected):
    """The task's type has no handler in this agent."""

    def __init__(self, task_type: str, known: list[str]):
        super().__init__(
            f"unknown task type: {task_type!r}{did_you_mean(task_type, known)}",
            reason=Reason.UNSUPPORTED_TYPE,
            hint="this agent supports: " + ", ".join(sorted(known)),
        )
        self.task_type = task_type


class TaskIdConflict(TaskRejected):
    """A task ID already names *other* work (another type or other params): an ID is an idempotency key for the same
    work only, so the submission is refused instead of being answered with the stored task's outcome."""

    def __init__(self, task_id: str, differences: list[str]):
        super().__init__(
            f"task ID {task_id} is already used by a different task ({'; '.join(differences)})",
            reason=Reason.TASK_ID_CONFLICT,
            hint="give this task its own spec.taskId (or leave it unset to use the resource's UID)",
        )
        self.task_id = task_id
        self.differences = differences


class TooManyTasks(TaskRejected):
    """The agent already runs (or waits to retry) as many tasks as it may hold at once: the new one is refused and
    nothing is stored, so that no client can queue unbounded work (memory, event-loop time, the store's size)."""

    def __init__(self, limit: int, active: int):
        super().__init__(
            f"the agent already has {active} tasks queued or running, its limit NODETASK_MAX_TASKS={limit}",
            reason=Reason.TOO_MANY_TASKS,
            hint="submit again once some tasks have finished, or raise NODETASK_MAX_TASKS",
            retryable=True,
        )
        self.limit = limit


class DiskBudgetExceeded(TaskRejected):
    """The home's disk budget is spent: a new task is refused and nothing is stored, so that no client can fill the
    node's volume (which seid shares) with the agent's bookkeeping. `setting` is the variable that bounds it, `value`
    the measured bytes and `limit` the setting's bytes."""

    def __init__(self, setting: str, message: str, *, value: int, limit: int):
        super().__init__(
            message,
            reason=Reason.DISK_BUDGET_EXCEEDED,
            hint=f"submit again once space is freed (finished tasks are pruned), or change {setting}",
            retryable=True,
        )
        self.setting = setting
        self.value = value
        self.limit = limit


class TaskOwned(TaskRejected):
    """A task ID owned by a NodeTask (or a local manifest) submitted without it (over HTTP): the resource is the only
    way to drive that task, with its deadline, retry policy and `retryNonce`."""

    def __init__(self, task_id: str, owner: str):
        super().__init__(
            f"task {task_id} belongs to NodeTask {owner}: submit, retry or delete it through the NodeTask",
            reason=Reason.TASK_OWNED,
            hint="to run it again, set a new spec.retryNonce on the NodeTask",
        )
        self.task_id = task_id
        self.owner = owner

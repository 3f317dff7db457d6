"""What the engine tells its listeners (the operator's status writer, metrics, the local runner)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agent.models import TaskResult


class EventKind(StrEnum):
    ACCEPTED = "Accepted"
    """A new task (or a new run of a failed one) was stored and is about to start."""
    STARTED = "Started"
    """A run began executing its handler."""
    RESUMED = "Resumed"
    """A run left unfinished by a previous process began executing again (`resumes` was incremented)."""
    PROGRESS = "Progress"
    """The handler reported progress (throttled to one event per task per progress interval)."""
    RETRYING = "Retrying"
    """A run failed and the task's retry policy starts another (`run` was incremented, the error is the last one)."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    REMOVED = "Removed"
    """The task was removed from the store (its handler, if running, was stopped)."""

    @property
    def terminal(self) -> bool:
        return self in (EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED, EventKind.REMOVED)


@dataclass(frozen=True)
class TaskEvent:
    kind: EventKind
    result: TaskResult

"""Pydantic models and enumerations shared by every layer (the bottom layer: it imports nothing of the agent)."""

from .errors import (
    DiskBudgetExceeded,
    InvalidTaskID,
    ParamsInvalid,
    TaskError,
    TaskIdConflict,
    TaskOwned,
    TaskRejected,
    TooManyTasks,
    UnsupportedType,
)
from .task import (
    CamelModel,
    Progress,
    ResourceRef,
    RetryPolicy,
    Task,
    TaskResult,
    format_timestamp,
    normalize_task_id,
    parse_timestamp,
    utcnow,
)
from .types import Phase, Reason, TaskStatus, TaskType

__all__ = [
    "CamelModel",
    "DiskBudgetExceeded",
    "InvalidTaskID",
    "ParamsInvalid",
    "Phase",
    "Progress",
    "Reason",
    "ResourceRef",
    "RetryPolicy",
    "Task",
    "TaskError",
    "TaskIdConflict",
    "TaskOwned",
    "TaskRejected",
    "TaskResult",
    "TaskStatus",
    "TaskType",
    "TooManyTasks",
    "UnsupportedType",
    "format_timestamp",
    "normalize_task_id",
    "parse_timestamp",
    "utcnow",
]

"""The task executor (docs/design.md section 4). Knows nothing of Kubernetes or HTTP."""

from .engine import Engine, EngineClosed, check_task, storable_params, task_id_conflict
from .events import EventKind, TaskEvent

__all__ = ["Engine", "EngineClosed", "EventKind", "TaskEvent", "check_task", "storable_params", "task_id_conflict"]

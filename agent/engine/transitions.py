"""One log line per task transition, with the task's identity as structured fields.

Every transition the engine emits (accepted, started, resumed, retrying, succeeded, failed, cancelled, removed; not
progress) is logged once on the `agent.engine.transitions` logger, whatever drove the task (a NodeTask, the HTTP
API, a local plan): a task that fails `ParamsInvalid` before its handler runs has its line too, so a failure at
night survives in the log after its Event expired. The record carries `LOG_FIELDS` as attributes; the JSON
formatter writes them as keys (`namespace` and `name` are the NodeTask's, absent for other sources), the text
formatter appends them as `key=value`.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.models import TaskResult

from .events import EventKind

TRANSITION_LOGGER = "agent.engine.transitions"
log = logging.getLogger(TRANSITION_LOGGER)

LOG_FIELDS = {
    "transition": "event",
    "task_id": "task_id",
    "task_type": "type",
    "task_run": "run",
    "reason": "reason",
    "namespace": "namespace",
    "resource_name": "name",
}
"""LogRecord attribute -> key in a JSON line (and `key=value` in a text line). `name` is a LogRecord attribute of its
own (the logger), hence `resource_name`."""

_LEVELS = {
    EventKind.RETRYING: logging.WARNING,
    EventKind.FAILED: logging.WARNING,
}


def task_fields(row: TaskResult) -> dict[str, Any]:
    """The identity fields of `row` as LogRecord extras: task ID and, for a NodeTask's task, its namespace and name
    (what a handler's own log lines carry too)."""
    fields: dict[str, Any] = {"task_id": row.id}
    if row.source is not None:
        fields["namespace"] = row.source.namespace
        fields["resource_name"] = row.source.name
    return fields


def log_transition(kind: EventKind, row: TaskResult) -> None:
    """Log `kind` of `row` once (progress is not a transition and is not logged)."""
    if kind is EventKind.PROGRESS:
        return
    event = kind.value.lower()
    extra = {**task_fields(row), "transition": event, "task_type": row.type, "task_run": row.run}
    detail = ""
    if kind in (EventKind.FAILED, EventKind.RETRYING, EventKind.CANCELLED) and row.reason:
        extra["reason"] = row.reason
        detail = f" ({row.reason}): {row.error}" if row.error else f" ({row.reason})"
    if kind is EventKind.RETRYING:
        detail = f": run {row.run - 1} failed{detail}"
    log.log(_LEVELS.get(kind, logging.INFO), "task %s%s", event, detail, extra=extra)


__all__ = ["LOG_FIELDS", "TRANSITION_LOGGER", "log_transition", "task_fields"]

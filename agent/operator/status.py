"""From a store row (plus what the engine just said about it) to the NodeTask `status` the agent writes.

Pure functions: no I/O, no clock except the `now` passed in. Each status is built as the typed `NodeTaskStatus`
(the model the CRD's status schema comes from) and sent by the status writer as a JSON merge patch (`as_patch`: the
fields the rendering set), so a `None` value *deletes* that key on the server (used to clear the previous run's
error, result and progress when a task runs again); keys absent from the dict are left as they are.

Phases: a stored `running` row is `Running`, or `Pending` while an automatic retry waits for its backoff; terminal
rows map one to one (`completed` -> `Succeeded`, ...). Conditions (see `agent.models.status`): `Accepted` True once
the agent took the task; `Succeeded` True when the latest run succeeded; `Failed` True when the task ended without
success, *including* cancellation (reason `Cancelled`), so that a controller waiting on either condition always
wakes up. Both are False while a run is active, and a re-run (retry or new `retryNonce`) turns them False again.
`Finished` is True on every terminal phase; kstatus' `Reconciling` / `Stalled` / `Ready` are True while active /
after a failure or cancellation / after success, exactly one at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.engine import EventKind
from agent.models import Phase, Progress, Reason, TaskError, TaskResult, TaskStatus, format_timestamp
from agent.models.redaction import redact, redact_text
from agent.models.status import (
    AgentIdentity,
    Condition,
    ConditionStatus,
    ConditionType,
    ErrorStatus,
    NodeTaskStatus,
    ProgressStatus,
)


@dataclass(frozen=True)
class Rendering:
    """What every status rendering needs besides the outcome: who writes, which generation of the resource it
    describes, the time, and the conditions written last (so that unchanged conditions keep lastTransitionTime)."""

    agent: AgentIdentity
    generation: int
    now: datetime
    previous_conditions: Sequence[dict[str, Any]] = ()


MESSAGE_LIMIT = 1024
REASON_LIMIT = 1024
"""A condition's reason is at most this long (metav1.Condition; the CRD schema says so too)."""
ERROR_MESSAGE_LIMIT = 4096
TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})

# The fields that decide whether a resource's status tells the same story as the store (heartbeat, progress and
# timestamps aside): when they differ, the status is re-patched from the store.
ESSENTIAL_FIELDS = ("phase", "run", "resumes", "taskId", "reason")


def _clip(text: str, limit: int) -> str:
    """`text` with secret-shaped parts masked (defence in depth, see `agent.models.redaction`), at most `limit`
    characters."""
    text = redact_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def phase_of(row: TaskResult, kind: EventKind | None = None) -> Phase:
    if row.status is TaskStatus.RUNNING and (kind is EventKind.RETRYING or row.started_at is None):
        return Phase.PENDING
    return row.phase


def _reason_and_message(row: TaskResult, phase: Phase) -> tuple[str, str]:
    if phase is Phase.PENDING:
        return "Retrying", f"run {row.run - 1} failed ({row.reason}): {row.error}; run {row.run} starts after backoff"
    if phase is Phase.RUNNING:
        summary = row.progress.describe() if row.progress else ""
        if row.resumes:
            return "Resumed", summary or f"resumed after an agent restart ({row.resumes}x)"
        return "Running", summary or f"run {row.run} running"
    if phase is Phase.SUCCEEDED:
        took = ""
        if row.started_at and row.completed_at:
            took = f" in {(row.completed_at - row.started_at).total_seconds():.1f}s"
        return Reason.SUCCEEDED, f"run {row.run} succeeded{took}"
    return row.reason or Reason.TASK_FAILED, row.error or phase.value.lower()


def progress_status(progress: Progress) -> ProgressStatus:
    percent = progress.percent
    return ProgressStatus(
        current=progress.current,
        total=progress.total,
        unit=progress.unit,
        percent=None if percent is None else min(100.0, max(0.0, percent)),
        message=_clip(progress.message, MESSAGE_LIMIT),
        summary=_clip(progress.describe(), 120),
    )


def conditions_for(
    phase: Phase,
    reason: str,
    message: str,
    *,
    accepted: bool,
    generation: int,
    now: datetime,
    previous: Sequence[dict[str, Any]] = (),
) -> list[Condition]:
    """Every condition (see `agent.models.status`), keeping `lastTransitionTime` of each whose status did not change."""
    stamp = format_timestamp(now)
    before = {condition.get("type"): condition for condition in previous}
    short = _clip(message, MESSAGE_LIMIT)
    if accepted:
        accepted_state = (ConditionStatus.TRUE, "Accepted", "the agent of the target pod took the task")
    else:
        accepted_state = (ConditionStatus.FALSE, reason, short)
    succeeded = phase is Phase.SUCCEEDED
    failed = phase in (Phase.FAILED, Phase.CANCELLED)
    active = not (succeeded or failed)
    outcome_reason = reason if not active else phase.value
    states = {
        ConditionType.ACCEPTED: accepted_state,
        ConditionType.SUCCEEDED: (
            ConditionStatus.TRUE if succeeded else ConditionStatus.FALSE,
            reason if succeeded or failed else phase.value,
            short if succeeded or failed else "",
        ),
        ConditionType.FAILED: (
            ConditionStatus.TRUE if failed else ConditionStatus.FALSE,
            reason if succeeded or failed else phase.value,
            short if failed else "",
        ),
        ConditionType.FINISHED: (
            ConditionStatus.FALSE if active else ConditionStatus.TRUE,
            outcome_reason,
            "" if active else f"{phase.value}: {short}",
        ),
        ConditionType.READY: (ConditionStatus.TRUE if succeeded else ConditionStatus.FALSE, outcome_reason, short),
        ConditionType.RECONCILING: (
            ConditionStatus.TRUE if active else ConditionStatus.FALSE,
            reason if active else phase.value,
            short if active else "",
        ),
        ConditionType.STALLED: (
            ConditionStatus.TRUE if failed else ConditionStatus.FALSE,
            outcome_reason,
            short if failed else "",
        ),
    }
    conditions = []
    for condition_type, (status, condition_reason, condition_message) in states.items():
        old = before.get(condition_type.value)
        changed = old is None or old.get("status") != status.value
        conditions.append(
            Condition(
                type=condition_type,
                status=status,
                reason=(condition_reason or "Unknown")[:REASON_LIMIT],
                message=condition_message,
                last_transition_time=stamp if changed else old["lastTransitionTime"],  # type: ignore[index]
                observed_generation=generation,
            )
        )
    return conditions


def _agent(identity: AgentIdentity) -> AgentIdentity:
    """`identity` with every field set, so that the patch always carries pod, pod UID and session."""
    return AgentIdentity(pod=identity.pod, pod_uid=identity.pod_uid, session=identity.session)


def as_patch(status: NodeTaskStatus) -> dict[str, Any]:
    """The JSON merge-patch body of `status`: every field the rendering set, `None` included (a null deletes the key
    on the server); fields it left unset are absent, so the server keeps them."""
    return status.model_dump(mode="json", by_alias=True, exclude_unset=True)


def render_status(row: TaskResult, kind: EventKind | None, context: Rendering) -> dict[str, Any]:
    """The status (merge-patch body) that tells what the store knows about `row` (`kind`: the engine event that
    prompted it, if any)."""
    agent, generation, now = context.agent, context.generation, context.now
    phase = phase_of(row, kind)
    reason, message = _reason_and_message(row, phase)
    status = NodeTaskStatus(
        phase=phase,
        run=row.run,
        resumes=row.resumes,
        task_id=row.id,
        agent=_agent(agent),
        submitted_at=format_timestamp(row.submitted_at),
        started_at=format_timestamp(row.started_at) if row.started_at else None,
        completed_at=format_timestamp(row.completed_at) if row.completed_at else None,
        reason=reason,
        message=_clip(message, MESSAGE_LIMIT),
        observed_generation=generation,
        conditions=conditions_for(
            phase, reason, message, accepted=True, generation=generation, now=now, previous=context.previous_conditions
        ),
    )
    if phase in (Phase.RUNNING, Phase.PENDING):
        status.heartbeat_at = format_timestamp(now)
    if phase in TERMINAL_PHASES:
        # Keep the last numbers (bytes restored, height reached) but not the "in progress" line of the Progress column.
        status.progress = ProgressStatus(summary=None)
    elif row.progress is not None:
        status.progress = progress_status(row.progress)
    elif kind in (EventKind.ACCEPTED, EventKind.RETRYING):
        status.progress = None  # a new run: the previous run's progress no longer applies
    if phase is Phase.SUCCEEDED:
        status.result = redact(row.result) if row.result is not None else None
        status.error = None
    elif phase in (Phase.FAILED, Phase.CANCELLED, Phase.PENDING):
        # A failure may carry a result the caller branches on (a gov task's `inclusionStatus`); a retry's new run
        # (Pending) and a cancellation carry none.
        failed_result = row.result if phase is Phase.FAILED else None
        status.result = redact(failed_result) if failed_result is not None else None
        status.error = ErrorStatus(
            reason=row.reason or Reason.TASK_FAILED,
            message=_clip(row.error, ERROR_MESSAGE_LIMIT),
            hint=_clip(row.hint, MESSAGE_LIMIT),
            retryable=row.retryable,
        )
    else:
        status.result = None
        status.error = None
    return as_patch(status)


def _never_ran(
    phase: Phase, error: TaskError, *, accepted: bool, task_id: str | None, context: Rendering
) -> dict[str, Any]:
    """Status of a task that ended without a run (nothing in the store), or (Pending) has not started one yet: no
    run, resumes, start or result; `completedAt` only when it ended."""
    stamp = format_timestamp(context.now)
    ended = phase in TERMINAL_PHASES
    message = _clip(error.message, MESSAGE_LIMIT)
    return as_patch(
        NodeTaskStatus(
            phase=phase,
            task_id=task_id,
            agent=_agent(context.agent),
            submitted_at=stamp,
            completed_at=stamp if ended else None,
            reason=error.reason,
            message=message,
            observed_generation=context.generation,
            error=ErrorStatus(
                reason=error.reason,
                message=_clip(error.message, ERROR_MESSAGE_LIMIT),
                hint=_clip(error.hint, MESSAGE_LIMIT),
                retryable=not ended and error.retryable,
            ),
            progress=ProgressStatus(summary=None),
            conditions=conditions_for(
                phase,
                error.reason,
                message,
                accepted=accepted,
                generation=context.generation,
                now=context.now,
                previous=context.previous_conditions,
            ),
        )
    )


def render_rejection(error: TaskError, task_id: str | None, context: Rendering) -> dict[str, Any]:
    """Status of a task refused before anything was stored (InvalidTaskID, UnsupportedType, an unreadable spec):
    Failed and not accepted."""
    return _never_ran(Phase.FAILED, error, accepted=False, task_id=task_id, context=context)


def render_refused_for_now(error: TaskError, task_id: str, context: Rendering) -> dict[str, Any]:
    """Status of a task whose submission was refused for now (`TooManyTasks`), nothing stored: Pending and not
    accepted, with the reason and the message naming the cap; the agent submits it again (agent.operator.decide)."""
    return _never_ran(Phase.PENDING, error, accepted=False, task_id=task_id, context=context)


def render_cancelled_before_start(task_id: str, context: Rendering) -> dict[str, Any]:
    """Status of a task whose `spec.cancel` was already true when the agent first saw it: nothing ran."""
    cancelled = TaskError("cancelled before it started", reason=Reason.CANCELLED)
    return _never_ran(Phase.CANCELLED, cancelled, accepted=True, task_id=task_id, context=context)


def essentials(status: dict[str, Any] | None) -> tuple[Any, ...]:
    status = status or {}
    return tuple(status.get(name) for name in ESSENTIAL_FIELDS)


def is_terminal(status: Mapping[str, Any] | None) -> bool:
    return bool(status) and (status or {}).get("phase") in {phase.value for phase in TERMINAL_PHASES}

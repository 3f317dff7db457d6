"""The reconcile decision: what the agent does about one NodeTask, as a pure function of what it knows.

`decide(situation)` takes what the resource says (deleted, `cancel`, `retryNonce`, the observed status), what the
store says (the row under the task ID, or none; whether it is another resource's work) and what this agent wrote
(`Situation.authors`: the pod, pod UID and session of every agent process that wrote statuses from this store), and
returns a `Decision`: one `Action`, whether the resource's TTL deletion may be timed, and whether the observed status
is a terminal status this agent did not write (then it is written over and logged). No I/O, no clock: the table below is
what `NodeTaskAgent` carries out, and tests/operator/test_decide.py runs it row for row (the same rows, with the
same ids, are the table of docs/operator.md, which that test parses).

| row                 | the resource says                           | the store says  | action                 |
|---------------------|---------------------------------------------|-----------------|------------------------|
| deleted-running     | deleted (or being deleted)                  | running         | REMOVE                 |
| deleted-finished    | deleted                                     | not running     | FORGET                 |
| conflict            | another type or other params                | another's row   | REFUSE                 |
| cancel-running      | `cancel: true`                              | running         | CANCEL                 |
| cancel-new          | `cancel: true`                              | nothing         | CANCELLED_BEFORE_START |
| cancel-finished     | `cancel: true`                              | terminal        | ENSURE                 |
| new                 | new task                                    | nothing         | SUBMIT                 |
| refused-retryable   | refused for now (`TooManyTasks`) at submit  | nothing         | SUBMIT                 |
| own-outcome         | terminal status this agent wrote            | nothing         | KEEP_OUTCOME           |
| foreign-outcome     | terminal status this agent did not write    | nothing         | SUBMIT                 |
| retry-nonce         | new `retryNonce`                            | failed          | SUBMIT                 |
| forged-on-running   | terminal status                             | running         | ENSURE                 |
| forged-on-finished  | terminal status this agent did not write    | terminal        | ENSURE                 |
| in-line             | anything else                               | a row           | ENSURE                 |

"This agent wrote" means: `status.agent` names this pod, and its pod UID and session are a pair this agent
recorded (`Situation.authors`), and the status is about this task (`taskId`); with a store row, also its phase and
run are the row's.
Anything else is not an outcome: it never stops a task from running (foreign-outcome), never times the TTL deletion
(which would delete the NodeTask and, with it, a running task's row), and a terminal one is written over from the
store (forged-on-running, forged-on-finished) at once, not after the stale-body window. A terminal status of an
earlier run that this agent wrote, seen again while the next run is active, is a stale body (in-line), not a forgery.

A submission the engine refused for now (`RETRYABLE_REFUSALS`: `TooManyTasks`, the cap `NODETASK_MAX_TASKS`, and
`DiskBudgetExceeded`, the home's disk budget) stores
nothing and leaves the NodeTask Pending with that reason; such a status (or a Failed one with that reason that this
agent wrote) is no outcome: every later reconcile submits again (refused-retryable), and the agent resyncs when a task
finishes while refused ones wait, so the NodeTask runs once there is room.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.models import Reason, TaskResult, TaskStatus

from .status import is_terminal

Author = tuple[str, str, str]
"""(pod, pod UID, session) of one agent process."""

RETRYABLE_REFUSALS = frozenset({Reason.TOO_MANY_TASKS.value, Reason.DISK_BUDGET_EXCEEDED.value})
"""Reasons of a submission refused for now, with nothing stored: the NodeTask stays Pending and is submitted again."""


class Action(StrEnum):
    REMOVE = "REMOVE"
    """`engine.remove`: the handler is stopped and the row forgotten (the NodeTask is gone)."""
    FORGET = "FORGET"
    """Forget the resource (its TTL timer, its queued status); the row, if any, stays as history."""
    REFUSE = "REFUSE"
    """Status Failed `TaskIdConflict` on this resource only; the stored task is not touched."""
    CANCEL = "CANCEL"
    """`engine.cancel`: the handler is stopped; the engine's Cancelled event writes the status."""
    CANCELLED_BEFORE_START = "CANCELLED_BEFORE_START"
    """Status Cancelled ("cancelled before it started"); nothing is stored."""
    SUBMIT = "SUBMIT"
    """`engine.submit`: a new task, or run + 1 of a failed one."""
    KEEP_OUTCOME = "KEEP_OUTCOME"
    """Nothing: the task finished earlier and its row is gone (pruned or lost); it never runs again."""
    ENSURE = "ENSURE"
    """Re-patch the status from the store row if the resource tells a different story."""


@dataclass(frozen=True)
class Situation:
    """Everything the decision depends on (see the module docstring)."""

    task_id: str
    status: Mapping[str, Any] = field(default_factory=dict)
    """The resource's observed status ({} when it has none)."""
    row: TaskResult | None = None
    """The store's row under `task_id`."""
    conflict: bool = False
    """The row is another resource's, with another type or other params."""
    deleted: bool = False
    cancel: bool = False
    retry_nonce: str | None = None
    authors: frozenset[Author] = frozenset()
    """Every (pod, pod UID, session) this agent recorded as its own, the running process's included."""


@dataclass(frozen=True)
class Decision:
    action: Action
    row: str
    """The table row (module docstring, docs/operator.md) that decided."""
    expire: bool = False
    """The observed status is this agent's own terminal outcome: time `ttlSecondsAfterFinished` from it."""
    overwrite: bool = False
    """The observed status is terminal and not this agent's: write over it now (and log it)."""


def author_of(status: Mapping[str, Any]) -> Author | None:
    """(pod, pod UID, session) named by `status.agent`, or None when it names none."""
    agent = status.get("agent")
    if not isinstance(agent, Mapping):
        return None
    return str(agent.get("pod") or ""), str(agent.get("podUID") or ""), str(agent.get("session") or "")


def written_by(status: Mapping[str, Any], authors: frozenset[Author]) -> bool:
    """Whether `status` names, by pod, pod UID and session together, an agent process of `authors`."""
    author = author_of(status)
    return author is not None and all(author) and author in authors


def _own_outcome(situation: Situation) -> bool:
    """Whether the observed status is a terminal outcome this agent wrote about this task (and, with a store row,
    about the row's current run and phase)."""
    status, row = situation.status, situation.row
    if not is_terminal(status) or status.get("taskId") != situation.task_id:
        return False
    if not written_by(status, situation.authors):
        return False
    return row is None or (row.terminal and status.get("phase") == row.phase.value and status.get("run") == row.run)


def _stale_own(situation: Situation) -> bool:
    """A terminal status this agent wrote about an earlier run, seen while a later run is active."""
    status, row = situation.status, situation.row
    run = status.get("run")
    return (
        row is not None
        and written_by(status, situation.authors)
        and isinstance(run, int)
        and not isinstance(run, bool)
        and run < row.run
    )


def _refused_for_now(situation: Situation) -> bool:
    """Whether the observed status says this task's submission was refused for now (`RETRYABLE_REFUSALS`)."""
    status = situation.status
    return status.get("reason") in RETRYABLE_REFUSALS and status.get("taskId") == situation.task_id


def decide(situation: Situation) -> Decision:
    """The action for one NodeTask (module docstring)."""
    row = situation.row
    if situation.conflict:
        if situation.deleted:  # never `engine.remove` the other resource's task
            return Decision(Action.FORGET, "deleted-finished")
        return Decision(Action.REFUSE, "conflict")
    if situation.deleted:
        if row is not None and row.status is TaskStatus.RUNNING:
            return Decision(Action.REMOVE, "deleted-running")
        return Decision(Action.FORGET, "deleted-finished")

    own = _own_outcome(situation)
    foreign = is_terminal(situation.status) and not own
    if situation.cancel:
        if row is None:
            return Decision(Action.CANCELLED_BEFORE_START, "cancel-new", expire=own, overwrite=foreign)
        if not row.terminal:
            return Decision(Action.CANCEL, "cancel-running")
        return Decision(Action.ENSURE, "cancel-finished", expire=own, overwrite=foreign)

    if row is None:
        if _refused_for_now(situation) and not foreign:
            return Decision(Action.SUBMIT, "refused-retryable")
        if own:
            return Decision(Action.KEEP_OUTCOME, "own-outcome", expire=True)
        if foreign and situation.status.get("taskId") == situation.task_id:
            return Decision(Action.SUBMIT, "foreign-outcome", overwrite=True)
        return Decision(Action.SUBMIT, "new")
    nonce = situation.retry_nonce
    if row.status is TaskStatus.FAILED and nonce is not None and nonce != row.retry_nonce:
        return Decision(Action.SUBMIT, "retry-nonce", expire=own)
    if foreign and not _stale_own(situation):
        return Decision(Action.ENSURE, "forged-on-finished" if row.terminal else "forged-on-running", overwrite=True)
    return Decision(Action.ENSURE, "in-line", expire=own)

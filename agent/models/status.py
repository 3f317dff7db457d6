"""`NodeTask.status`: what the agent (its only writer) reports about a task, and the source of the CRD's status schema.

Timestamps are RFC 3339 text (`format_timestamp`), as Kubernetes stores them. `phase`, `reason` and `message` are
top-level so that printer columns can show them; `error` carries the full failure (reason, message, hint, retryable).

Conditions follow the Kubernetes convention (`metav1.Condition`): `Accepted`, `Succeeded` and `Failed` are written
False as soon as the agent takes a task and turn True on the matching terminal state, so that
`kubectl wait --for=condition=Succeeded` (or `Failed`) works; every condition carries the generation it describes.

Two more families serve tools that know nothing about NodeTasks:
- `Finished` is True once the task ended, whatever the outcome (Succeeded, Failed, Cancelled), like a Job's
  terminal conditions together: `kubectl wait --for=condition=Finished` returns for success and failure alike, and
  the reason says which.
- kstatus (sigs.k8s.io/cli-utils; Flux, `kubectl` plugins and GitOps health checks use it): `Reconciling` True while
  the task is pending or running (the resource is "in progress"), `Stalled` True when it ended without success (the
  resource "failed"), `Ready` True when it succeeded ("current"). Exactly one of the three is True at any time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from .task import CamelModel
from .types import Phase


class ConditionType(StrEnum):
    ACCEPTED = "Accepted"
    """The agent of the target pod took the task (False with a reason when it refused it, e.g. `InvalidTaskID`)."""
    SUCCEEDED = "Succeeded"
    """The task's latest run succeeded."""
    FAILED = "Failed"
    """The task's latest run failed for good (no automatic retry left)."""
    FINISHED = "Finished"
    """The task ended, successfully or not (True for Succeeded, Failed and Cancelled alike)."""
    READY = "Ready"
    """kstatus: the task succeeded."""
    RECONCILING = "Reconciling"
    """kstatus: the task is pending or running (in progress)."""
    STALLED = "Stalled"
    """kstatus: the task ended without success (Failed or Cancelled) and will not progress on its own."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CamelModel):
    """One condition of the task (metav1.Condition): `kubectl wait --for=condition=<type>` reads these."""

    type: ConditionType = Field(
        description="Accepted, Succeeded, Failed, Finished (ended either way), or kstatus' Ready, Reconciling, Stalled."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(min_length=1, max_length=1024, description="CamelCase reason for the condition's status.")
    message: str = Field(default="", max_length=32768, description="Details for humans; may be empty.")
    last_transition_time: str = Field(description="When the condition last changed status (RFC 3339).")
    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation it describes.")


class AgentIdentity(CamelModel):
    """Which agent process wrote the status: a restart or a replacement pod shows up as a new session or UID."""

    pod: str = Field(description="Name of the pod whose agent wrote the status.")
    pod_uid: str = Field(default="", alias="podUID", description="UID of that pod: a replacement pod has a new one.")
    session: str = Field(description="Random per agent process start.")


class ProgressStatus(CamelModel):
    """How far the running task is, as its handler last reported (throttled to one patch per few seconds)."""

    current: float | None = Field(default=None, description="Work done so far, in `unit`.")
    total: float | None = Field(default=None, description="All the work, in `unit`; absent when not known.")
    unit: str = Field(default="", description="What is counted: bytes, blocks, files, pages...")
    percent: float | None = Field(default=None, ge=0, le=100, description="current/total in percent, when known.")
    message: str = Field(default="", description="What the handler is doing now.")
    summary: str | None = Field(
        default="",
        description="Human form for `kubectl get`, e.g. `1.2 GiB/4.0 GiB (30.0%)`.",
    )
    """None only in a patch: it removes the "in progress" line of a finished task (`agent.operator.status`)."""


class ErrorStatus(CamelModel):
    """The last failure of the task (also set while a retry is pending)."""

    reason: str = Field(description="Stable CamelCase failure reason, e.g. ParamsInvalid, ChecksumMismatch.")
    message: str = Field(description="What failed (field, file, bucket/key, endpoint) and why.")
    hint: str = Field(default="", description="What to do about it, when the agent knows.")
    retryable: bool = Field(default=False, description="Whether running the task again may succeed.")


class NodeTaskStatus(CamelModel):
    phase: Phase | None = Field(default=None, description="Pending, Running, Succeeded, Failed or Cancelled.")
    run: int | None = Field(default=None, ge=1, description="Attempt number, from 1; a retry starts run+1.")
    resumes: int | None = Field(default=None, ge=0, description="How often a crash or restart resumed the task.")
    task_id: str | None = Field(default=None, description="The idempotency key the agent used (canonical UUID).")
    agent: AgentIdentity | None = None
    submitted_at: str | None = Field(default=None, description="When the agent accepted the task (RFC 3339).")
    started_at: str | None = Field(default=None, description="When the current run started (RFC 3339).")
    completed_at: str | None = Field(default=None, description="When the task ended (RFC 3339).")
    heartbeat_at: str | None = Field(default=None, description="Renewed while Running: a stale value means no agent.")
    progress: ProgressStatus | None = None
    result: dict[str, Any] | None = Field(default=None, description="Small JSON result of a successful run.")
    error: ErrorStatus | None = None
    reason: str | None = Field(default=None, description="Stable reason of the current phase.")
    message: str | None = Field(default=None, description="One line for humans.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation of the spec this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Accepted, Succeeded, Failed, Finished and kstatus conditions, by type."
    )

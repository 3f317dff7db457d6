"""The NodeTask resource's spec, as the agent reads it (from the API server or a local YAML manifest).

`type` and `taskId` are plain strings here on purpose: the CRD constrains them (enum, UUID pattern), but an object
created under an older or newer CRD can still reach the agent, which must then fail it with `UnsupportedType` or
`InvalidTaskID` rather than crash. The CRD renderer adds the enum and the pattern.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .task import CamelModel, RetryPolicy

API_GROUP = "sei.io"
API_VERSION = "v1alpha1"
KIND = "NodeTask"
PLURAL = "nodetasks"
TARGET_POD_LABEL = "sei.io/target-pod"


class NodeTaskSpec(CamelModel):
    target_pod: str = Field(min_length=1, description="Name of the pod whose agent must run the task.")
    target_pod_uid: str | None = Field(
        default=None,
        alias="targetPodUID",  # docs/design.md section 3 spells it with UID (Kubernetes style), not the generated Uid
        description="Pin the task to one incarnation of the pod; other incarnations ignore it.",
    )
    type: str = Field(description="The task type.")
    params: dict[str, Any] = Field(default_factory=dict, description="Type-specific parameters.")
    task_id: str | None = Field(
        default=None, description="Idempotency key (a UUID). Defaults to the resource's metadata.uid."
    )
    timeout_seconds: int | None = Field(default=None, ge=1, description="Limit on each run, from its start.")
    retry: RetryPolicy | None = Field(default=None, description="Automatic retries of a failed run.")
    cancel: bool = Field(default=False, description="Set to true to cancel the task.")
    retry_nonce: str | None = Field(default=None, description="Change it to run a Failed task again (run+1).")
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Like a Job's: the agent deletes this NodeTask this many seconds after it finished (Succeeded, "
        "Failed or Cancelled, counted from status.completedAt). Unset: kept until deleted.",
    )


class ObjectMeta(BaseModel):
    """The parts of metadata the agent reads; everything else a manifest may carry is kept but not interpreted."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class NodeTaskManifest(BaseModel):
    """A whole NodeTask object as written in YAML (`kubectl apply` shape)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: str = Field(alias="apiVersion", pattern=rf"^{API_GROUP}/{API_VERSION}$")
    kind: str = Field(pattern=rf"^{KIND}$")
    metadata: ObjectMeta
    spec: NodeTaskSpec
    status: dict[str, Any] | None = None

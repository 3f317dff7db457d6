"""Small builders shared by the operator tests: NodeTask manifests as users write them."""

from __future__ import annotations

from typing import Any

from agent.models.resource import API_GROUP, API_VERSION, KIND, TARGET_POD_LABEL


def nodetask(
    name: str, target_pod: str, task_type: str, params: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """A NodeTask manifest; extra keyword arguments are spec fields by their wire names (e.g. `taskId=...`)."""
    body: dict[str, Any] = {"targetPod": target_pod, "type": task_type, **spec}
    if params is not None:
        body["params"] = params
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "labels": {TARGET_POD_LABEL: target_pod}},
        "spec": body,
    }

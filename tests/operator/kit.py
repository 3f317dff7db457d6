"""Small builders shared by the operator tests: NodeTask manifests as users write them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.models.resource import API_GROUP, API_VERSION, KIND, TARGET_POD_LABEL
from tests.fixtures.kube import KubeNamespace
from tests.fixtures.waiting import poll_until


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


def status_of(ns: KubeNamespace, name: str) -> dict[str, Any]:
    status: dict[str, Any] = ns.get("nodetask", name).get("status") or {}
    return status


def wait_status(
    ns: KubeNamespace, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30, what: str = ""
) -> dict[str, Any]:
    """Poll the NodeTask's status until `predicate(status)` holds; returns that status."""
    found: dict[str, Any] = poll_until(
        lambda: (lambda s: s if predicate(s) else None)(status_of(ns, name)),
        what=what or f"status of {name}",
        timeout=timeout,
    )
    return found


def wait_phase(ns: KubeNamespace, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    return wait_status(ns, name, lambda s: s.get("phase") == phase, timeout, f"{name} to be {phase}")


def kubectl_wait(ns: KubeNamespace, name: str, condition: str, timeout: int = 60) -> None:
    """`kubectl wait --for=condition=<condition>`, as a controller or a person would."""
    ns.kubectl(
        "wait", f"--for=condition={condition}", f"nodetask/{name}", f"--timeout={timeout}s", timeout=timeout + 30
    )


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def event_reasons(ns: KubeNamespace, name: str) -> list[str]:
    """Reasons of the Events about NodeTask `name`, oldest first."""
    events = ns.cluster.get_json(
        "events", f"--field-selector=involvedObject.kind=NodeTask,involvedObject.name={name}", namespace=ns.name
    )["items"]
    events.sort(key=lambda event: (event.get("firstTimestamp") or "", event["metadata"]["name"]))
    return [event["reason"] for event in events]


def table(output: str) -> list[dict[str, str]]:
    """Rows of `kubectl get` output as {header: cell}, cut at the header's column positions (cells may be blank)."""
    header, *lines = output.splitlines()
    names = header.split()
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines:
        cells = [line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows

"""Events an agent posts name its pod (F6), on the real API server with the shipped admission policy (chart and
deploy/), exercised by the agent's own identity: a ServiceAccount token bound to a node pod.

Which NodeTask an Event is about cannot be checked by the policy (CEL has no lookups), so an Event must say who posted
it: `reportingInstance` and `related` name the posting pod, and an Event about a Pod is about its own. One pod's agent
used to be able to post Events about another pod's NodeTask that looked like that pod's agent's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from agent.models import ResourceRef
from agent.operator.kubeapi import KubeApi, load_connection
from agent.operator.writer import EventRecorder
from agent.server import AgentMetrics

from .conftest import POLICY_DENIED, Installation

pytestmark = [pytest.mark.kube, pytest.mark.slow]

OTHER_UID = "00000000-0000-4000-8000-00000000bad0"


def event(installation: Installation, name: str, pod: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An Event about NodeTask `b-task` as the agent of `pod` posts it, with `changes` applied (None drops a key)."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": installation.namespace},
        "involvedObject": {
            "apiVersion": "sei.io/v1alpha1",
            "kind": "NodeTask",
            "name": "b-task",
            "namespace": installation.namespace,
        },
        "reason": "Succeeded",
        "message": "run 1 succeeded",
        "type": "Normal",
        "source": {"component": "nodetask-agent", "host": pod["metadata"]["name"]},
        "reportingComponent": "sei.io/nodetask-agent",
        "reportingInstance": pod["metadata"]["name"],
        "related": {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


def post_as(installation: Installation, pod_name: str, body: dict[str, Any]) -> tuple[bool, str]:
    _, kubeconfig = installation.agent(pod_name)
    result = installation.cluster.kubectl(
        "create", "-f", "-", namespace=installation.namespace, kubeconfig=kubeconfig, input=json.dumps(body),
        check=False,
    )  # fmt: skip
    return result.returncode == 0, result.stderr


Change = Callable[[dict[str, Any]], dict[str, Any]]

REFUSED: dict[str, tuple[Change, str]] = {
    "reporting-instance-of-another-pod": (
        lambda b: {"reportingInstance": "node-b-0"},
        "must have reportingInstance node-a-0",
    ),
    "no-reporting-instance": (lambda b: {"reportingInstance": None}, "must have reportingInstance node-a-0"),
    "related-another-pod": (
        lambda b: {"related": {**b["related"], "name": "node-b-0", "uid": OTHER_UID}},
        "must name that Pod",
    ),
    "related-another-uid": (lambda b: {"related": {**b["related"], "uid": OTHER_UID}}, "must name that Pod"),
    "no-related": (lambda b: {"related": None}, "must name that Pod"),
    "about-another-pod": (
        lambda b: {"involvedObject": {**b["involvedObject"], "apiVersion": "v1", "kind": "Pod", "name": "node-b-0"}},
        "may post Events about no Pod but its own",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_an_agents_event_that_does_not_name_its_own_pod_is_refused(installation: Installation, case: str) -> None:
    pod, _ = installation.agent("node-a-0")
    change, refusal = REFUSED[case]
    base = event(installation, f"refused-{case}", pod)

    posted, stderr = post_as(installation, "node-a-0", event(installation, f"refused-{case}", pod, **change(base)))

    assert not posted
    assert POLICY_DENIED in stderr and refusal in stderr, stderr


@pytest.mark.parametrize("about", ["nodetask", "own-pod"])
def test_an_agents_event_naming_its_own_pod_is_accepted(installation: Installation, about: str) -> None:
    pod, _ = installation.agent("node-a-0")
    changes = {}
    if about == "own-pod":
        own = {"apiVersion": "v1", "kind": "Pod", "name": "node-a-0", "namespace": installation.namespace}
        changes["involvedObject"] = own

    posted, stderr = post_as(installation, "node-a-0", event(installation, f"accepted-{about}", pod, **changes))

    assert posted, stderr


async def test_every_event_the_agent_posts_names_its_pod_and_passes_the_policy(installation: Installation) -> None:
    pod, kubeconfig = installation.agent("node-a-0")
    uid = pod["metadata"]["uid"]
    task = installation.nodetask("a-posted", "node-a-0")
    metrics = AgentMetrics()
    api = await KubeApi(load_connection(str(kubeconfig))).open()
    recorder = EventRecorder(api, metrics, pod="node-a-0", pod_uid=uid)
    worker = asyncio.create_task(recorder.run())
    try:
        task_ref = ResourceRef(namespace=installation.namespace, name="a-posted", uid=task["metadata"]["uid"])
        recorder.record(task_ref, "Started", "run 1 started")
        pod_ref = ResourceRef(namespace=installation.namespace, name="node-a-0", uid=uid)
        recorder.record(pod_ref, "Resumed", "resumed 1 NodeTask", kind="Pod", api_version="v1")
        assert await recorder.flush(within=30)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await api.close()

    failures = [
        sample
        for family in metrics.registry.collect()
        if family.name == "nodetask_event_post_errors"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.value
    ]
    assert failures == []
    events = installation.cluster.get_json("events", namespace=installation.namespace)["items"]
    posted = {e["reason"]: e for e in events if e.get("reportingComponent") == "sei.io/nodetask-agent"}
    assert set(posted) >= {"Started", "Resumed"}
    for reason in ("Started", "Resumed"):
        assert posted[reason]["reportingInstance"] == "node-a-0"
        assert posted[reason]["related"]["kind"] == "Pod"
        assert (posted[reason]["related"]["name"], posted[reason]["related"]["uid"]) == ("node-a-0", uid)

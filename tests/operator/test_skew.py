"""CRD/agent version skew: values the committed CRD refuses can still reach an agent, which must fail them cleanly.

This happens when the CRD is upgraded before the agent (a newer CRD knows a task type this agent does not) or when an
older CRD without the task ID pattern is still installed. The test applies such a deliberately skewed copy of the
CRD, and restores the committed one afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from agent.operator.crd import render_crd
from tests.fixtures.kube import KubeCluster, KubectlError, KubeNamespace, install_crd
from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory
from tests.operator.kit import conditions, event_reasons, kubectl_wait, nodetask, status_of

pytestmark = pytest.mark.kube

FUTURE_TYPE = "snapshot-verify"


def skewed_crd() -> dict:
    crd = copy.deepcopy(render_crd())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    spec["type"]["enum"].append(FUTURE_TYPE)  # a newer CRD with a type this agent does not know
    del spec["taskId"]["pattern"]  # an older CRD without the UUID pattern
    return crd


def server_accepts(cluster: KubeCluster, namespace: str, manifest: dict) -> bool:
    try:
        cluster.apply(manifest | {"metadata": {"name": "probe"}}, namespace=namespace, server_side=False)
    except KubectlError:
        return False
    cluster.kubectl("delete", "nodetask", "probe", namespace=namespace)
    return True


@pytest.fixture
def skew(agents: AgentFactory) -> Iterator[KubeNamespace]:
    cluster, ns = agents.ns.cluster, agents.ns
    probe = nodetask("probe", "nobody", FUTURE_TYPE)
    install_crd(cluster, skewed_crd())
    poll_until(lambda: server_accepts(cluster, ns.name, probe), what="the skewed CRD to be served", timeout=30)
    try:
        yield ns
    finally:
        install_crd(cluster)
        poll_until(
            lambda: not server_accepts(cluster, ns.name, probe), what="the committed CRD to be served again", timeout=30
        )


@pytest.mark.parametrize(
    ("spec", "reason", "fragment"),
    [
        ({"type": FUTURE_TYPE}, "UnsupportedType", "unknown task type: 'snapshot-verify'"),
        ({"type": "mark-ready", "taskId": "task-7"}, "InvalidTaskID", "task ID must be a valid UUID: 'task-7'"),
    ],
    ids=["unknown-type", "invalid-task-id"],
)
def test_skewed_values_fail_with_a_stable_reason_and_are_not_accepted(
    agents: AgentFactory, skew: KubeNamespace, spec: dict, reason: str, fragment: str
) -> None:
    pod = agents.pod("node-0")
    agents.thread(pod)
    task_type = spec.pop("type")
    skew.apply(nodetask("skewed", "node-0", task_type, **spec))

    kubectl_wait(skew, "skewed", "Failed")

    status = status_of(skew, "skewed")
    assert (status["phase"], status["reason"], status["error"]["reason"]) == ("Failed", reason, reason)
    assert fragment in status["error"]["message"]
    assert conditions(status)["Accepted"] == ("False", reason)
    assert "run" not in status  # nothing ran
    assert pod.http("/v0/tasks")[1]["count"] == 0  # nothing stored
    assert poll_until(lambda: event_reasons(skew, "skewed") == ["Failed"], what="exactly one Failed Event", timeout=15)

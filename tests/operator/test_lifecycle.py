"""Kubernetes lifecycle habits on the real API server: a condition that is True however a task ended (so one
`kubectl wait` and kstatus-based GitOps health checks work), and Job-style `spec.ttlSecondsAfterFinished`."""

from __future__ import annotations

import pytest

from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory, AgentPod, ThreadAgent
from tests.operator.kit import conditions, kubectl_wait, nodetask, status_of

pytestmark = pytest.mark.kube


@pytest.fixture
def node0(agents: AgentFactory) -> tuple[AgentPod, ThreadAgent]:
    pod = agents.pod("node-0")
    return pod, agents.thread(pod)


def gone(pod: AgentPod, name: str) -> bool:
    found = pod.ns.kubectl("get", "nodetask", name, check=False)
    return found.returncode != 0 and "NotFound" in found.stderr


def test_finished_is_true_for_success_and_failure_and_kstatus_says_which(
    node0: tuple[AgentPod, ThreadAgent],
) -> None:
    pod, _ = node0
    pod.ns.apply(nodetask("good", "node-0", "mark-ready"), nodetask("bad", "node-0", "mark-ready", {"bogus": 1}))

    for name in ("good", "bad"):
        kubectl_wait(pod.ns, name, "Finished")  # one command, whatever the outcome

    good, bad = conditions(status_of(pod.ns, "good")), conditions(status_of(pod.ns, "bad"))
    assert good["Finished"] == ("True", "Succeeded") and bad["Finished"] == ("True", "ParamsInvalid")
    assert (good["Ready"][0], good["Stalled"][0], good["Reconciling"][0]) == ("True", "False", "False")
    assert (bad["Ready"][0], bad["Stalled"][0], bad["Reconciling"][0]) == ("False", "True", "False")


def test_a_finished_task_with_a_ttl_is_deleted_by_its_agent_and_one_without_stays(
    node0: tuple[AgentPod, ThreadAgent],
) -> None:
    pod, _ = node0
    pod.ns.apply(
        nodetask("short-lived", "node-0", "mark-ready", ttlSecondsAfterFinished=2),
        nodetask("failed-short-lived", "node-0", "mark-ready", {"bogus": 1}, ttlSecondsAfterFinished=0),
        nodetask("kept", "node-0", "mark-not-ready"),
    )
    task_id = pod.ns.get("nodetask", "short-lived")["metadata"]["uid"]
    kubectl_wait(pod.ns, "kept", "Finished")

    poll_until(
        lambda: gone(pod, "failed-short-lived"), what="the failed task with ttlSecondsAfterFinished=0 to go", timeout=30
    )
    poll_until(
        lambda: gone(pod, "short-lived"), what="the succeeded task with ttlSecondsAfterFinished=2 to go", timeout=30
    )
    assert status_of(pod.ns, "kept")["phase"] == "Succeeded"  # no TTL: kept until someone deletes it
    status, row = pod.http(f"/v0/tasks/{task_id}")
    assert status == 200 and row["phase"] == "Succeeded"  # the store keeps the history until retention prunes it

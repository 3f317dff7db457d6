"""The API server stopped for 30 s and restarted (same etcd): every status converges and no task runs twice."""

from __future__ import annotations

import time

import pytest

from agent.models import format_timestamp, utcnow
from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory
from tests.operator.handlers import GATE_TYPE, gate_starts
from tests.operator.kit import event_reasons, kubectl_wait, nodetask, status_of, wait_phase, wait_status

pytestmark = [pytest.mark.kube, pytest.mark.slow]

OUTAGE_SECONDS = 30


def gate_task(name: str) -> dict[str, object]:
    return nodetask(name, "node-0", GATE_TYPE.value, {"label": name})


def test_api_server_outage_of_30s_every_status_converges_and_nothing_runs_twice(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    agent = agents.process(pod)
    cluster, ns = pod.ns.cluster, pod.ns
    ns.apply(gate_task("finishes"), gate_task("fails"), gate_task("spans"), nodetask("ready", "node-0", "mark-ready"))
    kubectl_wait(ns, "ready", "Succeeded")
    ids = {name: wait_phase(ns, name, "Running")["taskId"] for name in ("finishes", "fails", "spans")}

    cluster.stop_apiserver()
    try:
        pod.release("finishes")
        pod.fail("fails")
        poll_until(
            lambda: (
                [pod.http(f"/v0/tasks/{ids[name]}")[1]["phase"] for name in ("finishes", "fails")]
                == ["Succeeded", "Failed"]
            ),
            what="the outcomes to be stored during the outage",
            timeout=15,
        )
        time.sleep(OUTAGE_SECONDS)
        assert agent.process is not None and agent.process.poll() is None, agent.tail()
        assert pod.http("/livez")[0] == 200 and pod.http("/healthz")[0] == 200  # the agent serves its pod throughout
    finally:
        cluster.start_apiserver()
    back = format_timestamp(utcnow())

    kubectl_wait(ns, "finishes", "Succeeded")
    kubectl_wait(ns, "fails", "Failed")
    assert status_of(ns, "fails")["reason"] == "GateFailed"
    wait_status(ns, "spans", lambda s: s.get("phase") == "Running" and s["heartbeatAt"] > back, what="a heartbeat")

    ns.apply(gate_task("after"))  # the watch is back: new work is picked up
    pod.release("after")
    pod.release("spans")
    kubectl_wait(ns, "after", "Succeeded")
    kubectl_wait(ns, "spans", "Succeeded")

    for name in ("finishes", "fails", "spans", "after"):
        assert len(gate_starts(pod.home, name)) == 1, f"{name} ran more than once"
        assert status_of(ns, name)["resumes"] == 0
    # Events queued during the outage are posted once the server is back.
    assert poll_until(
        lambda: "Succeeded" in event_reasons(ns, "finishes"), what="the Succeeded Event of 'finishes'", timeout=30
    )

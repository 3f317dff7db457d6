"""Agent process death and restart (real subprocesses): every task ends in a truthful state, never stuck Running.

- kill -9 mid-task: the restarted agent resumes the task (resumes+1, Event `Resumed`) and finishes it.
- SIGTERM: the handler is cancelled but the task is not: the next start resumes it.
- a task that finished while the agent could not reach the API, then kill -9: the next start writes the outcome from
  the store and does not run the task again.
- a NodeTask deleted while its agent was down: the next start stops the task and forgets it.
- a restart with more than `RESUMED_EVENTS_EACH` unfinished tasks: every status says it resumed, the first ten get a
  Resumed Event each, and one summary Event goes on the Pod.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from agent.operator.agent import RESUMED_EVENTS_EACH
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.kube import redirect_kubeconfig
from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory, ProcessAgent
from tests.operator.handlers import GATE_TYPE, gate_starts
from tests.operator.kit import event_reasons, kubectl_wait, nodetask, status_of, wait_phase, wait_status

pytestmark = [pytest.mark.kube, pytest.mark.slow]


def gate_task(name: str, label: str) -> dict[str, object]:
    return nodetask(name, "node-0", GATE_TYPE.value, {"label": label})


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_restart_mid_task_resumes_it_and_converges(agents: AgentFactory, signum: int) -> None:
    pod = agents.pod("node-0")
    first = agents.process(pod)
    pod.ns.apply(gate_task("long", "long"), nodetask("ready", "node-0", "mark-ready"))
    kubectl_wait(pod.ns, "ready", "Succeeded")
    running = wait_phase(pod.ns, "long", "Running")

    code = first.kill(signum)
    assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 0), first.tail()
    assert status_of(pod.ns, "long")["phase"] == "Running"  # nobody could say otherwise while the agent is down

    agents.process(pod)
    resumed = wait_status(pod.ns, "long", lambda s: s.get("resumes") == 1, what="the resumption")
    assert resumed["phase"] == "Running" and resumed["run"] == 1 and resumed["reason"] == "Resumed"
    assert resumed["agent"]["session"] != running["agent"]["session"]
    assert pod.http("/healthz")[0] == 200  # readiness restored from the store, without a new mark-ready

    pod.release("long")
    kubectl_wait(pod.ns, "long", "Succeeded")
    starts = gate_starts(pod.home, "long")
    assert [line.split()[3:5] for line in starts] == [["run=1", "resumes=0"], ["run=1", "resumes=1"]]
    assert poll_until(lambda: "Resumed" in event_reasons(pod.ns, "long"), what="a Resumed Event", timeout=15)
    assert status_of(pod.ns, "ready")["run"] == 1 and len(gate_starts(pod.home)) == 2


def test_outcome_reached_while_api_unreachable_is_written_after_restart_without_rerun(
    agents: AgentFactory, fault_proxy_factory: type[FaultProxy]
) -> None:
    pod = agents.pod("node-0")
    proxy = fault_proxy_factory("127.0.0.1", pod.ns.cluster.api_port).start()
    proxied = redirect_kubeconfig(pod.kubeconfig, pod.home.parent / "proxied.kubeconfig", f"https://{proxy.address}")
    agent = agents.process(pod, kubeconfig=proxied)
    pod.ns.apply(gate_task("lonely", "lonely"))
    task_id = wait_phase(pod.ns, "lonely", "Running")["taskId"]

    proxy.refuse = True
    proxy.drop_connections()
    pod.release("lonely")
    poll_until(
        lambda: pod.http(f"/v0/tasks/{task_id}")[1]["phase"] == "Succeeded",
        what="the store to record success",
        timeout=15,
    )
    agent.kill(signal.SIGKILL)
    assert status_of(pod.ns, "lonely")["phase"] == "Running"

    proxy.refuse = False
    agents.process(pod, kubeconfig=proxied)
    kubectl_wait(pod.ns, "lonely", "Succeeded")
    assert status_of(pod.ns, "lonely")["resumes"] == 0
    assert len(gate_starts(pod.home, "lonely")) == 1


def test_nodetask_deleted_while_agent_down_is_stopped_and_forgotten_on_restart(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    agent = agents.process(pod)
    pod.ns.apply(gate_task("orphan", "orphan"), gate_task("kept", "kept"))
    orphan_id = wait_phase(pod.ns, "orphan", "Running")["taskId"]
    wait_phase(pod.ns, "kept", "Running")
    agent.kill(signal.SIGKILL)

    pod.ns.kubectl("delete", "nodetask", "orphan")
    restarted: ProcessAgent = agents.process(pod)

    poll_until(
        lambda: pod.http(f"/v0/tasks/{orphan_id}")[0] == 404, what="the orphaned task to be forgotten", timeout=30
    )
    wait_status(pod.ns, "kept", lambda s: s.get("resumes") == 1, what="the kept task to resume")
    assert pod.http("/v0/status")[1]["running"] == 1
    messages = poll_until(
        lambda: [
            event["message"]
            for event in pod.ns.cluster.get_json("events", namespace=pod.ns.name)["items"]
            if event["involvedObject"]["name"] == "orphan" and event["reason"] == "Cancelled"
        ],
        what="a Cancelled Event for the orphan",
        timeout=15,
    )
    assert any("no longer exists" in message for message in messages), restarted.tail()
    pod.release("kept")
    kubectl_wait(pod.ns, "kept", "Succeeded")


def test_a_restart_reports_each_resume_in_status_events_for_the_first_ten_and_one_summary_on_the_pod(
    agents: AgentFactory,
) -> None:
    pod = agents.pod("node-0")
    first = agents.process(pod)
    names = [f"many-{n:02d}" for n in range(RESUMED_EVENTS_EACH + 2)]
    pod.ns.apply(*(gate_task(name, name) for name in names))
    for name in names:
        wait_phase(pod.ns, name, "Running")
    first.kill(signal.SIGKILL)

    agents.process(pod)
    for name in names:
        resumed = wait_status(pod.ns, name, lambda s: s.get("resumes") == 1, what=f"{name} to resume")
        assert resumed["reason"] == "Resumed" and resumed["phase"] == "Running"

    def resumed_events() -> list[dict[str, Any]]:
        items = pod.ns.cluster.get_json("events", namespace=pod.ns.name)["items"]
        return [event for event in items if event["reason"] == "Resumed"]

    def about(kind: str) -> list[dict[str, Any]]:
        return [event for event in resumed_events() if event["involvedObject"]["kind"] == kind]

    (summary,) = poll_until(lambda: about("Pod"), what="the summary Event on the Pod", timeout=15)
    assert summary["involvedObject"]["name"] == "node-0" and summary["involvedObject"]["uid"] == pod.uid
    assert f"resumed {len(names)} NodeTask(s)" in summary["message"] and "many-00" in summary["message"]
    poll_until(lambda: len(about("NodeTask")) >= RESUMED_EVENTS_EACH, what="the per-task Resumed Events", timeout=15)
    per_task = about("NodeTask")
    assert len(per_task) == RESUMED_EVENTS_EACH and len({e["involvedObject"]["name"] for e in per_task}) == 10
    assert len(about("Pod")) == 1

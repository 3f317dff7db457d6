"""Hostile NodeTasks on the real kube-apiserver tier: one malformed object must never stop an agent.

- Params nested ~1,000 levels deep (accepted by the API server) used to kill kopf's watch with `RecursionError` at
  every start of the agent; with `NODETASK_SELECTOR=none` a deep task addressed to *another* pod did the same.
  Now the task fails `ParamsInvalid` naming the bound, the agent keeps serving other tasks and `/v0/tasks`, and a
  restart changes nothing.
- A second NodeTask reusing a finished task's `spec.taskId` for other work is refused `TaskIdConflict` instead of
  being reported `Succeeded` with the first task's result.
- A terminal status forged with `kubectl patch --subresource=status`, naming the agent's pod with a bogus pod UID or
  session (B5, F5): on a running task it is written over and the task finishes its run (it used to be taken for the
  agent's own outcome, and `ttlSecondsAfterFinished` deleted the NodeTask and its store row at once); on a task the
  agent has not run yet it does not stop the task.
"""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

import pytest

from agent.models.limits import allow_deep_json
from agent.models.resource import API_GROUP, API_VERSION, KIND, TARGET_POD_LABEL
from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory, AgentPod
from tests.operator.handlers import GATE_TYPE
from tests.operator.kit import kubectl_wait, nodetask, status_of, wait_phase

pytestmark = [pytest.mark.kube, pytest.mark.slow]

DEPTH = 1000


def deep_nodetask_json(name: str, target_pod: str, depth: int = DEPTH) -> str:
    """The manifest as JSON text, built by hand (the test process's own encoder would recurse once per level)."""
    deep = '{"a":' * depth + "1" + "}" * depth
    return (
        f'{{"apiVersion": "{API_GROUP}/{API_VERSION}", "kind": "{KIND}", '
        f'"metadata": {{"name": "{name}", "labels": {{"{TARGET_POD_LABEL}": "{target_pod}"}}}}, '
        f'"spec": {{"targetPod": "{target_pod}", "type": "mark-ready", "params": {{"deep": {deep}}}}}}}'
    )


def assert_still_serving(pod: AgentPod, name: str) -> None:
    pod.ns.apply(nodetask(name, pod.name, "mark-ready"))
    kubectl_wait(pod.ns, name, "Succeeded")
    code, body = pod.http("/v0/tasks")
    assert code == 200 and body["count"] >= 1


@pytest.mark.parametrize("selector", ["auto", "none"])
def test_a_deeply_nested_nodetask_cannot_take_the_agent_down(agents: AgentFactory, selector: str) -> None:
    allow_deep_json()  # the test reads the deep object back too
    pod = agents.pod("node-0")
    pod.extra_env["NODETASK_SELECTOR"] = selector
    agent = agents.process(pod)
    # With selector=none every agent of the namespace sees every task: the deep one is addressed to another pod.
    target = pod.name if selector == "auto" else "node-1"
    pod.ns.kubectl("create", "-f", "-", input=deep_nodetask_json("deep", target))

    if selector == "auto":
        failed = wait_phase(pod.ns, "deep", "Failed")
        assert failed["reason"] == "ParamsInvalid"
        assert "nested more than 32 levels" in failed["error"]["message"]
    assert_still_serving(pod, "after-deep")
    assert agent.process is not None and agent.process.poll() is None, agent.tail()

    # A restart (the old crash loop) lists the deep object again: still serving, nothing re-run.
    assert agent.kill(signal.SIGTERM) == 0, agent.tail()
    restarted = agents.process(pod)
    assert_still_serving(pod, "after-restart")
    assert restarted.process is not None and restarted.process.poll() is None, restarted.tail()
    if selector == "auto":
        assert status_of(pod.ns, "deep")["run"] == 1
    else:
        assert not status_of(pod.ns, "deep")  # not this pod's task: no status, no Event
    log = restarted.tail(400) + agent.tail(400)
    assert "RecursionError" not in log and "maximum recursion depth" not in log


def test_a_reused_task_id_for_another_type_is_a_conflict_not_a_success(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    agents.thread(pod)
    task_id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    pod.ns.apply(nodetask("first", pod.name, "mark-ready", taskId=task_id))
    kubectl_wait(pod.ns, "first", "Succeeded")
    pod.ns.apply(nodetask("second", pod.name, "mark-not-ready", {"bogus": 1}, taskId=task_id))

    second = wait_phase(pod.ns, "second", "Failed")
    assert second["reason"] == "TaskIdConflict"
    assert "stored type 'mark-ready', submitted 'mark-not-ready'" in second["error"]["message"]
    assert not second.get("result")
    assert status_of(pod.ns, "first")["phase"] == "Succeeded"
    assert pod.http("/healthz")[0] == 200  # the conflicting hold never ran

    # Deleting the conflicting resource must not touch the stored task.
    pod.ns.kubectl("delete", "nodetask", "second", "--wait=true")
    code, body = pod.http(f"/v0/tasks/{task_id}")
    assert code == 200 and body["phase"] == "Succeeded" and body["type"] == "mark-ready"


BOGUS_UID = "00000000-0000-4000-8000-00000000bad0"


def forge_terminal_status(pod: AgentPod, name: str, task_id: str, *, pod_uid: str, session: str) -> None:
    """What an attacker with `patch nodetasks/status` does: a finished status that names the agent's pod."""
    forged: dict[str, Any] = {
        "status": {
            "phase": "Succeeded",
            "reason": "Succeeded",
            "taskId": task_id,
            "run": 1,
            "completedAt": "2020-01-01T00:00:00Z",
            "agent": {"pod": pod.name, "podUID": pod_uid, "session": session},
        }
    }
    pod.ns.kubectl("patch", "nodetask", name, "--subresource=status", "--type=merge", "-p", json.dumps(forged))


def gone(pod: AgentPod, name: str) -> bool:
    return pod.ns.kubectl("get", "nodetask", name, "--ignore-not-found", "-o", "name").stdout.strip() == ""


@pytest.mark.parametrize("forged_by", ["bogus-uid", "bogus-session"])
def test_a_forged_terminal_status_on_a_running_task_is_written_over_never_ttl_deleted(
    agents: AgentFactory, forged_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.operator.agent")
    pod = agents.pod("node-0")
    agents.thread(pod)
    pod.ns.apply(nodetask("busy", pod.name, GATE_TYPE.value, {"label": "busy"}, ttlSecondsAfterFinished=0))
    running = wait_phase(pod.ns, "busy", "Running")
    session = running["agent"]["session"]

    uid, forged_session = (BOGUS_UID, session) if forged_by == "bogus-uid" else (pod.uid, "forged")
    forge_terminal_status(pod, "busy", running["taskId"], pod_uid=uid, session=forged_session)

    restored = wait_phase(pod.ns, "busy", "Running", timeout=20)  # written over from the store, not deleted
    assert restored["agent"] == {"pod": pod.name, "podUID": pod.uid, "session": session}
    assert restored.get("completedAt") is None
    assert "has a terminal status (Succeeded" in caplog.text and "writing over it from the store" in caplog.text
    code, row = pod.http(f"/v0/tasks/{running['taskId']}")
    assert code == 200 and row["phase"] == "Running"

    pod.release("busy")  # its own outcome, and only that, times the TTL deletion
    poll_until(lambda: gone(pod, "busy"), timeout=30, what="the NodeTask to be deleted after its real outcome")
    assert (pod.home / "gate.log").read_text().count("start busy") == 1
    code, row = pod.http(f"/v0/tasks/{running['taskId']}")
    assert code == 200 and row["phase"] == "Succeeded"


def test_a_forged_terminal_status_naming_the_pod_does_not_stop_a_task_from_running(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    agent = agents.thread(pod)
    pod.ns.apply(nodetask("first", pod.name, "mark-ready"))
    kubectl_wait(pod.ns, "first", "Succeeded")  # this agent has run (and recorded its session)
    agent.stop()

    task_id = "5d7c1a2b-3e4f-4a5b-8c6d-7e8f9a0b1c2e"
    pod.ns.apply(nodetask("forged", pod.name, GATE_TYPE.value, {"label": "forged"}, taskId=task_id))
    forge_terminal_status(pod, "forged", task_id, pod_uid=pod.uid, session="forged")
    agents.thread(pod)

    running = wait_phase(pod.ns, "forged", "Running")
    assert running["agent"]["session"] != "forged"
    pod.release("forged")
    kubectl_wait(pod.ns, "forged", "Succeeded")
    assert "start forged" in (pod.home / "gate.log").read_text()

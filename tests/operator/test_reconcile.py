"""The agent on the real API server, driven with kubectl: what users see for each kind of task and request.

Each test runs one agent (in a thread of the test process) for pod `node-0`, authenticated with a ServiceAccount token
bound to that Pod object and only the test Role's rights.
"""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.models import normalize_task_id
from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory, AgentPod, ThreadAgent
from tests.operator.handlers import GATE_TYPE, gate_starts
from tests.operator.kit import (
    conditions,
    event_reasons,
    kubectl_wait,
    nodetask,
    status_of,
    table,
    wait_phase,
    wait_status,
)

pytestmark = pytest.mark.kube


@pytest.fixture
def node0(agents: AgentFactory) -> tuple[AgentPod, ThreadAgent]:
    pod = agents.pod("node-0")
    return pod, agents.thread(pod)


def gate_task(name: str, label: str, **spec: object) -> dict[str, object]:
    return nodetask(name, "node-0", GATE_TYPE.value, {"label": label}, **spec)


def test_mark_ready_succeeds_opens_healthz_and_reports_everything(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    ns = pod.ns
    assert pod.http("/healthz")[0] == 503

    ns.apply(nodetask("ready", "node-0", "mark-ready"))
    kubectl_wait(ns, "ready", "Succeeded")

    stored = ns.get("nodetask", "ready")
    status = stored["status"]
    assert status["phase"] == "Succeeded" and status["run"] == 1 and status["resumes"] == 0
    assert status["taskId"] == stored["metadata"]["uid"]  # no spec.taskId: the resource's UID is the key
    assert status["result"] == {"ready": True}
    assert status["agent"]["pod"] == "node-0" and status["agent"]["podUID"] == pod.uid
    assert status["observedGeneration"] == stored["metadata"]["generation"]
    assert conditions(status) == {
        "Accepted": ("True", "Accepted"),
        "Succeeded": ("True", "Succeeded"),
        "Failed": ("False", "Succeeded"),
        "Finished": ("True", "Succeeded"),
        "Ready": ("True", "Succeeded"),
        "Reconciling": ("False", "Succeeded"),
        "Stalled": ("False", "Succeeded"),
    }
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert pod.http("/healthz") == (200, {"status": "ready"})
    assert pod.http(f"/v0/tasks/{status['taskId']}")[1]["phase"] == "Succeeded"
    assert poll_until(
        lambda: event_reasons(ns, "ready") == ["Accepted", "Started", "Succeeded"], what="the Events", timeout=15
    )


def test_kubectl_get_shows_progress_while_running_and_outcome_in_wide_columns(
    node0: tuple[AgentPod, ThreadAgent],
) -> None:
    pod, _ = node0
    ns = pod.ns
    ns.apply(gate_task("sync", "sync"))

    running = wait_status(ns, "sync", lambda s: s.get("phase") == "Running" and "progress" in s, what="progress")
    [row] = table(ns.kubectl("get", "nodetasks").stdout)
    assert {k: row[k] for k in ("NAME", "POD", "TYPE", "PHASE", "RUN")} == {
        "NAME": "sync",
        "POD": "node-0",
        "TYPE": "await-condition",
        "PHASE": "Running",
        "RUN": "1",
    }
    assert re.fullmatch(r"\d+/1000 steps \(\d+\.\d%\) waiting for sync", row["PROGRESS"])
    assert running["progress"]["unit"] == "steps" and running["progress"]["total"] == 1000
    assert conditions(running)["Succeeded"] == ("False", "Running")

    pod.release("sync")
    kubectl_wait(ns, "sync", "Succeeded")
    [wide] = table(ns.kubectl("get", "nodetasks", "-o", "wide").stdout)
    assert (wide["PHASE"], wide["PROGRESS"], wide["REASON"]) == ("Succeeded", "", "Succeeded")
    assert wide["STARTED"] and wide["COMPLETED"] and wide["MESSAGE"].startswith("run 1 succeeded in")
    assert status_of(ns, "sync")["progress"]["total"] == 1000  # the numbers stay, only the summary line goes


def test_heartbeat_advances_while_running(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    pod.ns.apply(gate_task("long", "long"))
    first = wait_status(pod.ns, "long", lambda s: bool(s.get("heartbeatAt")), what="a heartbeat")["heartbeatAt"]

    later = wait_status(
        pod.ns, "long", lambda s: s.get("heartbeatAt", "") > first, timeout=20, what="a newer heartbeat"
    )

    assert later["phase"] == "Running"
    pod.release("long")


def test_params_invalid_fails_naming_the_field_and_runs_nothing(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    pod.ns.apply(nodetask("typo", "node-0", GATE_TYPE.value, {"lable": "x"}))

    kubectl_wait(pod.ns, "typo", "Failed")

    status = status_of(pod.ns, "typo")
    assert status["phase"] == "Failed" and status["reason"] == "ParamsInvalid"
    assert status["error"]["reason"] == "ParamsInvalid" and "params.lable: unknown field" in status["error"]["message"]
    assert status["error"]["retryable"] is False
    assert conditions(status)["Accepted"] == ("True", "Accepted")
    assert gate_starts(pod.home) == []
    assert poll_until(lambda: "Failed" in event_reasons(pod.ns, "typo"), what="a Failed Event", timeout=15)


def test_task_for_another_pod_is_untouched(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    pod.ns.apply(nodetask("elsewhere", "node-1", "mark-ready"), nodetask("here", "node-0", "mark-ready"))

    kubectl_wait(pod.ns, "here", "Succeeded")  # the agent has processed its queue past the other task's creation

    other = pod.ns.get("nodetask", "elsewhere")
    assert "status" not in other
    assert not any(key.startswith(("kopf", "nodetask-agent")) for key in other["metadata"].get("annotations", {}))
    assert "finalizers" not in other["metadata"]
    assert event_reasons(pod.ns, "elsewhere") == []
    assert [t["id"] for t in pod.http("/v0/tasks")[1]["tasks"]] == [status_of(pod.ns, "here")["taskId"]]


@pytest.mark.parametrize("pinned", ["own", "other"])
def test_task_pinned_to_a_pod_uid_runs_only_on_that_incarnation(
    node0: tuple[AgentPod, ThreadAgent], pinned: str
) -> None:
    pod, _ = node0
    uid = pod.uid if pinned == "own" else "00000000-0000-4000-8000-000000000abc"
    pod.ns.apply(
        nodetask("pinned", "node-0", "mark-ready", targetPodUID=uid), nodetask("barrier", "node-0", "mark-ready")
    )

    kubectl_wait(pod.ns, "barrier", "Succeeded")

    if pinned == "own":
        kubectl_wait(pod.ns, "pinned", "Succeeded")
    else:
        assert status_of(pod.ns, "pinned") == {}


def test_explicit_task_id_is_the_idempotency_key_across_resources(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    task_id = "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"
    pod.ns.apply(gate_task("first", "shared", taskId=task_id))
    wait_phase(pod.ns, "first", "Running")
    pod.ns.apply(gate_task("second", "shared", taskId=task_id))

    pod.release("shared")
    kubectl_wait(pod.ns, "first", "Succeeded")
    kubectl_wait(pod.ns, "second", "Succeeded")

    assert status_of(pod.ns, "second")["taskId"] == normalize_task_id(task_id)
    assert len(gate_starts(pod.home, "shared")) == 1  # one task, reported on both resources


def test_cancel_stops_the_running_handler(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    pod.ns.apply(gate_task("stoppable", "stoppable"))
    wait_phase(pod.ns, "stoppable", "Running")

    pod.ns.kubectl("patch", "nodetask", "stoppable", "--type=merge", "-p", '{"spec":{"cancel":true}}')
    kubectl_wait(pod.ns, "stoppable", "Failed")  # cancellation latches Failed (reason Cancelled)

    status = status_of(pod.ns, "stoppable")
    assert (status["phase"], status["reason"]) == ("Cancelled", "Cancelled")
    assert conditions(status)["Failed"] == ("True", "Cancelled")
    assert status["observedGeneration"] == 2
    assert any(line.startswith("cancelled stoppable") for line in (pod.home / "gate.log").read_text().splitlines())
    pod.release("stoppable")  # too late: a cancelled task never resumes
    assert poll_until(lambda: "Cancelled" in event_reasons(pod.ns, "stoppable"), what="a Cancelled Event", timeout=15)
    assert status_of(pod.ns, "stoppable")["phase"] == "Cancelled"


def skipped_events(pod: AgentPod) -> float:
    _, text = pod.http("/metrics")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = families["nodetask_watch_events_skipped"].samples
    return sum(sample.value for sample in samples if sample.name.endswith("_total"))


def test_the_echo_of_its_own_status_patch_is_skipped_but_a_status_changed_by_others_is_corrected(
    node0: tuple[AgentPod, ThreadAgent],
) -> None:
    pod, _ = node0
    pod.ns.apply(gate_task("echoed", "echoed"))
    wait_phase(pod.ns, "echoed", "Running")
    assert poll_until(lambda: skipped_events(pod) >= 1, what="the echo of the Running patch, skipped", timeout=15)

    echoes = skipped_events(pod)
    pod.ns.kubectl(
        "patch", "nodetask", "echoed", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Pending"}}'
    )
    wait_phase(pod.ns, "echoed", "Running")  # another writer's status is a new version: reconciled, and put right
    assert poll_until(
        lambda: skipped_events(pod) > echoes, what="the echo of the corrective patch, skipped", timeout=15
    )

    pod.release("echoed")
    kubectl_wait(pod.ns, "echoed", "Succeeded")  # a skipped echo never hides the outcome


def test_task_created_cancelled_never_starts(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    pod.ns.apply(gate_task("never", "never", cancel=True))

    status = wait_phase(pod.ns, "never", "Cancelled")

    assert status["message"] == "cancelled before it started"
    assert gate_starts(pod.home) == []


def test_delete_while_running_stops_the_handler_and_forgets_the_task(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    pod.ns.apply(gate_task("doomed", "doomed"))
    task_id = wait_phase(pod.ns, "doomed", "Running")["taskId"]

    pod.ns.kubectl("delete", "nodetask", "doomed", "--wait=true", "--timeout=30s")

    poll_until(
        lambda: "cancelled doomed" in (pod.home / "gate.log").read_text(),
        what="the handler to be cancelled",
        timeout=15,
    )
    # The handler is cancelled first, then the row deleted (engine.remove): wait for the second, not only the first.
    assert poll_until(lambda: pod.http(f"/v0/tasks/{task_id}")[0] == 404, what="the task to be forgotten", timeout=15)
    assert pod.http("/v0/status")[1]["running"] == 0


def test_failed_task_reruns_with_a_new_retry_nonce(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    pod.fail("flaky")
    pod.ns.apply(gate_task("flaky", "flaky"))
    kubectl_wait(pod.ns, "flaky", "Failed")
    failed = status_of(pod.ns, "flaky")
    assert (failed["reason"], failed["error"]["reason"], failed["run"]) == ("GateFailed", "GateFailed", 1)

    (pod.home / "fail-flaky").unlink()
    pod.release("flaky")
    pod.ns.kubectl("patch", "nodetask", "flaky", "--type=merge", "-p", json.dumps({"spec": {"retryNonce": "2"}}))
    kubectl_wait(pod.ns, "flaky", "Succeeded")

    status = status_of(pod.ns, "flaky")
    assert status["run"] == 2 and status["observedGeneration"] == 2
    assert conditions(status)["Failed"] == ("False", "Succeeded")
    assert "error" not in status  # the failed run's error is cleared by the merge patch
    assert len(gate_starts(pod.home, "flaky")) == 2


def test_retry_policy_reruns_automatically_and_shows_pending_between_runs(node0: tuple[AgentPod, ThreadAgent]) -> None:
    pod, _ = node0
    pod.fail("retried")
    pod.ns.apply(gate_task("retried", "retried", retry={"limit": 2, "backoffSeconds": 3}))

    pending = wait_status(pod.ns, "retried", lambda s: s.get("phase") == "Pending", what="the backoff wait")
    assert pending["reason"] == "Retrying" and pending["run"] == 2 and pending["error"]["reason"] == "GateFailed"
    (pod.home / "fail-retried").unlink()
    pod.release("retried")

    kubectl_wait(pod.ns, "retried", "Succeeded")
    assert status_of(pod.ns, "retried")["run"] == 2
    assert "Retrying" in event_reasons(pod.ns, "retried")

"""Faults seen through the real kube-apiserver: a failing store under a running agent, a pod replaced under a pinned
task, a NodeTask re-created under the same name while its status is written, and a status forged before the agent
saw its task."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from agent.models import ResourceRef
from agent.operator.kubeapi import KubeApi, load_connection
from agent.operator.writer import StatusWriter
from agent.runtime.metrics import AgentMetrics
from agent.store import SqliteStore
from tests.faults.kit import Volume, WriteLock
from tests.fixtures.kube import KubeCluster, KubeNamespace
from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory, AgentPod
from tests.operator.handlers import GATE_TYPE
from tests.operator.kit import event_reasons, kubectl_wait, nodetask, status_of, wait_phase, wait_status

pytestmark = pytest.mark.kube


def gate_task(name: str, label: str, pod: str = "node-0", **spec: Any) -> dict[str, Any]:
    return nodetask(name, pod, GATE_TYPE.value, {"label": label}, **spec)


def probes_answer(pod: AgentPod) -> None:
    assert pod.http("/livez")[0] == 200  # http.client with a 5 s timeout: a blocked loop fails here
    pod.http("/healthz")


def test_store_write_locked_when_a_nodetask_arrives_runs_it_after_release_without_restart(
    agents: AgentFactory,
) -> None:
    pod = agents.pod("node-0")
    agent = agents.thread(pod)
    lock = WriteLock(pod.settings().store_path)
    try:
        pod.ns.apply(gate_task("arrives", "arrives"))
        deadline = time.monotonic() + 8  # past busy_timeout (5 s): the submit fails and the store is unavailable
        while time.monotonic() < deadline:
            probes_answer(pod)
            time.sleep(0.25)
        code, body = pod.http("/healthz")
        assert code == 503 and "locked" in body["reason"], body
        assert pod.http("/v0/status")[1]["store"]["ok"] is False
        assert status_of(pod.ns, "arrives").get("phase") is None  # not accepted: nothing could be recorded
    finally:
        lock.release()
    wait_phase(pod.ns, "arrives", "Running", timeout=30)  # the recovery probe triggers a resync: no restart
    pod.release("arrives")
    kubectl_wait(pod.ns, "arrives", "Succeeded")
    assert agent.exit_code is None


def test_store_volume_full_then_freed_the_task_is_reported(agents: AgentFactory, store_volume: Volume) -> None:
    pod = agents.pod("node-0")
    pod.extra_env["NODETASK_DB"] = str(store_volume.path / "agent.db")
    agents.thread(pod)
    pod.ns.apply(gate_task("finishing", "finishing"))
    running = wait_phase(pod.ns, "finishing", "Running")

    store_volume.fill()
    try:
        pod.release("finishing")
        waiting = wait_status(
            pod.ns,
            "finishing",
            lambda s: "waiting for the task store" in str((s.get("progress") or {}).get("message", "")),
            what="the status to say the outcome waits for the store",
        )
        assert waiting["phase"] == "Running"
        assert pod.http("/healthz")[0] == 503 and pod.http("/livez")[0] == 200
        beat = waiting["heartbeatAt"]
        wait_status(pod.ns, "finishing", lambda s: s.get("heartbeatAt") != beat, what="a renewed heartbeat")
    finally:
        store_volume.free()
    done = wait_phase(pod.ns, "finishing", "Succeeded", timeout=60)
    assert done["run"] == 1 and done["agent"]["session"] == running["agent"]["session"]  # the same process


def recreate_pod(factory: AgentFactory, pod: AgentPod) -> AgentPod:
    """Delete the Pod object and create it again under the same name: a new incarnation with a new UID and token."""
    pod.ns.kubectl("delete", "pod", pod.name, "--wait=true")
    created = pod.ns.pod(pod.name, "nodetask-agent")
    kubeconfig = pod.ns.cluster.pod_token_kubeconfig(pod.ns.name, created, pod.home.parent / "new.kubeconfig")
    return AgentPod(pod.ns, pod.name, created["metadata"]["uid"], kubeconfig, pod.home, pod.http_port)


def test_a_task_pinned_to_the_old_pod_incarnation_is_not_resumed_by_the_new_one(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    first = agents.process(pod)
    pod.ns.apply(gate_task("pinned", "pinned", targetPodUID=pod.uid), gate_task("unpinned", "unpinned"))
    pinned_id = wait_phase(pod.ns, "pinned", "Running")["taskId"]
    wait_phase(pod.ns, "unpinned", "Running")
    first.kill(signal.SIGKILL)
    before = status_of(pod.ns, "pinned")

    successor = recreate_pod(agents, pod)
    agents.process(successor)
    poll_until(lambda: "PodReplaced" in event_reasons(pod.ns, "pinned"), what="a PodReplaced Event", timeout=30)
    wait_status(pod.ns, "unpinned", lambda s: s.get("resumes") == 1, what="the unpinned task to resume")
    with SqliteStore(successor.settings().store_path) as reader:
        row = reader.get(pinned_id)
    assert row is not None and row.reason == "PodReplaced" and pod.uid in row.error
    gate_log = (pod.home / "gate.log").read_text()
    assert gate_log.count("start pinned") == 1  # never run by the new incarnation
    assert status_of(pod.ns, "pinned")["agent"] == before["agent"]  # the new pod does not write a pinned status


async def test_a_status_for_a_deleted_and_recreated_nodetask_never_reaches_the_new_object(
    nodetask_crd: KubeCluster, kube_namespace: KubeNamespace
) -> None:
    ns = kube_namespace
    ns.apply(nodetask("reused", "node-0", "mark-ready"))
    old = ns.get("nodetask", "reused")["metadata"]
    ns.kubectl("delete", "nodetask", "reused", "--wait=true")
    ns.apply(nodetask("reused", "node-0", "mark-ready"))
    assert ns.get("nodetask", "reused")["metadata"]["uid"] != old["uid"]

    metrics = AgentMetrics()
    api = await KubeApi(load_connection(str(nodetask_crd.kubeconfig))).open()
    writer = StatusWriter(api, metrics)
    worker = asyncio.create_task(writer.run())
    try:
        stale = ResourceRef(namespace=ns.name, name="reused", uid=old["uid"], generation=1)
        writer.update(stale, {"phase": "Succeeded", "run": 1}, urgent=True)
        assert await writer.flush(within=15)  # dropped, not retried forever

        # The race itself: the object is re-created after the writer last saw it (its resourceVersion is cached).
        current = ResourceRef(namespace=ns.name, name="reused", uid=ns.get("nodetask", "reused")["metadata"]["uid"])
        writer.update(current, {"phase": "Running", "run": 1}, urgent=True)
        assert await writer.flush(within=15)
        assert status_of(ns, "reused") == {"phase": "Running", "run": 1}
        ns.kubectl("delete", "nodetask", "reused", "--wait=true")
        ns.apply(nodetask("reused", "node-0", "mark-ready"))
        writer.update(current, {"phase": "Succeeded", "run": 1}, urgent=True)
        assert await writer.flush(within=15)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await api.close()
    assert status_of(ns, "reused") == {}
    assert metrics.registry.get_sample_value("nodetask_status_patches_total") == 1  # only the Running one


def test_a_terminal_status_forged_before_the_agent_saw_the_task_does_not_stop_it(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    task_id = "5d7c1a2b-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    pod.ns.apply(gate_task("forged", "forged", taskId=task_id))
    forged = {"status": {"phase": "Succeeded", "taskId": task_id, "run": 1}}
    pod.ns.kubectl("patch", "nodetask", "forged", "--subresource=status", "--type=merge", "-p", json.dumps(forged))
    agents.thread(pod)

    running = wait_phase(pod.ns, "forged", "Running")
    assert running["agent"]["pod"] == "node-0"
    pod.release("forged")
    kubectl_wait(pod.ns, "forged", "Succeeded")
    assert "start forged" in (pod.home / "gate.log").read_text()


def test_own_terminal_status_without_a_store_row_is_not_run_again(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    agent = agents.thread(pod)
    pod.ns.apply(gate_task("finished", "finished"))
    pod.release("finished")
    kubectl_wait(pod.ns, "finished", "Succeeded")
    agent.stop()
    store = pod.settings().store_path
    for path in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
        path.unlink(missing_ok=True)  # the store is lost with its volume; the status written by this pod remains
    agents.thread(pod)
    time.sleep(6)  # the start-up list and one periodic resync (5 s in the operator tests) have run
    assert (pod.home / "gate.log").read_text().count("start finished") == 1
    assert status_of(pod.ns, "finished")["phase"] == "Succeeded"


def test_an_upgrade_to_the_author_list_keeps_pruned_outcomes_as_the_agents_own(agents: AgentFactory) -> None:
    """An agent version that kept no author list wrote the statuses: the first start with the list (the store has
    rows) takes the sessions named by this pod's finished NodeTasks as its own, so a pruned outcome never runs again."""
    pod = agents.pod("node-0")
    agent = agents.thread(pod)
    pod.ns.apply(gate_task("pruned", "pruned"), nodetask("kept", "node-0", "mark-ready"))
    pod.release("pruned")
    kubectl_wait(pod.ns, "pruned", "Succeeded")
    kubectl_wait(pod.ns, "kept", "Succeeded")
    agent.stop()
    store_path = pod.settings().store_path
    Path(f"{store_path}.authors.json").unlink()  # as an agent without the list left it
    store = SqliteStore(store_path)
    try:
        assert store.delete(status_of(pod.ns, "pruned")["taskId"])  # retention pruned its row; "kept" has one
    finally:
        store.close()

    agents.thread(pod)
    pod.ns.apply(nodetask("after", "node-0", "mark-ready"))
    kubectl_wait(pod.ns, "after", "Succeeded")  # the start-up list, which adopts and reconciles, is done
    assert (pod.home / "gate.log").read_text().count("start pruned") == 1
    assert status_of(pod.ns, "pruned")["phase"] == "Succeeded"
    authors = json.loads(Path(f"{store_path}.authors.json").read_text())["authors"]
    assert len(authors) == 2  # the adopted earlier session and this one

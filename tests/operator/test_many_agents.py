"""Several agents in one namespace (real subprocesses, one per pod), and an agent behind a faulty network."""

from __future__ import annotations

import threading

import pytest

from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.kube import redirect_kubeconfig
from tests.operator.agents import AgentFactory
from tests.operator.handlers import GATE_TYPE, gate_starts
from tests.operator.kit import kubectl_wait, nodetask, status_of, wait_phase

pytestmark = [pytest.mark.kube, pytest.mark.slow]

PODS = ("node-0", "node-1", "node-2")


def test_each_agent_takes_only_its_own_tasks(agents: AgentFactory) -> None:
    pods = {name: agents.pod(name) for name in PODS}
    # node-2's agent filters client-side, as on a server without selectableFields; the others use the field selector.
    pods["node-2"].extra_env["NODETASK_SELECTOR"] = "none"
    for pod in pods.values():
        agents.process(pod)
    ns = agents.ns
    manifests = []
    for name in PODS:
        manifests += [
            nodetask(f"{name}-gate", name, GATE_TYPE.value, {"label": "work"}),
            nodetask(f"{name}-ready", name, "mark-ready"),
        ]
    ns.apply(*manifests)

    for name in PODS:
        wait_phase(ns, f"{name}-gate", "Running")
        pods[name].release("work")
    for name in PODS:
        for suffix in ("gate", "ready"):
            kubectl_wait(ns, f"{name}-{suffix}", "Succeeded")

    for name, pod in pods.items():
        own = {status_of(ns, f"{name}-{suffix}")["taskId"] for suffix in ("gate", "ready")}
        assert {task["id"] for task in pod.http("/v0/tasks")[1]["tasks"]} == own
        assert all(status_of(ns, f"{name}-{s}")["agent"]["pod"] == name for s in ("gate", "ready"))
        assert len(gate_starts(pod.home, "work")) == 1
        assert pod.http("/healthz")[0] == 200


def test_statuses_converge_through_dropped_connections_and_latency(
    agents: AgentFactory, fault_proxy_factory: type[FaultProxy]
) -> None:
    pod = agents.pod("node-0")
    proxy = fault_proxy_factory("127.0.0.1", pod.ns.cluster.api_port).start()
    proxy.latency = 0.05
    proxied = redirect_kubeconfig(pod.kubeconfig, pod.home.parent / "proxied.kubeconfig", f"https://{proxy.address}")
    agents.process(pod, kubeconfig=proxied)
    names = [f"task-{n}" for n in range(6)]
    stop = threading.Event()

    def keep_dropping() -> None:  # cut every connection (watch and patches alike) every 0.7 s
        while not stop.wait(0.7):
            proxy.drop_connections()

    dropper = threading.Thread(target=keep_dropping, daemon=True)
    dropper.start()
    try:
        pod.ns.apply(*(nodetask(name, "node-0", GATE_TYPE.value, {"label": name}) for name in names))
        for name in names:
            wait_phase(pod.ns, name, "Running", timeout=60)
            pod.release(name)
        for name in names:
            kubectl_wait(pod.ns, name, "Succeeded", timeout=90)
    finally:
        stop.set()
        dropper.join()

    assert proxy.accepted > 3  # the agent really had to reconnect
    for name in names:
        assert len(gate_starts(pod.home, name)) == 1

"""`nodetask-agent run` as a real subprocess, authenticated only by a ServiceAccount token bound to its pod and
holding only the shipped Role, takes NodeTasks to Succeeded: the shipped RBAC and admission policy are sufficient."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kube import KubeCluster
from tests.fixtures.ports import reserve_port

from .conftest import NODETASK_EXAMPLES, Installation, install_chart, install_kustomize

pytestmark = pytest.mark.kube

POD = "sei-node-0"  # the pod the example NodeTasks are addressed to
VENV_BIN = Path(sys.executable).parent


def agent_command() -> list[str]:
    """The console script the image's ENTRYPOINT runs, with the StatefulSet's args."""
    return [str(VENV_BIN / "nodetask-agent"), "run"]


@dataclass
class AgentProcess:
    process: subprocess.Popen[bytes]
    log: Path
    port: int
    home: Path
    workdir: Path

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def get(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()


@pytest.fixture(scope="module", params=["helm", "kustomize"])
def installed(
    request: pytest.FixtureRequest, kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Installation:
    tmp = tmp_path_factory.mktemp(f"run-{request.param}")
    installation = install_chart(kube_cluster, tmp) if request.param == "helm" else install_kustomize(kube_cluster, tmp)
    installation.wait_policy_enforced()
    return installation


@pytest.fixture
def agent(installed: Installation, tmp_path: Path) -> Iterator[AgentProcess]:
    """The agent of pod sei-node-0, with nothing but that pod's bound token (KUBECONFIG) and the downward-API env."""
    pod, kubeconfig = installed.agent(POD)
    home = tmp_path / "sei"
    home.mkdir()
    port = reserve_port()
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": POD,
        "POD_NAMESPACE": installed.namespace,
        "POD_UID": pod["metadata"]["uid"],
        "SEI_HOME": str(home),
        "NODETASK_HTTP_PORT": str(port),
        "NODETASK_HTTP_HOST": "127.0.0.1",
        "SEI_CHAIN_ID": "sei-devnet-1",
    }
    log = tmp_path / "agent.log"
    workdir = tmp_path / "workdir"  # stands for the image's read-only root: nothing may be written here
    workdir.mkdir()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            agent_command(),
            env={**environment, "PYTHONDONTWRITEBYTECODE": "1"},
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    running = AgentProcess(process, log, port, home, workdir)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def wait_phase(
    installed: Installation, name: str, phase: str, agent: AgentProcess, timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = installed.cluster.get_json("nodetask", name, namespace=installed.namespace)
        if task.get("status", {}).get("phase") == phase:
            result: dict[str, Any] = task
            return result
        if agent.process.poll() is not None:
            raise AssertionError(f"the agent exited with {agent.process.returncode}:\n{agent.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} is not {phase} after {timeout:.0f}s: {task.get('status')}\n{agent.tail()}")
        time.sleep(0.5)


def test_agent_with_only_the_shipped_role_runs_its_pods_tasks_to_succeeded(
    installed: Installation, agent: AgentProcess
) -> None:
    for example in ("generate-identity", "mark-ready"):
        installed.kubectl("apply", "-f", str(NODETASK_EXAMPLES / f"{example}.yaml"))
    installed.nodetask("someone-elses", "sei-node-1")

    identity = wait_phase(installed, f"{POD}-generate-identity", "Succeeded", agent)
    ready = wait_phase(installed, f"{POD}-mark-ready", "Succeeded", agent)

    assert identity["status"]["agent"]["pod"] == POD
    assert (agent.home / "config" / "node_key.json").exists()
    assert {c["type"]: c["status"] for c in ready["status"]["conditions"]}["Succeeded"] == "True"
    assert agent.get("/healthz")[0] == 200
    other = installed.cluster.get_json("nodetask", "someone-elses", namespace=installed.namespace)
    assert "status" not in other, "the agent touched another pod's task"
    events = json.loads(
        installed.kubectl(
            "get", "events", f"--field-selector=involvedObject.name={POD}-mark-ready", "-o", "json"
        ).stdout
    )["items"]
    assert {event["reason"] for event in events} >= {"Succeeded"}, f"no Events posted:\n{agent.tail()}"
    status, metrics = agent.get("/metrics")
    assert status == 200
    patch_errors = [line for line in metrics.splitlines() if line.startswith("nodetask_status_patch_errors_total")]
    assert not patch_errors, f"the agent's status patches were refused: {patch_errors}\n{agent.tail()}"
    assert not list(agent.workdir.iterdir()), "the agent wrote into its working directory"
    log = agent.log.read_text(errors="replace")
    assert "forbidden" not in log.lower() and " 403" not in log, agent.tail()

"""Agents for the operator tests: each with its own Pod object, bound ServiceAccount token, node home and HTTP port.

An agent runs either in a thread of the test process (`ThreadAgent`: cheap, its logs land in pytest's capture) or
as a real subprocess (`ProcessAgent`: for tests about process death; stopped by PID, SIGKILL if need be). Both run
the same runtime and front doors as `nodetask-agent run` (`agent.cli.run`), with the test registry (see
`handlers.py`) and short intervals; `ProcessAgent(shipped=True)` runs the `nodetask-agent run` command itself.

The agents authenticate as ServiceAccount `nodetask-agent` with a token bound to their Pod, and the test Role below
grants only what the agent needs; the shipped chart's Role is checked by the RBAC tests.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.cli.run import run_agent
from agent.models.settings import AgentSettings
from agent.tasks import HandlerRegistry
from tests.fixtures.kube import REPO_ROOT, KubeNamespace
from tests.fixtures.ports import reserve_port
from tests.fixtures.waiting import poll_until
from tests.operator.handlers import test_registry

SERVICE_ACCOUNT = "nodetask-agent"

AGENT_RULES = [
    {"apiGroups": ["sei.io"], "resources": ["nodetasks"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": ["sei.io"], "resources": ["nodetasks/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]

# Short intervals so that throttling, heartbeats and resyncs show up within a test's time.
TEST_OPTIONS = {
    "NODETASK_PROGRESS_SECONDS": "0.5",
    "NODETASK_HEARTBEAT_SECONDS": "2",
    "NODETASK_RESYNC_SECONDS": "5",
    "NODETASK_SHUTDOWN_GRACE_SECONDS": "3",
    "NODETASK_HTTP_HOST": "127.0.0.1",
}


def grant_agent_role(ns: KubeNamespace) -> None:
    ns.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "nodetask-agent-test"},
            "rules": AGENT_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "nodetask-agent-test"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nodetask-agent-test"},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns.name}],
        },
    )


@dataclass
class AgentPod:
    """One pod's identity and files, as its agent container would see them."""

    ns: KubeNamespace
    name: str
    uid: str
    kubeconfig: Path
    home: Path
    http_port: int = field(default_factory=reserve_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            "POD_NAME": self.name,
            "POD_NAMESPACE": self.ns.name,
            "POD_UID": self.uid,
            "SEI_HOME": str(self.home),
            "NODETASK_HTTP_PORT": str(self.http_port),
            **TEST_OPTIONS,
            **self.extra_env,
        }

    def settings(self) -> AgentSettings:
        return AgentSettings.from_env(self.env())

    def release(self, label: str) -> None:
        (self.home / f"release-{label}").touch()

    def fail(self, label: str) -> None:
        (self.home / f"fail-{label}").touch()

    def http(self, path: str) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(body) if is_json else body.decode()

    def serving(self) -> bool:
        try:
            return self.http("/livez")[0] == 200
        except OSError:
            return False


class ThreadAgent:
    """`run_agent` (what `nodetask-agent run` runs) on its own event loop in a thread of the test process."""

    def __init__(self, pod: AgentPod, registry: HandlerRegistry | None = None) -> None:
        self.pod = pod
        self.registry = registry or test_registry()
        self.exit_code: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name=f"agent-{pod.name}", daemon=True)

    def _main(self) -> None:
        async def run() -> int:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            return await run_agent(
                self.pod.settings(), kubeconfig=str(self.pod.kubeconfig), registry=self.registry, stop=self._stop
            )

        self.exit_code = asyncio.run(run())

    def start(self) -> ThreadAgent:
        self._thread.start()
        poll_until(
            lambda: self.pod.serving() or self.exit_code is not None, what=f"agent {self.pod.name} to serve", timeout=60
        )
        assert self.exit_code is None, f"agent {self.pod.name} exited with {self.exit_code}"
        return self

    def stop(self, timeout: float = 30) -> int | None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"agent {self.pod.name} did not stop within {timeout}s"
        return self.exit_code


class ProcessAgent:
    """The agent as a real subprocess (`python -m tests.operator.agent_process`), logging to `<home>/agent.log`.

    `shipped=True` runs `nodetask-agent run` (the console script's entry point: every shipped handler, no gate)."""

    def __init__(self, pod: AgentPod, *, kubeconfig: Path | None = None, shipped: bool = False) -> None:
        self.pod = pod
        self.kubeconfig = kubeconfig or pod.kubeconfig
        self.shipped = shipped
        self.log = pod.home / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> ProcessAgent:
        env = {**os.environ, **self.pod.env(), "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    *(["agent", "run"] if self.shipped else ["tests.operator.agent_process"]),
                    "--kubeconfig",
                    str(self.kubeconfig),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            poll_until(
                lambda: self.pod.serving() or self.process.poll() is not None,
                what=f"agent {self.pod.name} to serve",
                timeout=60,
            )  # type: ignore[union-attr]
            assert self.process.poll() is None, f"agent exited:\n{self.tail()}"
        return self

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def kill(self, signum: int = signal.SIGKILL, timeout: float = 30) -> int:
        """Signal exactly this process and wait for it to exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill(signal.SIGTERM)


class AgentFactory:
    """Makes agent pods in one namespace and starts agents for them; stops every agent it started."""

    def __init__(self, ns: KubeNamespace, tmp: Path) -> None:
        self.ns = ns
        self.tmp = tmp
        self.started: list[ThreadAgent | ProcessAgent] = []
        self._granted = False

    def pod(self, name: str) -> AgentPod:
        if not self._granted:
            grant_agent_role(self.ns)
            self._granted = True
        pod = self.ns.pod(name, SERVICE_ACCOUNT)
        kubeconfig = self.ns.cluster.pod_token_kubeconfig(self.ns.name, pod, self.tmp / f"{name}.kubeconfig")
        home = self.tmp / name / "home"
        (home / "config").mkdir(parents=True)
        (home / "data").mkdir()
        return AgentPod(self.ns, name, pod["metadata"]["uid"], kubeconfig, home)

    def thread(self, pod: AgentPod, registry: HandlerRegistry | None = None) -> ThreadAgent:
        """Start an agent in a thread; `registry` defaults to the test registry (the gate replaces await-condition)."""
        agent = ThreadAgent(pod, registry)
        self.started.append(agent)
        return agent.start()

    def process(self, pod: AgentPod, **options: Any) -> ProcessAgent:
        agent = ProcessAgent(pod, **options)
        self.started.append(agent)
        return agent.start()

    def stop_all(self) -> None:
        """SIGTERM every process agent first (they shut down in parallel), then stop thread agents and reap."""
        for agent in self.started:
            if isinstance(agent, ProcessAgent) and agent.process is not None and agent.process.poll() is None:
                agent.process.send_signal(signal.SIGTERM)
        for agent in reversed(self.started):
            agent.stop()


@pytest.fixture
def agents(kube_namespace: KubeNamespace, nodetask_crd: object, tmp_path: Path) -> Iterator[AgentFactory]:
    factory = AgentFactory(kube_namespace, tmp_path)
    yield factory
    factory.stop_all()

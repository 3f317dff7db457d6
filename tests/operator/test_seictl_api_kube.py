"""`nodetask-agent run` with NODETASK_SEICTL_API=true: the Go sidecar's HTTP API and NodeTasks over one engine/store."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from agent.tasks import default_registry
from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory, AgentPod
from tests.operator.kit import kubectl_wait, nodetask, status_of

pytestmark = pytest.mark.kube

HTTP_TASK = "5b0c8c1e-7d6a-4e51-9a43-0c8c4f1b7a01"


def _post(pod: AgentPod, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{pod.http_port}/v0/tasks",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_tasks_from_http_and_from_nodetasks_share_one_engine_and_survive_resyncs(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    (pod.home / "config").mkdir(parents=True, exist_ok=True)
    (pod.home / "config" / "config.toml").write_text('moniker = "node-0"\n')
    pod.extra_env["NODETASK_SEICTL_API"] = "true"
    agents.thread(pod, default_registry())

    patch = {"files": {"config.toml": {"moniker": "from-http"}}}
    assert _post(pod, {"id": HTTP_TASK, "type": "config-patch", "params": patch}) == (201, {"id": HTTP_TASK})
    pod.ns.apply(nodetask("ready", "node-0", "mark-ready", {}))
    kubectl_wait(pod.ns, "ready", "Succeeded")

    def http_task_completed() -> bool:
        status, body = pod.http(f"/v0/tasks/{HTTP_TASK}")
        return status == 200 and body["status"] == "completed"

    poll_until(http_task_completed, what="the HTTP task to complete", timeout=30)
    assert pod.http("/v0/healthz") == (200, ""), "a NodeTask's mark-ready opens the gate the HTTP API reports"
    status, listed = pod.http("/v0/tasks")
    assert status == 200 and {task["type"] for task in listed} == {"config-patch", "mark-ready"}
    # The NodeTask's own status is written as usual; the HTTP task has no resource and the resync leaves it alone.
    assert status_of(pod.ns, "ready")["phase"] == "Succeeded"
    time.sleep(6)  # longer than the test agents' resync period (NODETASK_RESYNC_SECONDS=5)
    assert http_task_completed(), "a resync must not forget a task that has no NodeTask"
    assert 'moniker = "from-http"' in (pod.home / "config" / "config.toml").read_text()

"""deploy/examples without a cluster: one NodeTask per task type whose params the agent accepts, and a StatefulSet whose
sidecar is wired the way the agent reads its settings (and whose seid entrypoint really waits on the gate)."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.models import TaskType
from agent.models.resource import TARGET_POD_LABEL, NodeTaskManifest
from agent.models.settings import AgentSettings
from agent.tasks import default_registry

from .conftest import NODETASK_EXAMPLES, REPO_ROOT, documents

STATEFULSET = REPO_ROOT / "deploy" / "examples" / "statefulset.yaml"
EXAMPLE_POD = "sei-node-0"  # pod 0 of the example StatefulSet `sei-node`


def load_examples() -> dict[Path, NodeTaskManifest]:
    return {path: NodeTaskManifest.model_validate(yaml.safe_load(path.read_text())) for path in example_paths()}


def example_paths() -> list[Path]:
    return sorted(NODETASK_EXAMPLES.glob("*.yaml"))


def example_for(task_type: str) -> NodeTaskManifest:
    path = NODETASK_EXAMPLES / f"{task_type}.yaml"
    assert path.exists(), f"no example NodeTask for {task_type} ({path.relative_to(REPO_ROOT)})"
    return NodeTaskManifest.model_validate(yaml.safe_load(path.read_text()))


# --- NodeTask examples ---------------------------------------------------------------------------------------------


def test_every_task_type_has_exactly_one_example_named_after_it() -> None:
    examples = load_examples()

    assert sorted(path.stem for path in examples) == sorted(task_type.value for task_type in TaskType)
    for path, manifest in examples.items():
        assert manifest.spec.type == path.stem, f"{path.name} declares type {manifest.spec.type}"


@pytest.mark.parametrize("path", example_paths(), ids=lambda path: path.stem)
def test_example_is_one_nodetask_for_the_example_pod_with_its_label(path: Path) -> None:
    docs = documents(path.read_text())
    manifest = NodeTaskManifest.model_validate(docs[0])

    assert len(docs) == 1
    assert manifest.spec.target_pod == EXAMPLE_POD
    assert manifest.metadata.labels.get(TARGET_POD_LABEL) == EXAMPLE_POD
    assert manifest.metadata.name == f"{EXAMPLE_POD}-{manifest.spec.type}"


REGISTERED = default_registry().types()


def test_registry_has_handlers_to_check_examples_against() -> None:
    assert TaskType.MARK_READY in REGISTERED and len(REGISTERED) >= 2


@pytest.mark.parametrize("task_type", REGISTERED, ids=str)
def test_example_params_are_accepted_by_the_handlers_params_model(task_type: TaskType) -> None:
    spec = default_registry().get(task_type)
    assert spec is not None
    manifest = example_for(task_type.value)

    params = spec.params_model.model_validate(manifest.spec.params)

    # Round trip: what the example says is what the handler gets (no key silently dropped or renamed).
    dumped = params.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert set(dumped) == set(manifest.spec.params)


# --- the StatefulSet -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def statefulset() -> dict[str, Any]:
    found = [doc for doc in documents(STATEFULSET.read_text()) if doc["kind"] == "StatefulSet"]
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def pod_spec(statefulset: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = statefulset["spec"]["template"]["spec"]
    return spec


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    for candidate in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        if candidate["name"] == name:
            result: dict[str, Any] = candidate
            return result
    raise AssertionError(f"no container {name}")


def test_agent_is_a_native_sidecar_started_before_seid(pod_spec: dict[str, Any]) -> None:
    agent = container(pod_spec, "nodetask-agent")

    assert agent in pod_spec["initContainers"]
    assert agent["restartPolicy"] == "Always"
    assert agent["args"] == ["run"]
    assert [c["name"] for c in pod_spec["containers"]] == ["seid"]


def test_agent_gets_its_identity_from_the_downward_api(pod_spec: dict[str, Any]) -> None:
    env = {item["name"]: item for item in container(pod_spec, "nodetask-agent")["env"]}

    for variable, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        assert env[variable]["valueFrom"]["fieldRef"]["fieldPath"] == field
    assert env["POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"


def test_agent_environment_is_what_its_settings_read(pod_spec: dict[str, Any]) -> None:
    agent = container(pod_spec, "nodetask-agent")
    literal = {item["name"]: item["value"] for item in agent["env"] if "value" in item}
    from_pod = {item["name"]: f"<{item['name']}>" for item in agent["env"] if "valueFrom" in item}

    settings = AgentSettings.from_env({**literal, **from_pod})

    mounts = {mount["name"]: mount["mountPath"] for mount in agent["volumeMounts"]}
    port = next(p["containerPort"] for p in agent["ports"] if p["name"] == "agent-http")
    assert (settings.pod_name, settings.pod_namespace, settings.pod_uid) == (
        "<POD_NAME>",
        "<POD_NAMESPACE>",
        "<POD_UID>",
    )
    assert str(settings.home) == mounts["data"]
    assert settings.store_path.is_relative_to(mounts["data"])
    assert settings.http_port == port
    assert settings.chain_id and settings.genesis_bucket and settings.snapshot_bucket
    assert settings.log_format == "json"  # the example logs JSON lines with each task's NodeTask


def test_every_agent_variable_is_one_the_agent_reads(pod_spec: dict[str, Any]) -> None:
    agent = container(pod_spec, "nodetask-agent")
    defaults = AgentSettings.from_env({})
    process_only = {"HOME", "TMPDIR"}  # for Python and its libraries, not agent settings

    for item in agent["env"]:
        if item["name"] in process_only:
            continue
        # A value unlike any default (the example's own may equal one: SEI_HOME=/sei, port 7777).
        probe = "4242" if item.get("value", "").isdigit() else "probe-value"
        probe = {"NODETASK_LOG_FORMAT": "json"}.get(item["name"], probe)  # a choice: the one that is not default
        assert AgentSettings.from_env({item["name"]: probe}) != defaults, f"the agent ignores {item['name']}"


def test_agent_probes_are_the_gate_and_the_store(pod_spec: dict[str, Any]) -> None:
    agent = container(pod_spec, "nodetask-agent")

    assert agent["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "agent-http"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "agent-http"}
    assert agent["startupProbe"]["httpGet"]["path"] == "/livez"


def test_agent_runs_non_root_on_a_read_only_root_with_a_writable_tmp(pod_spec: dict[str, Any]) -> None:
    agent = container(pod_spec, "nodetask-agent")
    security = agent["securityContext"]
    tmp_mount = next(m for m in agent["volumeMounts"] if m["mountPath"] == "/tmp")
    tmp_volume = next(v for v in pod_spec["volumes"] if v["name"] == tmp_mount["name"])

    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "emptyDir" in tmp_volume
    assert agent["resources"]["requests"] and agent["resources"]["limits"]["memory"]


def test_only_the_agent_container_gets_an_api_token(pod_spec: dict[str, Any]) -> None:
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    agent, seid = container(pod_spec, "nodetask-agent"), container(pod_spec, "seid")
    token_mount = next(m for m in agent["volumeMounts"] if m["mountPath"] == token_path)
    volume = next(v for v in pod_spec["volumes"] if v["name"] == token_mount["name"])
    sources = volume["projected"]["sources"]

    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["serviceAccountName"] == "nodetask-agent"
    assert any("serviceAccountToken" in source for source in sources)
    assert token_mount["readOnly"] is True
    assert token_mount["name"] not in {m["name"] for m in seid["volumeMounts"]}


def test_seid_and_agent_share_the_data_volume_at_sei_home(
    pod_spec: dict[str, Any], statefulset: dict[str, Any]
) -> None:
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]}
    for name in ("nodetask-agent", "seid"):
        part = container(pod_spec, name)
        env = {item["name"]: item.get("value") for item in part["env"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in part["volumeMounts"]}
        assert mounts["data"] == env["SEI_HOME"] == "/sei"
    assert claims == {"data"}


# --- seid's entrypoint waits on the gate ---------------------------------------------------------------------------


class GateServer:
    """A stand-in for the agent's /healthz: answers with `status`, counting requests."""

    def __init__(self, port: int) -> None:
        self.status = 503
        self.requests = 0
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.requests += 1
                code = gate.status if self.path == "/healthz" else 404
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GateServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def seid_entrypoint(pod_spec: dict[str, Any], tmp_path: Path, free_port: int) -> Iterator[tuple[Path, dict[str, str]]]:
    """seid's command from the example, with a stub `seid` on PATH that records its arguments."""
    seid = container(pod_spec, "seid")
    assert seid["command"] == ["/bin/bash", "-c"]
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    record = tmp_path / "seid-argv"
    stub = stub_dir / "seid"
    stub.write_text(f'#!/bin/sh\necho "$@" > {record}\n')
    stub.chmod(0o755)
    env = {
        "PATH": f"{stub_dir}:{os.environ['PATH']}",
        "SEI_HOME": str(tmp_path / "sei"),
        "NODETASK_HTTP_PORT": str(free_port),
    }
    yield record, env


def run_entrypoint(pod_spec: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[str]:
    script = container(pod_spec, "seid")["args"][0]
    return subprocess.Popen(["/bin/bash", "-c", script], env=env, text=True, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_seid_entrypoint_waits_for_the_gate_then_execs_seid_start(
    pod_spec: dict[str, Any], seid_entrypoint: tuple[Path, dict[str, str]], free_port: int
) -> None:
    record, env = seid_entrypoint
    process = run_entrypoint(pod_spec, env)
    try:
        time.sleep(2.5)  # nothing listens yet: connection refused, then a closed gate
        assert process.poll() is None and not record.exists()
        with GateServer(free_port) as gate:
            deadline = time.monotonic() + 10
            while gate.requests == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert gate.requests >= 1 and process.poll() is None and not record.exists()  # 503: still waiting
            gate.status = 200
            process.wait(timeout=15)
            polls = gate.requests
        assert process.returncode == 0, process.stderr.read() if process.stderr else ""
        assert record.read_text().split() == ["start", "--home", env["SEI_HOME"]]
        assert polls >= 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sidecar_snippet_in_the_chart_docs_is_the_examples(pod_spec: dict[str, Any]) -> None:
    text = (REPO_ROOT / "docs" / "helm.md").read_text()
    block = text.split("<!-- sidecar-snippet -->\n```yaml\n", 1)[1].split("```", 1)[0]
    snippet = yaml.safe_load(block)

    assert snippet["initContainers"] == [container(pod_spec, "nodetask-agent")]
    assert snippet["serviceAccountName"] == pod_spec["serviceAccountName"]
    assert snippet["automountServiceAccountToken"] is pod_spec["automountServiceAccountToken"] is False
    assert snippet["securityContext"] == pod_spec["securityContext"]
    assert all(volume in pod_spec["volumes"] for volume in snippet["volumes"])
    assert {volume["name"] for volume in snippet["volumes"]} == {"agent-tmp", "kube-api-access"}

"""The Go sidecar's HTTP task API (`agent.server.seictl`): contract, controller session, authentication, validation.

Every response is validated against `docs/api/seictl-compat.yaml` with openapi-core. The controller session runs the
real `seictl serve` console script over real HTTP; the rest runs the `serve` process (`serve_runtime`) in-process on
a port the OS picks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from agent.engine import Engine
from agent.models import Reason, Task, TaskResult, TaskStatus
from agent.models.settings import AgentSettings
from agent.server.frontdoor import serve_runtime
from agent.server.seictl import MAX_BODY_BYTES, RequestRefused, parse_task_request, task_result
from agent.store import SqliteStore
from agent.tasks import default_registry

CONTRACT_PATH = Path(__file__).resolve().parents[2] / "docs" / "api" / "seictl-compat.yaml"
ID_A = "0b8f4f0e-5d1c-4a7e-9c53-1f6f0b1f2a01"
ID_B = "0b8f4f0e-5d1c-4a7e-9c53-1f6f0b1f2a02"
ID_C = "0b8f4f0e-5d1c-4a7e-9c53-1f6f0b1f2a03"
PATCH = {"files": {"config.toml": {"moniker": "seictl-compat"}}}
WAIT_SECONDS = 20.0


@pytest.fixture(scope="module")
def contract() -> OpenAPI:
    return OpenAPI.from_file_path(str(CONTRACT_PATH))


class Client:
    """Real HTTP to the agent; every answer is checked against the contract before the test sees it."""

    def __init__(self, base_url: str, contract: OpenAPI, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.contract = contract
        self.session = aiohttp.ClientSession(base_url=base_url, headers=headers or {})

    async def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, check: bool = True
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self.session.request(method, path, data=data, headers=headers) as response:
            payload = await response.read()
            status, content_type = response.status, response.content_type
            response_headers = dict(response.headers)
        if check:
            self._validate(method, path, data, status, payload, content_type, response_headers)
        if content_type == "application/json":
            assert payload.endswith(b"\n"), "JSON bodies end with a newline, as the original frames them"
            return status, json.loads(payload)
        return status, payload.decode()

    def _validate(
        self,
        method: str,
        path: str,
        data: bytes | None,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str],
    ) -> None:
        route, _, query = path.partition("?")
        args = dict(part.split("=", 1) for part in query.split("&") if part)
        request = MockRequest(
            "http://localhost:7777",
            method.lower(),
            route,
            args=args,
            data=data,
            content_type="application/json" if data is not None else None,
        )
        response = MockResponse(payload, status_code=status, headers=headers, content_type=content_type or None)
        self.contract.validate_response(request, response)

    async def wait_terminal(self, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            status, body = await self.call("GET", f"/v0/tasks/{task_id}")
            assert status == 200, body
            if body["status"] != "running":
                return dict(body)
            assert time.monotonic() < deadline, f"task {task_id} still running after {WAIT_SECONDS}s: {body}"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.session.close()


class InProcessAgent:
    """The `serve` process (`serve_runtime`, as `nodetask-agent serve` builds it) on the test's event loop."""

    def __init__(self, settings: AgentSettings) -> None:
        self.runtime, self.door = serve_runtime(settings.model_copy(update={"shutdown_grace": 2.0}), host="127.0.0.1")
        self.task: asyncio.Task[int] | None = None

    async def start(self) -> str:
        self.task = asyncio.create_task(self.runtime.run())
        started = asyncio.create_task(self.runtime.serving.wait())
        await asyncio.wait({started, self.task}, timeout=WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        assert self.runtime.serving.is_set(), "serve() did not start listening"
        assert self.door.server is not None
        return str(self.door.server.url)

    async def close(self) -> int:
        self.runtime.stop_flag.set()
        assert self.task is not None
        return await asyncio.wait_for(self.task, WAIT_SECONDS)


def _settings(home: Path, **changes: Any) -> AgentSettings:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text('# the node\nmoniker = "node-0"\n')
    # Port 0: the OS picks a free port for the in-process server (the variable itself refuses 0).
    return AgentSettings(home=home, **changes).model_copy(update={"http_port": 0})


@pytest.fixture
async def agent(tmp_path: Path, contract: OpenAPI) -> AsyncIterator[Client]:
    running = InProcessAgent(_settings(tmp_path / "home"))
    client = Client(await running.start(), contract)
    try:
        yield client
    finally:
        await client.close()
        await running.close()


# ---------------------------------------------------------------------------------------------- contract, per route


async def test_probe_routes_answer_with_empty_bodies_and_follow_the_readiness_gate(agent: Client) -> None:
    for path in ("/v0/healthz", "/v0/startupz"):
        assert await agent.call("GET", path) == (503, "")
    assert await agent.call("GET", "/v0/livez") == (200, "")
    status, body = await agent.call("POST", "/v0/tasks", {"id": ID_A, "type": "mark-ready"})
    assert (status, body) == (201, {"id": ID_A})
    assert (await agent.wait_terminal(ID_A))["status"] == "completed"
    for path in ("/v0/healthz", "/v0/startupz"):
        assert await agent.call("GET", path) == (200, "")
    status, body = await agent.call("GET", "/v0/status")
    assert status == 200 and body["status"] == "Ready"


async def test_metrics_route_serves_prometheus_text_with_the_submission(agent: Client) -> None:
    await agent.call("POST", "/v0/tasks", {"id": ID_A, "type": "mark-ready"})
    await agent.wait_terminal(ID_A)
    status, text = await agent.call("GET", "/v0/metrics")
    assert status == 200
    assert 'nodetask_submissions_total{type="mark-ready"} 1.0' in text


async def test_node_id_route_reads_the_node_key_and_fails_with_the_originals_500_without_it(agent: Client) -> None:
    status, body = await agent.call("GET", "/v0/node-id")
    assert (status, body) == (500, {"error": "node_key.json not found — generate-identity may not have run yet"})
    await agent.call(
        "POST", "/v0/tasks", {"id": ID_A, "type": "generate-identity", "params": {"chainId": "t-1", "moniker": "m"}}
    )
    finished = await agent.wait_terminal(ID_A)
    assert finished["status"] == "completed", finished
    status, body = await agent.call("GET", "/v0/node-id")
    assert status == 200 and body == {"nodeId": finished["result"]["nodeId"]}


async def test_task_results_have_the_original_shape_and_status_vocabulary(agent: Client) -> None:
    await agent.call("POST", "/v0/tasks", {"id": ID_A, "type": "config-patch", "params": PATCH})
    finished = await agent.wait_terminal(ID_A)
    assert set(finished) == {"id", "type", "status", "run", "params", "result", "submittedAt", "completedAt"}
    assert finished["status"] == "completed" and finished["run"] == 1 and finished["params"] == PATCH
    status, listed = await agent.call("GET", "/v0/tasks")
    assert status == 200 and [task["id"] for task in listed] == [ID_A]


async def test_unknown_and_malformed_ids_are_404_task_not_found(agent: Client) -> None:
    assert await agent.call("GET", f"/v0/tasks/{ID_B}") == (404, {"error": "task not found"})
    assert await agent.call("GET", "/v0/tasks/not-a-uuid") == (404, {"error": "task not found"})
    assert await agent.call("DELETE", f"/v0/tasks/{ID_B}") == (404, {"error": "task not found"})


async def test_delete_cancels_a_running_task_and_forgets_it(agent: Client, tmp_path: Path) -> None:
    # await-condition on an RPC nobody serves keeps running until deleted (port 9: discard, refused at once).
    params = {"condition": "height", "targetHeight": 10, "rpcEndpoint": "http://127.0.0.1:9"}
    assert (await agent.call("POST", "/v0/tasks", {"id": ID_A, "type": "await-condition", "params": params}))[0] == 201
    status, body = await agent.call("GET", f"/v0/tasks/{ID_A}")
    assert status == 200 and body["status"] == "running"
    assert await agent.call("DELETE", f"/v0/tasks/{ID_A}") == (204, "")
    assert await agent.call("GET", f"/v0/tasks/{ID_A}") == (404, {"error": "task not found"})
    store = SqliteStore(tmp_path / "home" / "nodetask-agent.db")
    try:
        assert store.get(ID_A) is None, "a deleted task is never resurrected by its stopped run"
    finally:
        store.close()


async def test_delete_refuses_a_task_that_belongs_to_a_nodetask(tmp_path: Path, contract: OpenAPI) -> None:
    settings = _settings(tmp_path / "home")
    store = SqliteStore(settings.store_path)
    engine = Engine(default_registry(), store, settings)
    from agent.models import ResourceRef

    await engine.submit(Task(id=ID_A, type="mark-ready", source=ResourceRef(namespace="sei", name="ready", uid="u")))
    await engine.wait(ID_A, timeout=WAIT_SECONDS)
    await engine.shutdown()
    store.close()
    running = InProcessAgent(settings)
    client = Client(await running.start(), contract)
    try:
        status, body = await client.call("DELETE", f"/v0/tasks/{ID_A}")
        assert status == 409 and "NodeTask sei/ready" in body["error"]
        assert (await client.call("GET", f"/v0/tasks/{ID_A}"))[0] == 200
    finally:
        await client.close()
        await running.close()


# ------------------------------------------------------------------------------------------------- request checks


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid request body"),
        (b"[]", "invalid request body: expected a JSON object"),
        (
            b'{"type": "mark-ready", "priority": 1}',
            "invalid request body: unknown field 'priority' (allowed: id, type, params)",
        ),
        (b'{"params": {}}', "type is required"),
        (b'{"type": ""}', "type is required"),
        (b'{"type": "no-such-task"}', "unknown task type: no-such-task"),
        (b'{"type": "mark-ready", "id": "nope"}', 'task ID must be a valid UUID: "nope"'),
        (b'{"type": "mark-ready", "params": []}', "invalid request body: params must be a JSON object"),
        (
            b'{"type": "config-patch", "params": {"files": {"config.toml": {}}, "bogus": 1}}',
            "invalid params for config-patch: params.bogus: unknown field",
        ),
        (
            b'{"type": "generate-identity", "params": {"moniker": "m"}}',
            "invalid params for generate-identity: params.chainId: required field is missing",
        ),
    ],
    ids=[
        "not-json",
        "not-object",
        "unknown-field",
        "no-type",
        "empty-type",
        "unknown-type",
        "bad-id",
        "params-list",
        "unknown-param",
        "missing-param",
    ],
)
async def test_bad_requests_are_400_naming_the_problem_and_store_nothing(
    agent: Client, body: bytes, message: str
) -> None:
    assert await agent.call("POST", "/v0/tasks", raw=body, check=False) == (400, {"error": message})
    assert await agent.call("GET", "/v0/tasks") == (200, [])


async def test_request_bodies_over_the_bound_are_refused(agent: Client) -> None:
    filler = "x" * MAX_BODY_BYTES
    raw = json.dumps({"type": "config-patch", "params": {"files": {"config.toml": {"moniker": filler}}}}).encode()
    status, body = await agent.call("POST", "/v0/tasks", raw=raw, check=False)
    assert status == 400 and body["error"] == f"invalid request body: larger than {MAX_BODY_BYTES} bytes"


async def test_without_the_mode_the_mutating_routes_do_not_exist(tmp_path: Path) -> None:
    from agent.server import AgentMetrics, AgentServer

    settings = _settings(tmp_path / "home")
    store = SqliteStore(settings.store_path)
    engine = Engine(default_registry(), store, settings)
    server = AgentServer(engine, AgentMetrics(), host="127.0.0.1", port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url) as session:
            async with session.post("/v0/tasks", json={"type": "mark-ready"}) as response:
                assert response.status == 405
            async with session.delete(f"/v0/tasks/{ID_A}") as response:
                assert response.status == 405
            async with session.get("/v0/healthz") as response:
                assert response.status == 404
        assert store.list(10) == []
    finally:
        await server.stop()
        await engine.shutdown()
        store.close()


# ------------------------------------------------------------------------------------------------ authentication


@pytest.fixture
async def guarded(tmp_path: Path, contract: OpenAPI) -> AsyncIterator[tuple[str, InProcessAgent]]:
    running = InProcessAgent(_settings(tmp_path / "home", authn_mode="trusted-header"))
    url = await running.start()
    try:
        yield url, running
    finally:
        await running.close()


AUTH_CASES = {
    "absent": ([], 401, "missing X-Remote-User header", "missing_header"),
    "duplicate": (
        [("X-Remote-User", "a"), ("X-Remote-User", "b")],
        401,
        "expected exactly one X-Remote-User header — proxy must overwrite, not append",
        "duplicate_header",
    ),
    "empty": ([("X-Remote-User", " ")], 401, "empty X-Remote-User header", "empty_header"),
    "present": ([("X-Remote-User", "system:serviceaccount:sei:controller")], 200, None, None),
}


@pytest.mark.parametrize("case", list(AUTH_CASES))
@pytest.mark.parametrize("path", ["/v0/tasks", "/v0/status", "/v0/node-id", "/nodetask/v0/tasks", "/no/such/path"])
async def test_trusted_header_rule_on_guarded_paths(guarded: tuple[str, InProcessAgent], case: str, path: str) -> None:
    url, _ = guarded
    headers, expected, message, reason = AUTH_CASES[case]
    async with aiohttp.ClientSession(base_url=url) as session:
        async with session.get(path, headers=aiohttp.typedefs.CIMultiDict(headers)) as response:
            body = await response.read()
            status = response.status
        async with session.get("/v0/metrics") as response:
            metrics = await response.text()
    if expected == 401:
        assert status == 401, "authentication runs before routing: even an unknown path is 401"
        assert json.loads(body) == {"error": message}
        assert f'nodetask_http_authn_rejections_total{{reason="{reason}"}} 1.0' in metrics
    else:
        assert status != 401
        assert "nodetask_http_authn_rejections_total{" not in metrics


@pytest.mark.parametrize("path", ["/v0/healthz", "/v0/startupz", "/v0/livez", "/v0/metrics", "/healthz", "/livez"])
async def test_probe_and_metrics_paths_bypass_authentication(guarded: tuple[str, InProcessAgent], path: str) -> None:
    url, _ = guarded
    async with aiohttp.ClientSession(base_url=url) as session, session.get(path) as response:
        assert response.status in (200, 503)


async def test_trusted_header_mode_listens_on_loopback_only(guarded: tuple[str, InProcessAgent]) -> None:
    _, running = guarded
    assert running.door.server is not None and running.door.server.host == "127.0.0.1"


# ------------------------------------------------------------------------------------------ mappings and rendering


@pytest.mark.parametrize(
    ("original", "expected_type", "expected_params"),
    [
        (
            {
                "type": "assemble-and-upload-genesis",
                "params": {"accountBalance": "1usei", "namespace": "sei", "nodes": [{"name": "v0"}]},
            },
            "assemble-and-upload-genesis",
            {"accountBalance": "1usei", "nodes": [{"name": "v0"}]},
        ),
        ({"type": "snapshot-upload"}, "snapshot-upload", {"intervalSeconds": 7200}),
        ({"type": "snapshot-upload-once"}, "snapshot-upload-once", None),
        ({"type": "mark-ready", "params": {}}, "mark-ready", None),
    ],
    ids=["assemble-drops-namespace", "upload-loops-every-interval", "upload-once", "identity"],
)
def test_original_task_types_map_onto_ours(
    tmp_path: Path, original: dict[str, Any], expected_type: str, expected_params: dict[str, Any] | None
) -> None:
    # buckets and chain ID from the settings, as the Go sidecar's pods set them (the tasks need them: prechecks)
    settings = AgentSettings(
        home=tmp_path,
        snapshot_upload_interval_seconds=7200,
        genesis_bucket="genesis",
        snapshot_bucket="snapshots",
        chain_id="test-1",
    )
    store = SqliteStore(tmp_path / "store.db")
    try:
        task = parse_task_request(json.dumps(original).encode(), settings, Engine(default_registry(), store, settings))
    finally:
        store.close()
    assert (task.type, task.params) == (expected_type, expected_params)


@pytest.mark.parametrize(
    ("status", "reason", "error", "hint", "expected"),
    [
        (TaskStatus.RUNNING, "", "", "", ("running", None)),
        (TaskStatus.COMPLETED, "", "", "", ("completed", None)),
        (
            TaskStatus.FAILED,
            Reason.TASK_FAILED,
            "disk full",
            "free space",
            ("failed", "TaskFailed: disk full [hint: free space]"),
        ),
        (
            TaskStatus.CANCELLED,
            Reason.CANCELLED,
            "cancelled on request",
            "",
            ("failed", "Cancelled: cancelled on request"),
        ),
    ],
)
def test_statuses_map_onto_the_original_three(
    status: TaskStatus, reason: str, error: str, hint: str, expected: tuple[str, str | None]
) -> None:
    row = TaskResult(id=ID_A, type="mark-ready", status=status, reason=reason, error=error, hint=hint)
    body = task_result(row)
    assert (body["status"], body.get("error")) == expected


def test_secret_looking_values_are_masked_in_task_results() -> None:
    row = TaskResult(id=ID_A, type="x", status=TaskStatus.COMPLETED, result={"mnemonic": "a b c", "nodeId": "n"})
    assert task_result(row)["result"] == {"mnemonic": "[redacted]", "nodeId": "n"}


def test_parse_refuses_an_unknown_type_with_the_original_message(tmp_path: Path) -> None:
    settings = AgentSettings(home=tmp_path)
    store = SqliteStore(tmp_path / "store.db")
    try:
        with pytest.raises(RequestRefused, match=r"^unknown task type: nope$"):
            parse_task_request(b'{"type": "nope"}', settings, Engine(default_registry(), store, settings))
    finally:
        store.close()


# ------------------------------------------------------------------------- the real `seictl serve`, as controllers do


class SeictlProcess:
    """`seictl serve` as a child process on a port it picked itself (`--port 0`, read back from its log)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.log_path = home.parent / "seictl.log"
        self.log = self.log_path.open("wb")
        seictl = Path(sys.executable).with_name("seictl")
        self.process = subprocess.Popen(
            [str(seictl), "--home", str(home), "serve", "--port", "0"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )

    def url(self) -> str:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            match = re.search(rb"serving the task API on [\d.]+:(\d+)", self.log_path.read_bytes())
            if match:
                return f"http://127.0.0.1:{int(match.group(1))}"
            assert self.process.poll() is None, self.log_path.read_text()
            time.sleep(0.05)
        raise AssertionError(f"seictl serve did not report its port: {self.log_path.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self.log.close()


@pytest.fixture
def seictl(tmp_path: Path) -> Iterator[tuple[SeictlProcess, Path]]:
    home = tmp_path / "sei"
    _settings(home)
    env = {"SEI_HOME": "", "SEI_SIDECAR_AUTHN_MODE": "", "NODETASK_DB": "", "HOSTNAME": "node-0-0"}
    process = SeictlProcess(home, env)
    try:
        yield process, home
    finally:
        process.stop()


async def test_scripted_controller_session_against_seictl_serve(
    seictl: tuple[SeictlProcess, Path], contract: OpenAPI
) -> None:
    process, home = seictl
    client = Client(process.url(), contract)
    try:
        # The node parks at the gate until mark-ready.
        assert await client.call("GET", "/v0/healthz") == (503, "")
        # A deterministic ID: submitted, polled to completion.
        assert await client.call("POST", "/v0/tasks", {"id": ID_A, "type": "config-patch", "params": PATCH}) == (
            201,
            {"id": ID_A},
        )
        first = await client.wait_terminal(ID_A)
        assert (first["status"], first["run"]) == ("completed", 1)
        assert 'moniker = "seictl-compat"' in (home / "config" / "config.toml").read_text()
        # The same ID again (a controller that lost the answer): 201, nothing runs again.
        assert await client.call("POST", "/v0/tasks", {"id": ID_A, "type": "config-patch", "params": PATCH}) == (
            201,
            {"id": ID_A},
        )
        assert (await client.call("GET", f"/v0/tasks/{ID_A}"))[1] == first
        # A task that fails (a broken app.toml), then the same ID after the operator fixed the file: run 2.
        app_toml = home / "config" / "app.toml"
        app_toml.write_text("this is = = not toml\n")
        failing = {"id": ID_B, "type": "config-patch", "params": {"files": {"app.toml": {"halt-height": 0}}}}
        assert (await client.call("POST", "/v0/tasks", failing))[0] == 201
        failed = await client.wait_terminal(ID_B)
        assert failed["status"] == "failed" and failed["run"] == 1 and "app.toml" in failed["error"]
        app_toml.write_text("# fixed\nhalt-height = 5\n")
        assert (await client.call("POST", "/v0/tasks", failing))[0] == 201
        rerun = await client.wait_terminal(ID_B)
        assert (rerun["status"], rerun["run"]) == ("completed", 2)
        assert "halt-height = 0" in app_toml.read_text()
        # Readiness: mark-ready opens the gate.
        assert (await client.call("POST", "/v0/tasks", {"id": ID_C, "type": "mark-ready"}))[0] == 201
        assert (await client.wait_terminal(ID_C))["status"] == "completed"
        assert await client.call("GET", "/v0/healthz") == (200, "")
        status, listed = await client.call("GET", "/v0/tasks")
        assert status == 200 and [task["id"] for task in listed] == [ID_C, ID_B, ID_A]
    finally:
        await client.close()
    assert process.stop() == 0
    # The same store, the original's file name: `nodetask-agent tasks` sees what the controller submitted.
    assert (home / "sidecar.db").exists()
    shown = subprocess.run(
        [
            str(Path(sys.executable).with_name("nodetask-agent")),
            "tasks",
            "list",
            "--db",
            str(home / "sidecar.db"),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=True,
    )
    assert {row["id"] for row in json.loads(shown.stdout)} == {ID_A, ID_B, ID_C}


def test_seictl_serve_refuses_an_unknown_authentication_mode(tmp_path: Path) -> None:
    seictl = Path(sys.executable).with_name("seictl")
    done = subprocess.run(
        [str(seictl), "--home", str(tmp_path), "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        env={**os.environ, "SEI_SIDECAR_AUTHN_MODE": "mtls"},
    )
    # The original's text byte for byte after Go's log time stamp, and its exit code (log.Fatal: 1).
    assert done.returncode == 1
    assert re.fullmatch(
        r'\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} SEI_SIDECAR_AUTHN_MODE="mtls" is not recognized '
        r'\(allowed: "", "unauthenticated", "trusted-header"\)\n',
        done.stderr,
    ), done.stderr

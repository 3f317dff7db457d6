"""`seictl serve` as the controller runs it: the sidecar container's environment, its calls, and a Go store taken over.

The controller (sei-k8s-controller, seictl v0.0.68 client) sets `SEI_CHAIN_ID`, `SEI_SIDECAR_PORT`, `SEI_HOME`, `HOME`,
the four bucket/region variables, `SEI_SIDECAR_AUTHN_MODE=trusted-header`, the keyring variables and `HOSTNAME`
(the pod name `<node>-0`), and **no** `POD_NAME` / `POD_NAMESPACE`. These tests run the real `seictl` console script
with exactly that environment over real HTTP, with the bodies the client's builders send.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openapi_core import OpenAPI

from agent.models import TaskResult, TaskStatus
from agent.models.settings import AgentSettings
from agent.server.seictl import go_json, task_result
from agent.store import SqliteStore
from agent.tasks.gentx import external_ipv4
from tests.chain.test_keyring import write_keyring
from tests.server.test_seictl_api import CONTRACT_PATH, Client, InProcessAgent, SeictlProcess
from tests.store.test_migrations import build_seed_file

CHAIN_ID = "arctic-dropin"
NODE = "val-a"
PASSPHRASE = "operator keyring passphrase 42"
ADMIN_SECRET = bytes.fromhex("5a" * 32)
IDENTITY_ID = "8a4b3c2d-0000-5000-8000-000000000001"
GENTX_ID = "8a4b3c2d-0000-5000-8000-000000000002"
VOTE_ID = "8a4b3c2d-0000-5000-8000-000000000003"
UNKNOWN_KEY_ID = "8a4b3c2d-0000-5000-8000-000000000004"
LOOP_ID = "0e5c5a8a-0000-4000-8000-0000000000ff"
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def contract() -> OpenAPI:
    return OpenAPI.from_file_path(str(CONTRACT_PATH))


def controller_environment(home: Path, rpc_port: int) -> dict[str, str]:
    """The sidecar container's env as the controller renders it (values for a test; RPC pointed at a refused port)."""
    return {
        "SEI_CHAIN_ID": CHAIN_ID,
        "SEI_SIDECAR_PORT": "7777",
        "SEI_HOME": str(home),
        "HOME": str(home.parent / "nonroot"),
        "SEI_GENESIS_BUCKET": "genesis-artifacts",
        "SEI_GENESIS_REGION": "eu-central-1",
        "SEI_SNAPSHOT_BUCKET": "state-sync",
        "SEI_SNAPSHOT_REGION": "eu-central-1",
        "SEI_SIDECAR_AUTHN_MODE": "trusted-header",
        "SEI_KEYRING_BACKEND": "file",
        "SEI_KEYRING_DIR": str(home / "keyring-file"),
        "SEI_KEYRING_PASSPHRASE": PASSPHRASE,
        "HOSTNAME": f"{NODE}-0",
        # Not set by the controller: emptied so that the test runner's own environment cannot leak in.
        "POD_NAME": "",
        "POD_NAMESPACE": "",
        "POD_UID": "",
        "NODETASK_DB": "",
        "SEI_RPC_ENDPOINT": f"http://127.0.0.1:{rpc_port}",
    }


@pytest.fixture
def controller_pod(tmp_path: Path, refused_port: Callable[..., int]) -> Iterator[tuple[SeictlProcess, Path]]:
    home = tmp_path / "sei"
    (home / "config").mkdir(parents=True)
    write_keyring(home / "keyring-file", PASSPHRASE, {"node_admin": ADMIN_SECRET})  # the mounted operator Secret
    process = SeictlProcess(home, controller_environment(home, refused_port()))
    try:
        yield process, home
    finally:
        process.stop()


async def _submit(client: Client, task_id: str, task_type: str, params: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"id": task_id, "type": task_type}
    if params is not None:
        body["params"] = params
    assert await client.call("POST", "/v0/tasks", body) == (201, {"id": task_id})


@pytest.mark.slow
async def test_the_controllers_calls_succeed_under_its_pod_environment(
    controller_pod: tuple[SeictlProcess, Path], contract: OpenAPI
) -> None:
    process, home = controller_pod
    client = Client(process.url(), contract, headers={"X-Remote-User": "system:serviceaccount:sei:controller"})
    try:
        # GetNodeID before generate-identity: the original's JSON error.
        async with client.session.get("/v0/node-id") as response:
            raw = await response.read()
            assert (response.status, response.headers["Content-Type"]) == (500, "application/json")
        assert raw == '{"error":"node_key.json not found — generate-identity may not have run yet"}\n'.encode()

        await _submit(client, IDENTITY_ID, "generate-identity", {"chainId": CHAIN_ID, "moniker": NODE})
        assert (await client.wait_terminal(IDENTITY_ID))["status"] == "completed"
        status, node = await client.call("GET", "/v0/node-id")
        assert status == 200

        # generate-gentx exactly as the client's builder sends it: no host field; the pod variables are absent.
        gentx = {"chainId": CHAIN_ID, "stakingAmount": "1000000usei", "accountBalance": "10000000usei"}
        await _submit(client, GENTX_ID, "generate-gentx", gentx)
        done = await client.wait_terminal(GENTX_ID)
        assert done["status"] == "completed", done
        # No ServiceAccount mount here, so the original's own choice: this machine's first IPv4 interface address.
        assert done["result"]["memo"] == f"{node['nodeId']}@{external_ipv4()}:26656"

        # gov-vote with the operator keyring's key: the key is found (the task gets as far as the node's RPC, which
        # this test refuses), and a name the keyring lacks fails naming the key.
        vote = {"chainId": CHAIN_ID, "keyName": "node_admin", "proposalId": 3, "option": "yes"}
        vote |= {"fees": "4000usei", "gas": 200000}
        await _submit(client, VOTE_ID, "gov-vote", vote)
        failed = await client.wait_terminal(VOTE_ID)
        assert failed["status"] == "failed" and "keyring" not in failed["error"].lower(), failed
        await _submit(client, UNKNOWN_KEY_ID, "gov-vote", {**vote, "keyName": "node_operator"})
        missing = await client.wait_terminal(UNKNOWN_KEY_ID)
        assert missing["error"].startswith("KeyNotFound: keyring entry 'node_operator': not found"), missing
        assert "node_admin" in missing["error"]  # the keys the keyring does have

        # The passphrase left the process environment once read, and appears in no log line or task row.
        environ = Path(f"/proc/{process.process.pid}/environ").read_bytes()
        assert PASSPHRASE.encode() not in environ
        _, listed = await client.call("GET", "/v0/tasks")
        assert PASSPHRASE not in json.dumps(listed)
    finally:
        await client.close()
    assert process.stop() == 0
    assert PASSPHRASE.encode() not in process.log_path.read_bytes()
    assert PASSPHRASE.encode() not in (home / "sidecar.db").read_bytes()


# ------------------------------------------------------------------------------------------ a Go store taken over


def _go_upload_loop(raw: Any) -> None:
    """What the Go sidecar leaves for the controller's SnapshotUploadTask: a `running` row, params omitted."""
    raw.execute(
        "INSERT INTO task_results (id, type, status, params, error, submitted_at) "
        "VALUES (?, 'snapshot-upload', 'running', 'null', '', '2026-11-30T08:00:00.5Z')",
        (LOOP_ID,),
    )


@pytest.mark.slow
async def test_a_go_upload_loop_resumes_as_a_loop_under_seictl_serve(
    tmp_path: Path, contract: OpenAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "sei"
    (home / "config").mkdir(parents=True)
    build_seed_file(home / "sidecar.db", 5, extra=_go_upload_loop)  # HEAD's schema, as the Go sidecar left it
    monkeypatch.setenv("SEI_SNAPSHOT_UPLOAD_INTERVAL", "1s")  # the pod's loop period, which the Go loop used
    settings = AgentSettings(
        home=home,
        db_path=home / "sidecar.db",
        chain_id=CHAIN_ID,
        snapshot_bucket="state-sync",
        snapshot_region="eu-central-1",
        seictl_api=True,
    ).model_copy(update={"http_port": 0})
    agent = InProcessAgent(settings)
    client = Client(await agent.start(), contract)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:  # the loop's third iteration: it went round twice and is still running
            async with client.session.get(f"/nodetask/v0/tasks/{LOOP_ID}") as response:
                own = await response.json()
            message = str((own.get("progress") or {}).get("message", ""))
            if message.startswith("iteration 3 "):
                break
            assert time.monotonic() < deadline, own
            await asyncio.sleep(0.1)
        status, row = await client.call("GET", f"/v0/tasks/{LOOP_ID}")
        assert status == 200 and row["status"] == "running" and row["params"] == {"intervalSeconds": 1}
        assert "next in 1s" in message
    finally:
        await client.close()
        await agent.close()
    with SqliteStore(home / "sidecar.db") as store:
        stopped = store.get(LOOP_ID)
    assert stopped is not None and stopped.status == "running"  # a stop leaves it to resume again, as the original


@pytest.mark.parametrize("interval", ["", "90m"])
def test_the_migration_gives_a_go_loop_the_pods_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interval: str
) -> None:
    monkeypatch.setenv("SEI_SNAPSHOT_UPLOAD_INTERVAL", interval)
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 4, extra=_go_upload_loop)
    with SqliteStore(path) as store:
        row = store.get(LOOP_ID)
    assert row is not None and row.params == {"intervalSeconds": 5400 if interval else 168 * 3600}


def test_task_results_are_the_bytes_gos_encoder_writes() -> None:
    row = TaskResult(
        id=LOOP_ID,
        type="config-patch",
        status=TaskStatus.COMPLETED,
        params={"files": {"config.toml": {"p2p": {"seeds": "ñ<a&b>"}, "moniker": "m"}}},
        submitted_at=datetime(2026, 11, 30, 8, 0, 0, 120000, tzinfo=UTC),
        completed_at=datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC),
    )
    # Struct fields in the original's order, map keys sorted, UTF-8 kept, HTML characters escaped, trimmed times.
    assert go_json(task_result(row)) == (
        f'{{"id":"{LOOP_ID}","type":"config-patch","status":"completed","run":1,'
        '"params":{"files":{"config.toml":{"moniker":"m","p2p":{"seeds":"ñ\\u003ca\\u0026b\\u003e"}}}},'
        '"submittedAt":"2026-11-30T08:00:00.12Z","completedAt":"2026-11-30T08:00:01Z"}\n'
    )

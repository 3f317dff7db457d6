"""Hostile input (issue 13): each attack that once worked, replayed against the real parts, and what the agent does now.

Real SQLite stores, moto's S3 server, real subprocesses, the real HTTP server; the kube-tier attacks (deep params on
a real kube-apiserver) are in `test_hostile_kube.py`. The table in docs/reliability.md ("Hostile input") lists every
attack with the test that replays it.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.chain.rpc import RpcClient, RpcError
from agent.cli import local
from agent.engine import Engine, check_task
from agent.io.archive import extract_stream
from agent.io.files import clean_temporary_files
from agent.models import ParamsInvalid, Reason, RetryPolicy, Task, TaskError, TaskStatus, TaskType
from agent.models.limits import MAX_PARAMS_DEPTH, allow_deep_json
from agent.models.params import TaskParams
from agent.models.redaction import redact, redact_text, scrub_output
from agent.models.settings import AgentSettings
from agent.server import AgentMetrics, AgentServer, public_task
from agent.store import SqliteStore
from agent.tasks import HandlerRegistry, HandlerSpec, TaskContext, default_registry
from tests.fixtures.s3 import member, tar_of

TASK_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
OTHER_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca428"

# What a consensus key file looks like (random bytes: nothing here is a real key).
PRIVATE_KEY_B64 = base64.b64encode(os.urandom(64)).decode()
PUBLIC_KEY_B64 = base64.b64encode(os.urandom(32)).decode()
KEY_FILE = json.dumps(
    {
        "address": "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678",
        "pub_key": {"type": "tendermint/PubKeyEd25519", "value": PUBLIC_KEY_B64},
        "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": PRIVATE_KEY_B64},
    },
    indent=2,
)
MNEMONIC = (
    "abandon ability able about above absent absorb abstract absurd abuse access accident "
    "account accuse achieve acid acoustic acquire across act action actor actress actual"
)
RAW_HEX_KEY = os.urandom(32).hex()
SECRETS = (PRIVATE_KEY_B64, MNEMONIC.split()[5] + " " + MNEMONIC.split()[6], RAW_HEX_KEY)

# The attacker's "seid": prints the validator key to stdout and stderr, mnemonic and raw key too, and fails.
THIEF = textwrap.dedent(
    """\
    #!{python}
    import sys
    if "--help" in sys.argv:
        print("--chain-id string")
        sys.exit(0)
    key = open({key_path!r}).read()
    print(key)
    sys.stderr.write("stealing: " + key + "\\nmnemonic: {mnemonic}\\nraw: {raw}\\n")
    sys.exit(1)
    """
)


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        dumped = text if isinstance(text, str) else json.dumps(text, default=str)
        for secret in SECRETS:
            assert secret not in dumped, f"secret material leaked into: {dumped[:300]}"


def engine_for(settings: AgentSettings, registry: HandlerRegistry | None = None) -> tuple[Engine, SqliteStore]:
    store = SqliteStore(settings.store_path)
    return Engine(registry or default_registry(), store, settings), store


@pytest.fixture
async def engine(s3_settings: AgentSettings) -> AsyncIterator[Engine]:
    s3_settings.home.mkdir(parents=True, exist_ok=True)
    running, store = engine_for(s3_settings)
    yield running
    await running.shutdown(grace=5)
    store.close()


# ---------------------------------------------------------------------- 1. code execution and key theft


def snapshot_with_executable(script: str) -> bytes:
    """A snapshot archive as the attacker uploads it: a normal-looking height directory holding a 0755 script."""
    return gzip.compress(
        tar_of(
            [
                (member("500", b"5", mode=0o755), None),
                (member("500/seid", mode=0o755), script.encode()),
                (member("500/1", b"5", mode=0o755), None),
                (member("500/1/0", mode=0o644), b"chunk"),
                (member("metadata.db", b"5", mode=0o755), None),
                (member("metadata.db/CURRENT", mode=0o644), b"MANIFEST-000001\n"),
            ]
        )
    )


async def test_a_restored_script_can_never_be_run_by_export_state(
    engine: Engine, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, tmp_path: Path
) -> None:
    key_path = s3_settings.home / "config" / "priv_validator_key.json"
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_text(KEY_FILE)
    script = THIEF.format(python=sys.executable, key_path=str(key_path), mnemonic=MNEMONIC, raw=RAW_HEX_KEY)
    s3_admin.put_object(Bucket=s3_bucket, Key="old-chain/state-sync/500.tar.gz", Body=snapshot_with_executable(script))
    s3_admin.put_object(Bucket=s3_bucket, Key="old-chain/state-sync/latest.txt", Body=b"500")

    restore = Task(id=TASK_ID, type=TaskType.SNAPSHOT_RESTORE, params={"chainId": "old-chain"})
    restored = await engine.wait(await engine.submit(restore))
    assert restored.status is TaskStatus.COMPLETED, restored.error
    planted = s3_settings.home / "data" / "snapshots" / "500" / "seid"
    assert planted.read_text() == script
    assert planted.stat().st_mode & 0o111 == 0, "extraction must never give execute bits"
    assert not os.access(planted, os.X_OK)

    # The attack as it was: the task names the program to run.
    export = Task(id=OTHER_ID, type=TaskType.EXPORT_STATE, params={"chainId": "old-chain", "seidBinary": str(planted)})
    refused = await engine.wait(await engine.submit(export))
    assert refused.reason == Reason.PARAMS_INVALID
    assert "params.seidBinary" in refused.error and "agent configuration" in refused.error

    # Even an operator tricked into pointing SEI_BINARY at the restored file cannot make it run.
    tricked = s3_settings.model_copy(update={"seid_binary": str(planted)})
    other, store = engine_for(tricked.model_copy(update={"db_path": tmp_path / "tricked.db"}))
    try:
        row = await other.wait(await other.submit(Task(id=TASK_ID, type=TaskType.EXPORT_STATE, params={})))
    finally:
        await other.shutdown(grace=5)
        store.close()
    assert row.reason == "BinaryNotFound"
    assert_no_secret(row.error, row.result, public_task(row))


async def test_what_a_binary_prints_never_carries_key_material_into_the_task(
    s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, tmp_path: Path
) -> None:
    """The operator's own binary misbehaves (or was replaced): stdout and stderr full of key material."""
    key_path = s3_settings.home / "config" / "priv_validator_key.json"
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_text(KEY_FILE)
    binary = tmp_path / "bin" / "seid"
    binary.parent.mkdir()
    binary.write_text(THIEF.format(python=sys.executable, key_path=str(key_path), mnemonic=MNEMONIC, raw=RAW_HEX_KEY))
    binary.chmod(0o755)
    settings = s3_settings.model_copy(update={"seid_binary": str(binary)})
    settings.home.mkdir(parents=True, exist_ok=True)
    running, store = engine_for(settings)
    try:
        row = await running.wait(await running.submit(Task(id=TASK_ID, type=TaskType.EXPORT_STATE, params={})))
        stored = store.get(TASK_ID)
    finally:
        await running.shutdown(grace=5)
        store.close()
    assert row.reason == "ExportFailed" and "exited with status 1" in row.error
    assert "[redacted]" in row.error  # the stderr tail is there, with its secrets masked
    assert stored is not None
    assert_no_secret(row.error, row.hint, stored.error, stored.result, public_task(row))
    assert s3_admin.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    "text",
    [
        KEY_FILE,
        KEY_FILE[: len(KEY_FILE) // 2 + 40],  # cut inside the priv_key object
        f"priv_key: {PRIVATE_KEY_B64}",
        f'{{"privKey":"{PRIVATE_KEY_B64}"}}',
        f"mnemonic is {MNEMONIC} ok",
        f"seed={RAW_HEX_KEY}",
        "-----BEGIN TENDERMINT PRIVATE KEY-----\nkdf: bcrypt\n"
        + PRIVATE_KEY_B64
        + "\n-----END TENDERMINT PRIVATE KEY-----",
    ],
    ids=["key-file", "key-file-cut", "yaml-priv-key", "json-privKey", "mnemonic", "hex-seed", "armored"],
)
def test_scrub_output_masks_key_material(text: str) -> None:
    assert_no_secret(scrub_output("panic: " + text, 4096))


def test_scrub_output_is_bounded_and_keeps_the_tail() -> None:
    text = "noise\n" * 10_000 + "panic: the real cause"
    scrubbed = scrub_output(text, 200)
    assert len(scrubbed) <= 200 and scrubbed.endswith("panic: the real cause")


# ---------------------------------------------------------------------- 2. deep and huge params


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("params", "bound"),
    [
        ({"chainId": "c", "deep": nested(MAX_PARAMS_DEPTH + 1)}, "nested more than 32 levels"),
        ({"deep": nested(1000)}, "nested more than 32 levels"),
        ({"deep": nested(5000)}, "nested more than 32 levels"),
        ({"blob": "x" * (70 * 1024)}, "more than the limit of 65536 bytes"),
    ],
    ids=["depth-33", "depth-1000", "depth-5000", "70-KiB"],
)
async def test_deep_or_huge_params_fail_params_invalid_and_are_never_stored(
    engine: Engine, s3_settings: AgentSettings, params: dict[str, Any], bound: str
) -> None:
    allow_deep_json()  # what `run` and `local` do at start
    row = await engine.wait(await engine.submit(Task(id=TASK_ID, type=TaskType.MARK_READY, params=params)))
    assert (row.status, row.reason) == (TaskStatus.FAILED, Reason.PARAMS_INVALID)
    assert bound in row.error
    stored = SqliteStore(s3_settings.store_path).get(TASK_ID)
    assert stored is not None and stored.params is not None and list(stored.params) == ["$omitted"]
    assert json.dumps(public_task(stored))  # servable
    # The same submission again is the same (failed) task, not a conflict; other work goes on.
    assert await engine.submit(Task(id=TASK_ID, type=TaskType.MARK_READY, params=params)) == TASK_ID
    ok = await engine.wait(await engine.submit(Task(id=OTHER_ID, type=TaskType.MARK_READY)))
    assert ok.status is TaskStatus.COMPLETED


async def test_a_deep_row_left_in_the_store_does_not_break_the_task_list(s3_settings: AgentSettings) -> None:
    """A store written before the bound existed may hold a deep row; /v0/tasks must keep answering."""
    allow_deep_json()
    s3_settings.home.mkdir(parents=True, exist_ok=True)
    running, store = engine_for(s3_settings)
    row = await running.wait(await running.submit(Task(id=TASK_ID, type=TaskType.MARK_READY)))
    store.save(row.model_copy(update={"params": nested(940), "result": nested(940)}))
    server = AgentServer(running, AgentMetrics(), host="127.0.0.1", port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/v0/tasks") as response:
                assert response.status == 200
                body = await response.json()
            async with session.get(f"{server.url}/v0/tasks/{TASK_ID}") as response:
                assert response.status == 200
    finally:
        await server.stop()
        await running.shutdown(grace=5)
        store.close()
    served = body["tasks"][0]
    assert "nested more than 32 levels" in served["params"]["$omitted"]
    assert "nested more than 32 levels" in served["result"]["$omitted"]


def test_a_deep_manifest_in_local_mode_exits_2_naming_the_file(tmp_path: Path) -> None:
    manifest = tmp_path / "deep.yaml"
    body = "{a: " * 3000 + "1" + "}" * 3000
    manifest.write_text(
        "apiVersion: sei.io/v1alpha1\nkind: NodeTask\nmetadata: {name: deep}\n"
        f"spec:\n  targetPod: p\n  type: mark-ready\n  params: {{deep: {body}}}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    settings = AgentSettings(home=tmp_path / "home")
    code = local.main([manifest], settings, out=out, err=err)
    assert code == local.EXIT_INVALID, err.getvalue()
    assert str(manifest) in err.getvalue() and "nested more than 32 levels" in err.getvalue()
    assert not (tmp_path / "home").exists()  # nothing was written, not even the store


# ---------------------------------------------------------------------- 3. a reused task ID


@pytest.mark.parametrize(
    ("second_type", "second_params", "difference"),
    [
        (TaskType.MARK_NOT_READY, {}, "stored type 'mark-ready', submitted 'mark-not-ready'"),
        (TaskType.CONFIG_PATCH, {"nonsense": True}, "stored type"),  # even with invalid params
        (TaskType.MARK_READY, {"other": "params"}, "params differ"),
    ],
    ids=["other-type", "other-type-invalid-params", "other-params"],
)
async def test_a_reused_task_id_for_other_work_is_a_conflict(
    engine: Engine, second_type: TaskType, second_params: dict[str, Any], difference: str
) -> None:
    first = await engine.wait(await engine.submit(Task(id=TASK_ID, type=TaskType.MARK_READY, params={})))
    assert first.status is TaskStatus.COMPLETED
    with pytest.raises(TaskError) as caught:
        await engine.submit(Task(id=TASK_ID, type=second_type, params=second_params))
    assert caught.value.reason == Reason.TASK_ID_CONFLICT
    assert difference in caught.value.message and TASK_ID in caught.value.message
    assert await engine.get(TASK_ID) == first  # the stored task is untouched
    # The same work under the same ID stays an idempotent no-op.
    assert await engine.submit(Task(id=TASK_ID, type=TaskType.MARK_READY, params={})) == TASK_ID
    assert await engine.submit(Task(id=TASK_ID, type=TaskType.MARK_READY)) == TASK_ID


def test_a_reused_task_id_in_local_mode_fails_instead_of_succeeded_earlier(tmp_path: Path) -> None:
    def manifest(name: str, task_type: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"apiVersion: sei.io/v1alpha1\nkind: NodeTask\nmetadata: {{name: {name}}}\n"
            f"spec: {{targetPod: p, type: {task_type}, taskId: {TASK_ID}}}\n"
        )
        return path

    settings = AgentSettings(home=tmp_path / "home")
    settings.home.mkdir()  # local mode requires an existing home (a typo'd --home must not create one)
    first = io.StringIO()
    assert local.main([manifest("ready", "mark-ready")], settings, out=first, err=io.StringIO()) == local.EXIT_OK
    out = io.StringIO()
    code = local.main([manifest("hold", "mark-not-ready")], settings, out=out, err=io.StringIO())
    assert code == local.EXIT_FAILED, out.getvalue()
    assert "TaskIdConflict" in out.getvalue() and "earlier" not in out.getvalue()


# ---------------------------------------------------------------------- 9. lower: archives, retries, RPC, redaction


@pytest.mark.slow
def test_an_archive_of_tens_of_thousands_of_empty_files_is_refused_early(tmp_path: Path) -> None:
    data = gzip.compress(tar_of([(member(f"500/f{index}"), b"") for index in range(50_000)]))
    destination = tmp_path / "out"
    destination.mkdir()
    with pytest.raises(TaskError, match="flood of empty or tiny files") as caught:
        extract_stream(io.BytesIO(data), destination, durable=False)
    assert caught.value.reason == "ArchiveUnsafe"
    assert sum(1 for _ in destination.rglob("*")) <= 10_001  # stopped at the grace count, not at 50,000


def test_an_archive_with_more_members_than_allowed_is_refused(tmp_path: Path) -> None:
    data = gzip.compress(tar_of([(member(f"m{index}"), b"x" * 1024) for index in range(30)]))
    destination = tmp_path / "out"
    destination.mkdir()
    with pytest.raises(TaskError, match="more than 20 members"):
        extract_stream(io.BytesIO(data), destination, durable=False, max_members=20)


@pytest.mark.parametrize(
    ("policy", "valid"),
    [({"limit": 100, "backoffSeconds": 0}, True), ({"limit": 1000, "backoffSeconds": 0}, False)],
)
def test_retry_policy_is_capped_and_its_backoff_floored(policy: dict[str, Any], valid: bool) -> None:
    if not valid:
        with pytest.raises(ValueError, match="less than or equal to 100"):
            RetryPolicy.model_validate(policy)
        return
    parsed = RetryPolicy.model_validate(policy)
    assert [parsed.delay_before(run) for run in (2, 3, 4)] == [1.0, 2.0, 3.0]
    assert sum(parsed.delay_before(run) for run in range(2, 102)) > 3600  # 100 retries take over an hour


class _Failing(TaskParams):
    pass


@pytest.mark.slow
async def test_a_zero_backoff_retry_policy_cannot_storm(tmp_path: Path) -> None:
    runs: list[float] = []

    async def failing(params: _Failing, ctx: TaskContext) -> dict[str, Any]:
        runs.append(time.monotonic())
        raise TaskError("always fails", reason="Planned", retryable=True)

    settings = AgentSettings(home=tmp_path, db_path=tmp_path / "agent.db")
    registry = HandlerRegistry([HandlerSpec(TaskType.AWAIT_CONDITION, _Failing, failing)])
    running, store = engine_for(settings, registry)
    try:
        policy = RetryPolicy(limit=100, backoff_seconds=0)
        await running.submit(Task(id=TASK_ID, type=TaskType.AWAIT_CONDITION, retry=policy))
        await asyncio.sleep(2.5)
    finally:
        await running.shutdown(grace=5)
        store.close()
    assert 2 <= len(runs) <= 3  # 1 s then 2 s between runs: no storm
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(runs))


async def test_the_rpc_client_never_echoes_an_error_body(unused_tcp_port: int) -> None:
    secret_body = f'{{"error": "unauthorized", "credentials": "Bearer {PRIVATE_KEY_B64}", "password": "hunter2"}}'

    async def unauthorized(request: web.Request) -> web.Response:
        return web.Response(status=401, text=secret_body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/status", unauthorized)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        async with RpcClient(f"http://127.0.0.1:{unused_tcp_port}") as rpc:
            with pytest.raises(RpcError) as caught:
                await rpc.status()
    finally:
        await runner.cleanup()
    assert "HTTP 401 Unauthorized" in caught.value.message
    assert "hunter2" not in caught.value.message and "credentials" not in caught.value.message
    assert_no_secret(caught.value.message)


async def test_the_task_list_masks_url_passwords_signatures_and_tokens(s3_settings: AgentSettings) -> None:
    s3_settings.home.mkdir(parents=True, exist_ok=True)
    running, store = engine_for(s3_settings)
    row = await running.wait(await running.submit(Task(id=TASK_ID, type=TaskType.MARK_READY)))
    presigned = (
        "https://bucket.s3.amazonaws.com/genesis.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20261202&X-Amz-Signature=0123456789abcdef0123456789abcdef"
    )
    store.save(
        row.model_copy(
            update={
                "params": {
                    "url": "https://admin:s3cr3t-pass@genesis.example.com/genesis.json",
                    "presigned": presigned,
                    "files": {"client.toml": 'chain-id = "c"\ntoken = "tok-123456"\n'},
                    "apiKey": "ak-999",
                    "s3Key": "pacific-1/genesis.json",
                }
            }
        )
    )
    server = AgentServer(running, AgentMetrics(), host="127.0.0.1", port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/v0/tasks/{TASK_ID}") as response:
            text = await response.text()
    finally:
        await server.stop()
        await running.shutdown(grace=5)
        store.close()
    for secret in ("s3cr3t-pass", "0123456789abcdef0123456789abcdef", "AKIAEXAMPLE", "tok-123456", "ak-999"):
        assert secret not in text
    served = json.loads(text)["params"]
    assert served["s3Key"] == "pacific-1/genesis.json"  # object keys are not secrets
    assert served["url"].endswith("@genesis.example.com/genesis.json")
    assert 'chain-id = "c"' in served["files"]["client.toml"]


def test_one_redaction_function_serves_the_api_and_the_status() -> None:
    from agent.operator import status as status_module
    from agent.server import app as app_module

    assert status_module.redact is redact and app_module.redact is redact


# ---------------------------------------------------------------------- kill -9 leftovers and huge results


def test_stale_temp_files_of_the_atomic_writer_are_removed_at_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = home / "config"
    config.mkdir(parents=True)
    (config / "config.toml").write_text("moniker = 'x'\n")
    # A real kill -9 in the middle of an atomic write (what generate-identity or config-patch do).
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from pathlib import Path\n"
            "from agent.io.files import atomic_writer\n"
            "with atomic_writer(Path(sys.argv[1])) as handle:\n"
            "    handle.write(b'half'); handle.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n",
            str(config / "config.toml"),
        ],
        check=False,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL
    leftovers = [path for path in config.iterdir() if path.name != "config.toml"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".config.toml.")
    keep = [config / "config.toml", config / ".hidden.tmp", home / "data" / "x.tmp"]
    (home / "data").mkdir()
    for path in keep[1:]:
        path.write_text("not ours")

    assert clean_temporary_files(home) == leftovers
    assert not leftovers[0].exists() and all(path.exists() for path in keep)
    assert (config / "config.toml").read_text() == "moniker = 'x'\n"


def test_local_mode_removes_stale_temp_files_at_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    stale = home / "config" / ".config.toml.ab12cd34.tmp"
    stale.write_text("half written")
    manifest = tmp_path / "ready.yaml"
    manifest.write_text(
        "apiVersion: sei.io/v1alpha1\nkind: NodeTask\nmetadata: {name: r}\nspec: {targetPod: p, type: mark-ready}\n"
    )
    out = io.StringIO()
    assert local.main([manifest], AgentSettings(home=home), out=out, err=io.StringIO()) == local.EXIT_OK
    assert not stale.exists() and "removed" in out.getvalue()


class _Huge(TaskParams):
    pass


async def test_a_result_too_large_for_the_status_fails_the_task(tmp_path: Path) -> None:
    async def huge(params: _Huge, ctx: TaskContext) -> dict[str, Any]:
        return {"blob": "x" * (2 * 1024 * 1024)}

    settings = AgentSettings(home=tmp_path, db_path=tmp_path / "agent.db")
    registry = HandlerRegistry([HandlerSpec(TaskType.AWAIT_CONDITION, _Huge, huge)])
    running, store = engine_for(settings, registry)
    try:
        policy = RetryPolicy(limit=3, backoff_seconds=0)
        row = await running.wait(
            await running.submit(Task(id=TASK_ID, type=TaskType.AWAIT_CONDITION, retry=policy)), timeout=30
        )
        stored = store.get(TASK_ID)
    finally:
        await running.shutdown(grace=5)
        store.close()
    assert (row.status, row.reason, row.run) == (TaskStatus.FAILED, Reason.RESULT_TOO_LARGE, 1)  # not retried
    assert "more than the limit of 65536 bytes" in row.error
    assert stored is not None and stored.result is None


def test_check_task_applies_the_same_bounds_as_submit() -> None:
    with pytest.raises(ParamsInvalid, match="nested more than 32 levels"):
        check_task(default_registry(), Task(id=TASK_ID, type=TaskType.MARK_READY, params=nested(40)))


@pytest.mark.timeout(120)  # a hang guard, not a speed target: a quadratic pattern takes many minutes here
@pytest.mark.parametrize(
    "text", ["a" * 65536, "a=b " * 16384, "token=x " * 8192, '"' * 65536, "{" * 65536, "x" * 65536 + "://"]
)
def test_redaction_stays_linear_on_pathological_text(text: str) -> None:
    """Masking runs on every served string: no pattern may backtrack quadratically on a long token."""
    assert redact_text(text).startswith(text[:4]) or "[redacted]" in redact_text(text)
    assert len(scrub_output(text, len(text))) <= len(text)

"""export-state with a stand-in `seid` (a real subprocess) streaming into moto's S3 server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agent.models import TaskError, TaskType
from agent.tasks.export_state import export_command
from tests.fixtures.common import HandlerRunner
from tests.fixtures.waiting import wait_until

EXPORT = TaskType.EXPORT_STATE
MiB = 1024 * 1024

# The stand-in answers `export --help` (listing --chain-id unless EXPORT_NO_CHAIN_ID_FLAG is set), panics like seid
# when --chain-id is expected but missing, prints EXPORT_LOG_LINES log lines on stdout before the JSON (seid prints
# about 17), then writes `{"args": [...], "app_state": {"blob": "xxxx..."}}` of about SIZE bytes and behaves as told:
# exit 0, exit 3 after complaining on stderr, hang (for cancellation, recording its pid first), or write something
# that is not an export ("garbage": plain text; "array": a JSON list; "no-app-state": an object without app_state;
# "truncated": the object cut short).
STAND_IN = textwrap.dedent(
    """\
    #!{python}
    import os, sys, time
    takes_chain_id = not os.environ.get("EXPORT_NO_CHAIN_ID_FLAG")
    if "--help" in sys.argv:
        print("Usage: seid export [flags]\\n      --height int\\n      --home string")
        if takes_chain_id:
            print("      --chain-id string   The network chain ID")
        sys.exit(0)
    if takes_chain_id and "--chain-id" not in sys.argv:
        sys.stderr.write("panic: must pass --chain-id\\n")
        sys.exit(2)
    if not takes_chain_id and "--chain-id" in sys.argv:
        sys.stderr.write("Error: unknown flag: --chain-id\\n")
        sys.exit(1)
    size, mode, pid_file = int(os.environ["EXPORT_SIZE"]), os.environ["EXPORT_MODE"], os.environ["EXPORT_PID_FILE"]
    open(pid_file, "w").write(str(os.getpid()))
    out = sys.stdout.buffer
    for line in range(int(os.environ.get("EXPORT_LOG_LINES", "0"))):
        out.write(b"2026-12-02T10:00:00Z INF loading module=store line=%d\\n" % line)
    if mode == "garbage":
        out.write(b"this is not JSON at all\\n" * (size // 24 + 1))
    elif mode == "array":
        out.write(b"[1, 2, 3]\\n")
    elif mode == "no-app-state":
        out.write(b'{{"chain_id": "old-chain", "validators": []}}\\n')
    elif size:
        out.write(b'{{"args": ' + repr(sys.argv[1:]).replace("'", '"').encode() + b', "app_state": {{"blob": "')
        chunk = b"x" * (1 << 20)
        left = size
        while left > 0:
            out.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
            if mode == "hang":
                out.flush()
                time.sleep(600)
        if mode != "truncated":
            out.write(b'"}}, "validators": []}}\\n')
    out.flush()
    sys.stderr.write("INF exporting state...\\n" * 500)
    if mode == "fail":
        sys.stderr.write("panic: leveldb: resource temporarily unavailable\\n")
        sys.exit(3)
    """
)


@pytest.fixture
def seid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install the stand-in as `seid`; returns a setter for its size and behaviour."""
    path = tmp_path / "bin" / "seid"
    path.parent.mkdir()
    path.write_text(STAND_IN.format(python=sys.executable))
    path.chmod(0o755)
    pid_file = tmp_path / "seid.pid"

    def configure(size: int = 12 * MiB, mode: str = "ok", log_lines: int = 0, chain_id_flag: bool = True) -> Path:
        monkeypatch.setenv("EXPORT_SIZE", str(size))
        monkeypatch.setenv("EXPORT_MODE", mode)
        monkeypatch.setenv("EXPORT_PID_FILE", str(pid_file))
        monkeypatch.setenv("EXPORT_LOG_LINES", str(log_lines))
        if chain_id_flag:
            monkeypatch.delenv("EXPORT_NO_CHAIN_ID_FLAG", raising=False)
        else:
            monkeypatch.setenv("EXPORT_NO_CHAIN_ID_FLAG", "1")
        return pid_file

    configure()
    monkeypatch.setenv("PATH", f"{path.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return configure


def stored(s3_admin: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
    except s3_admin.exceptions.NoSuchKey:
        return None


def open_uploads(s3_admin: Any, bucket: str) -> list[Any]:
    return s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("height", "args_tail"),
    [(42, ["--height", "42"]), (0, [])],
    ids=["at-height", "latest"],
)
async def test_export_streams_seid_stdout_into_a_multipart_object(
    seid: Any,
    s3_run_handler: HandlerRunner,
    s3_admin: Any,
    s3_bucket: str,
    height: int,
    args_tail: list[str],
) -> None:
    home = s3_run_handler.settings.home
    result = await s3_run_handler(EXPORT, {"chainId": "old-chain", "height": height})

    assert result is not None and result["s3Key"] == "old-chain/exported-state.json"
    data = stored(s3_admin, s3_bucket, "old-chain/exported-state.json")
    assert data is not None and len(data) == result["bytes"] > 12 * MiB
    assert result["parts"] >= 2  # larger than one part: really a multipart upload fed from the pipe
    document = json.loads(data)
    assert document["args"] == ["export", "--home", str(home), "--chain-id", "old-chain", *args_tail]
    assert result["chainIdFlag"] is True
    assert document["app_state"]["blob"] == "x" * (12 * MiB)
    assert s3_run_handler.progress and s3_run_handler.progress[-1].unit == "bytes"
    assert not open_uploads(s3_admin, s3_bucket)


async def test_failed_export_keeps_the_previous_object_and_reports_stderr_tail(
    seid: Any, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="old-chain/exported-state.json", Body=b"previous good export")
    seid(size=12 * MiB, mode="fail")

    with pytest.raises(TaskError, match="exited with status 3") as caught:
        await s3_run_handler(EXPORT, {"chainId": "old-chain"})

    assert caught.value.reason == "ExportFailed"
    assert "panic: leveldb: resource temporarily unavailable" in caught.value.message
    assert len(caught.value.message) < 5000  # a tail, not the whole stderr
    assert stored(s3_admin, s3_bucket, "old-chain/exported-state.json") == b"previous good export"
    assert not open_uploads(s3_admin, s3_bucket)


@pytest.mark.parametrize(("size", "mode"), [(1024, "fail"), (0, "ok")], ids=["small-failure", "empty-output"])
async def test_small_or_empty_failed_export_uploads_nothing(
    seid: Any, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, size: int, mode: str
) -> None:
    seid(size=size, mode=mode)
    with pytest.raises(TaskError) as caught:
        await s3_run_handler(EXPORT, {"chainId": "old-chain", "key": "exports/state.json"})
    assert caught.value.reason == "ExportFailed"
    assert stored(s3_admin, s3_bucket, "exports/state.json") is None


async def test_missing_binary_fails_with_binary_not_found(s3_run_handler: HandlerRunner) -> None:
    s3_run_handler.settings = s3_run_handler.settings.model_copy(update={"seid_binary": "/nonexistent/seid"})
    with pytest.raises(TaskError, match=r"'/nonexistent/seid' .*not found") as caught:
        await s3_run_handler(EXPORT, {"chainId": "old-chain"})
    assert caught.value.reason == "BinaryNotFound"


@pytest.mark.parametrize("value", ["/bin/sh", "seid", ""])
async def test_seid_binary_param_is_refused_as_agent_configuration(s3_run_handler: HandlerRunner, value: str) -> None:
    with pytest.raises(TaskError, match=r"params\.seidBinary: .*agent configuration") as caught:
        await s3_run_handler(EXPORT, {"chainId": "old-chain", "seidBinary": value})
    assert caught.value.reason == "ParamsInvalid"


async def test_log_lines_before_the_json_are_dropped(
    seid: Any, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    seid(size=1024, log_lines=17)
    result = await s3_run_handler(EXPORT, {"chainId": "old-chain"})
    data = stored(s3_admin, s3_bucket, "old-chain/exported-state.json")
    assert data is not None and data.startswith(b'{"args"') and len(data) == result["bytes"]
    assert json.loads(data)["app_state"]["blob"] == "x" * 1024


async def test_a_binary_without_the_chain_id_flag_is_not_given_it(
    seid: Any, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    seid(size=1024, chain_id_flag=False)  # a stock Cosmos SDK 0.45 `export` refuses unknown flags
    result = await s3_run_handler(EXPORT, {"chainId": "old-chain"})
    assert result is not None and result["chainIdFlag"] is False
    data = stored(s3_admin, s3_bucket, "old-chain/exported-state.json")
    assert data is not None and "--chain-id" not in json.loads(data)["args"]


@pytest.mark.parametrize(
    ("mode", "size", "expected"),
    [
        ("garbage", 12 * MiB, "without starting a JSON export"),
        ("array", 0, "a JSON array, not an object"),
        ("no-app-state", 0, "without an app_state object"),
        ("truncated", 3 * MiB, "not one valid JSON object"),
    ],
)
async def test_an_output_that_is_not_an_export_fails_and_uploads_nothing(
    seid: Any,
    s3_run_handler: HandlerRunner,
    s3_admin: Any,
    s3_bucket: str,
    mode: str,
    size: int,
    expected: str,
) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="old-chain/exported-state.json", Body=b"previous good export")
    seid(size=size, mode=mode, log_lines=3)
    with pytest.raises(TaskError, match=expected) as caught:
        await s3_run_handler(EXPORT, {"chainId": "old-chain"})
    assert caught.value.reason == "ExportInvalid"
    assert "nothing was written" in caught.value.message
    assert stored(s3_admin, s3_bucket, "old-chain/exported-state.json") == b"previous good export"
    assert not open_uploads(s3_admin, s3_bucket)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cancellation_kills_seid_and_aborts_the_upload(
    seid: Any, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    pid_file = seid(size=12 * MiB, mode="hang")
    task = asyncio.ensure_future(s3_run_handler(EXPORT, {"chainId": "old-chain"}))
    await wait_until(pid_file.exists, what="seid's pid file", timeout=60, unless_done=task)
    pid = int(pid_file.read_text())
    await asyncio.sleep(0.2)  # let it write its first chunk and block

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert not _alive(pid)
    assert stored(s3_admin, s3_bucket, "old-chain/exported-state.json") is None
    assert not open_uploads(s3_admin, s3_bucket)


def test_export_command_adds_height_only_when_positive(tmp_path: Path) -> None:
    assert export_command("seid", tmp_path, 0) == ["seid", "export", "--home", str(tmp_path)]
    assert export_command("seid", tmp_path, 7)[-2:] == ["--height", "7"]
    assert export_command("seid", tmp_path, 7, "c-1")[4:] == ["--chain-id", "c-1", "--height", "7"]


@pytest.mark.parametrize(
    ("params", "field"), [({"height": -1}, "height"), ({"key": "/abs"}, "key"), ({"s3Key": "/abs"}, "key")]
)
async def test_bad_params_are_params_invalid(s3_run_handler: HandlerRunner, params: dict[str, Any], field: str) -> None:
    with pytest.raises(TaskError, match=f"params.{field}") as caught:
        await s3_run_handler(EXPORT, {"chainId": "old-chain", **params})
    assert caught.value.reason == "ParamsInvalid"

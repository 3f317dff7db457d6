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

# The stand-in writes `{"args": [...], "app_state": {"blob": "xxxx..."}}` of about SIZE bytes, then behaves as told:
# exit 0, exit 3 after complaining on stderr, or hang (for cancellation), recording its pid first.
STAND_IN = textwrap.dedent(
    """\
    #!{python}
    import os, sys, time
    size, mode, pid_file = int(os.environ["EXPORT_SIZE"]), os.environ["EXPORT_MODE"], os.environ["EXPORT_PID_FILE"]
    open(pid_file, "w").write(str(os.getpid()))
    out = sys.stdout.buffer
    if size:
        out.write(b'{{"args": ' + repr(sys.argv[1:]).replace("'", '"').encode() + b', "app_state": {{"blob": "')
        chunk = b"x" * (1 << 20)
        left = size
        while left > 0:
            out.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
            if mode == "hang":
                out.flush()
                time.sleep(600)
        out.write(b'"}}}}')
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

    def configure(size: int = 12 * MiB, mode: str = "ok") -> Path:
        monkeypatch.setenv("EXPORT_SIZE", str(size))
        monkeypatch.setenv("EXPORT_MODE", mode)
        monkeypatch.setenv("EXPORT_PID_FILE", str(pid_file))
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
    assert document["args"] == ["export", "--home", str(home), *args_tail]
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
    with pytest.raises(TaskError, match="'/nonexistent/seid' not found") as caught:
        await s3_run_handler(EXPORT, {"chainId": "old-chain", "seidBinary": "/nonexistent/seid"})
    assert caught.value.reason == "BinaryNotFound"


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


@pytest.mark.parametrize(
    ("params", "field"), [({"height": -1}, "height"), ({"key": "/abs"}, "key"), ({"s3Key": "/abs"}, "key")]
)
async def test_bad_params_are_params_invalid(s3_run_handler: HandlerRunner, params: dict[str, Any], field: str) -> None:
    with pytest.raises(TaskError, match=f"params.{field}") as caught:
        await s3_run_handler(EXPORT, {"chainId": "old-chain", **params})
    assert caught.value.reason == "ParamsInvalid"

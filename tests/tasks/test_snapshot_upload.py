"""snapshot-upload against moto through boto3: what is uploaded, in which order, and what is skipped."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tarfile
from typing import Any

import pytest
import zstandard

from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.common import HandlerRunner
from tests.fixtures.s3 import S3FaultProxy, make_snapshots
from tests.fixtures.waiting import wait_until

# The S3 tests run on moto and on versitygw, a real S3 server whose stricter behaviour is what users get.
pytestmark = pytest.mark.s3_backends

PREFIX = "test-chain/state-sync/"


def keys(s3_admin: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3_admin.list_objects_v2(Bucket=bucket).get("Contents", []))


def body(s3_admin: Any, bucket: str, key: str) -> bytes:
    return bytes(s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read())


async def test_uploads_the_second_highest_snapshot_then_checksum_latest_and_state(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    make_snapshots(s3_settings.home, [100, 200, 300])

    result = await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {})

    assert result is not None
    assert result["uploaded"] is True
    assert result["height"] == 200
    assert keys(s3_admin, s3_bucket) == [PREFIX + "200.tar.zst", PREFIX + "200.tar.zst.sha256", PREFIX + "latest.txt"]
    archive = body(s3_admin, s3_bucket, PREFIX + "200.tar.zst")
    assert body(s3_admin, s3_bucket, PREFIX + "latest.txt") == b"200"
    assert body(s3_admin, s3_bucket, PREFIX + "200.tar.zst.sha256") == (
        f"{hashlib.sha256(archive).hexdigest()}  200.tar.zst\n".encode()
    )
    assert result["sha256"] == hashlib.sha256(archive).hexdigest()
    state = json.loads((s3_settings.home / ".sei-sidecar-last-upload.json").read_text())
    assert state == {"lastUploadedHeight": 200}
    tar_bytes = zstandard.ZstdDecompressor().decompressobj().decompress(archive)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        names = tar.getnames()
    assert "200/large.bin" in names and "metadata.db/CURRENT" in names
    assert not any(name.startswith(("100", "300")) for name in names)
    last = s3_run_handler.progress[-1]
    assert (last.current, last.total, last.unit) == (result["fileBytes"], result["fileBytes"], "bytes")


async def test_rerun_after_success_uploads_nothing(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    make_snapshots(s3_settings.home, [100, 200, 300])
    await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {})
    before = {key: s3_admin.head_object(Bucket=s3_bucket, Key=key)["ETag"] for key in keys(s3_admin, s3_bucket)}

    result = await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {})

    assert result == {"uploaded": False, "height": 200, "reason": "height 200 already uploaded (state: 200)"}
    after = {key: s3_admin.head_object(Bucket=s3_bucket, Key=key)["ETag"] for key in keys(s3_admin, s3_bucket)}
    assert after == before


@pytest.mark.slow
async def test_a_newer_snapshot_is_uploaded_and_becomes_latest(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    make_snapshots(s3_settings.home, [100, 200])
    await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {})
    (s3_settings.home / "data" / "snapshots" / "300").mkdir()

    result = await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {})

    assert result is not None and result["height"] == 200
    assert body(s3_admin, s3_bucket, PREFIX + "latest.txt") == b"200"
    (s3_settings.home / "data" / "snapshots" / "400").mkdir()
    result = await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {})
    assert result is not None and result["height"] == 300
    assert body(s3_admin, s3_bucket, PREFIX + "latest.txt") == b"300"


@pytest.mark.parametrize("heights", [[], [100]])
async def test_fewer_than_two_snapshots_uploads_nothing(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, heights: list[int]
) -> None:
    if heights:
        make_snapshots(s3_settings.home, heights)
    result = await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {})
    assert result is not None and result["uploaded"] is False
    assert keys(s3_admin, s3_bucket) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "expected_key"),
    [
        ({"compression": "gz"}, PREFIX + "200.tar.gz"),
        ({"compression": "lz4"}, PREFIX + "200.tar.lz4"),
        ({"prefix": "custom/path"}, "custom/path/200.tar.zst"),
        ({"prefix": ""}, "200.tar.zst"),
        ({"chainId": "other-1"}, "other-1/state-sync/200.tar.zst"),
    ],
)
async def test_key_follows_prefix_chain_and_compression(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    s3_admin: Any,
    s3_bucket: str,
    params: dict[str, Any],
    expected_key: str,
) -> None:
    make_snapshots(s3_settings.home, [100, 200, 300])
    result = await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, params)
    assert result is not None and result["key"] == f"s3://{s3_bucket}/{expected_key}"
    assert expected_key in keys(s3_admin, s3_bucket)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bucket": "Not_A_Bucket"}, "params.bucket"),
        ({"bucket": "10.0.0.1"}, "params.bucket"),
        ({"prefix": "/abs"}, "params.prefix"),
        ({"prefix": "a/../b"}, "params.prefix"),
        ({"compression": "bz2"}, "params.compression"),
        ({"intervalSeconds": 0}, "params.intervalSeconds"),
        ({"compression": "gz", "compressionLevel": 15}, "out of range for gz"),
        ({"compression": "lz4", "compressionLevel": 3}, "lz4 has no compression levels"),
        ({"chainId": "bad chain"}, "params.chainId"),
        ({"bukket": "x"}, "params.bukket"),
    ],
)
async def test_bad_params_are_refused_naming_the_field(
    s3_run_handler: HandlerRunner, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ParamsInvalid, match=field.replace(".", r"\.")):
        await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, params)


async def test_missing_bucket_everywhere_names_param_and_variable(run_handler: HandlerRunner) -> None:
    with pytest.raises(ParamsInvalid, match=r"params\.bucket.*SEI_SNAPSHOT_BUCKET"):
        await run_handler(TaskType.SNAPSHOT_UPLOAD, {})


@pytest.mark.slow
async def test_failed_upload_publishes_nothing_and_keeps_the_state(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, s3_faults: S3FaultProxy
) -> None:
    snapshots = make_snapshots(s3_settings.home, [100, 200, 300])
    (snapshots / "200" / "random.bin").write_bytes(os.urandom(12 * 1024 * 1024))  # two 8 MiB parts, compressed
    s3_faults.fail("PUT", "partNumber=2", status=500, times=1000)
    s3_run_handler.settings = s3_settings.model_copy(update={"s3_endpoint_url": s3_faults.url})

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {"compression": "lz4"})

    assert caught.value.reason == "S3Unavailable"
    assert PREFIX + "200.tar.lz4" in caught.value.message
    assert keys(s3_admin, s3_bucket) == []
    assert s3_admin.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert not (s3_settings.home / ".sei-sidecar-last-upload.json").exists()


async def test_interval_mode_keeps_going_after_a_failed_iteration_and_stops_on_cancel(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, s3_faults: S3FaultProxy
) -> None:
    make_snapshots(s3_settings.home, [100, 200, 300])
    s3_faults.fail("PUT", "latest.txt", status=403, code="AccessDenied", times=1)
    s3_run_handler.settings = s3_settings.model_copy(update={"s3_endpoint_url": s3_faults.url})
    loop = asyncio.create_task(s3_run_handler(TaskType.SNAPSHOT_UPLOAD, {"intervalSeconds": 1}))

    async def wait_for(text: str) -> None:
        reported = lambda: any(text in report.message for report in s3_run_handler.progress)  # noqa: E731
        await wait_until(reported, what=f"progress {text!r}", unless_done=loop)

    await wait_for("iteration 1 failed (S3AccessDenied)")
    await wait_for("iteration 2 uploaded")
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop

    second = next(report for report in s3_run_handler.progress if "iteration 2" in report.message)
    assert (second.current, second.unit) == (1, "uploads")
    assert "1 failed so far" in second.message
    assert body(s3_admin, s3_bucket, PREFIX + "latest.txt") == b"200"

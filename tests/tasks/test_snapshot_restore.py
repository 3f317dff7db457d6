"""snapshot-restore against moto through boto3: round trips, choice of height, verification, and every failure
leaving the node's data exactly as it was."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.common import HandlerRunner
from tests.fixtures.httpfaults import HttpFaultProxy
from tests.fixtures.s3 import (
    HOSTILE,
    Member,
    S3FaultProxy,
    as_extracted,
    make_snapshots,
    member,
    raw_header,
    tar_of,
    tree_fingerprint,
)
from tests.fixtures.waiting import wait_until

# The S3 tests run on moto and on versitygw, a real S3 server whose stricter behaviour is what users get.
pytestmark = pytest.mark.s3_backends

PREFIX = "test-chain/state-sync/"
VALIDATOR_STATE = '{"height":"12345","round":0,"step":3}'


@pytest.fixture
def source_home(tmp_path: Path) -> Path:
    """Another node's home whose snapshots are uploaded, so this test's `home` can restore them."""
    home = tmp_path / "source-home"
    snapshots = make_snapshots(home, [100, 200, 300])
    (snapshots / "200" / "random.bin").write_bytes(os.urandom(1 << 20))  # so the archive is not tiny
    return home


async def upload_from(source_home: Path, s3_settings: AgentSettings, **params: Any) -> dict[str, Any]:
    uploader = HandlerRunner(s3_settings.model_copy(update={"home": source_home}))
    result = await uploader(TaskType.SNAPSHOT_UPLOAD, params)
    assert result is not None and result["uploaded"]
    return result


def expected_snapshots(source_home: Path, height: int) -> dict[str, Any]:
    snapshots = source_home / "data" / "snapshots"
    return {
        path: value
        for path, value in as_extracted(tree_fingerprint(snapshots)).items()
        if path.split("/")[0] in (str(height), "metadata.db")
    }


def prepare_existing_node(home: Path) -> dict[str, Any]:
    """A node that already has data: a validator state and an older snapshot store. Returns its fingerprint."""
    (home / "data" / "priv_validator_state.json").write_text(VALIDATOR_STATE)
    (home / "data" / "snapshots" / "50" / "1").mkdir(parents=True)
    (home / "data" / "snapshots" / "50" / "1" / "0").write_bytes(b"old chunk")
    return tree_fingerprint(home)


def put_archive(s3_admin: Any, bucket: str, key: str, members: list[Member]) -> None:
    s3_admin.put_object(Bucket=bucket, Key=key, Body=gzip.compress(tar_of(members)))


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["gz", "lz4", "zst"])
async def test_round_trip_restores_the_uploaded_snapshot_identically(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    source_home: Path,
    compression: str,
) -> None:
    uploaded = await upload_from(source_home, s3_settings, compression=compression)

    result = await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {})

    home = s3_settings.home
    assert tree_fingerprint(home / "data" / "snapshots") == expected_snapshots(source_home, 200)
    assert result is not None
    assert result["height"] == 200
    assert result["compression"] == compression
    assert result["sha256"] == uploaded["sha256"]
    assert result["verifiedAgainst"].endswith(f"200.tar.{compression}.sha256")
    assert (home / ".sei-sidecar-snapshot-height").read_bytes() == b"200"
    assert (home / ".sei-sidecar-snapshot-done").exists()
    # streamed: nothing but the snapshots themselves was left in the home (no archive, no staging, no tmp/)
    assert sorted(path.name for path in (home / "data").iterdir()) == ["snapshots"]
    reports = [report for report in s3_run_handler.progress if report.unit == "bytes"]
    assert reports[-1].current == reports[-1].total == result["archiveBytes"]


@pytest.mark.slow
async def test_target_height_and_latest_and_listing_choose_the_archive(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, source_home: Path, s3_admin: Any, s3_bucket: str
) -> None:
    await upload_from(source_home, s3_settings)
    (source_home / "data" / "snapshots" / "400").mkdir()
    await upload_from(source_home, s3_settings)  # 300 is now the latest
    s3_admin.delete_object(Bucket=s3_bucket, Key=PREFIX + "latest.txt")
    s3_admin.put_object(Bucket=s3_bucket, Key=PREFIX + "latest.txt", Body=b"200\n")

    assert (await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {}) or {})["height"] == 200  # latest.txt wins
    for marker in (".sei-sidecar-snapshot-done",):
        (s3_settings.home / marker).unlink()
    assert (await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {"targetHeight": 300}) or {})["height"] == 300
    (s3_settings.home / ".sei-sidecar-snapshot-done").unlink()
    s3_admin.delete_object(Bucket=s3_bucket, Key=PREFIX + "latest.txt")
    assert (await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {}) or {})["height"] == 300  # highest listed


async def test_rerun_after_success_is_a_no_op_that_does_not_touch_s3(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, source_home: Path, s3_faults: S3FaultProxy
) -> None:
    await upload_from(source_home, s3_settings)
    await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {})
    before = tree_fingerprint(s3_settings.home)
    s3_run_handler.settings = s3_settings.model_copy(update={"s3_endpoint_url": s3_faults.url})

    result = await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {})

    assert result == {"skipped": True, "reason": "already restored (marker present)"}
    assert s3_faults.requests == []
    assert tree_fingerprint(s3_settings.home) == before


async def test_success_replaces_old_snapshots_and_never_touches_the_validator_state(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    prepare_existing_node(s3_settings.home)
    put_archive(
        s3_admin,
        s3_bucket,
        PREFIX + "700.tar.gz",
        [
            (tarfile.TarInfo("700/1/0"), b"new chunk"),
            (tarfile.TarInfo("priv_validator_state.json"), b'{"height":"1"}'),
            (tarfile.TarInfo("700/priv_validator_state.json"), b'{"height":"1"}'),
        ],
    )

    result = await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {})

    data = s3_settings.home / "data"
    assert (data / "priv_validator_state.json").read_text() == VALIDATOR_STATE
    assert sorted(p.relative_to(data / "snapshots").as_posix() for p in (data / "snapshots").rglob("*")) == [
        "700",
        "700/1",
        "700/1/0",
    ]
    assert result is not None
    assert result["skippedMembers"] == ["priv_validator_state.json", "700/priv_validator_state.json"]
    assert result["verifiedAgainst"] is None


@pytest.mark.slow
async def test_published_checksum_that_does_not_match_fails_the_restore(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, source_home: Path, s3_admin: Any, s3_bucket: str
) -> None:
    await upload_from(source_home, s3_settings)
    s3_admin.put_object(Bucket=s3_bucket, Key=PREFIX + "200.tar.zst.sha256", Body=b"0" * 64 + b"  200.tar.zst\n")
    before = prepare_existing_node(s3_settings.home)

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {})

    assert caught.value.reason == "ChecksumMismatch"
    assert "0" * 64 in caught.value.message and f"s3://{s3_bucket}/{PREFIX}200.tar.zst.sha256" in caught.value.message
    assert tree_fingerprint(s3_settings.home) == before


Failure = Callable[[dict[str, Any]], dict[str, Any]]


def truncated_download(env: dict[str, Any]) -> dict[str, Any]:
    env["faults"].truncate("GET", ".tar.zst", after=1_000, times=1000)
    return {}


def server_errors_mid_stream(env: dict[str, Any]) -> dict[str, Any]:
    env["faults"].truncate("GET", ".tar.zst", after=1_000, times=1)
    env["faults"].fail("GET", ".tar.zst", status=500, times=1000)
    return {}


def wrong_sha256(env: dict[str, Any]) -> dict[str, Any]:
    return {"sha256": "ab" * 32}


def missing_height(env: dict[str, Any]) -> dict[str, Any]:
    return {"targetHeight": 999}


def archive_larger_than_the_disk(env: dict[str, Any]) -> dict[str, Any]:
    put_archive(
        env["s3_admin"], env["bucket"], PREFIX + "800.tar.gz", [(tarfile.TarInfo("800/zeros"), b"\0" * (8 << 20))]
    )
    return {"targetHeight": 800}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (truncated_download, "S3Unavailable"),
        (server_errors_mid_stream, "S3Unavailable"),
        (wrong_sha256, "ChecksumMismatch"),
        (missing_height, "S3NotFound"),
    ],
)
async def test_failures_leave_the_node_data_exactly_as_it_was(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    source_home: Path,
    s3_admin: Any,
    s3_bucket: str,
    s3_faults: S3FaultProxy,
    failure: Failure,
    reason: str,
) -> None:
    await upload_from(source_home, s3_settings)
    before = prepare_existing_node(s3_settings.home)
    params = failure({"faults": s3_faults, "s3_admin": s3_admin, "bucket": s3_bucket})
    s3_run_handler.settings = s3_settings.model_copy(update={"s3_endpoint_url": s3_faults.url})

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.SNAPSHOT_RESTORE, params)

    assert caught.value.reason == reason
    assert f"s3://{s3_bucket}/{PREFIX}" in caught.value.message
    assert tree_fingerprint(s3_settings.home) == before
    assert not (s3_settings.home / ".sei-sidecar-snapshot-done").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("failure", "stage"), [(None, "precheck"), (archive_larger_than_the_disk, "extraction")])
async def test_disk_too_small_fails_before_or_during_extraction_and_keeps_the_data(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    s3_admin: Any,
    s3_bucket: str,
    small_volume: Callable[[Path, int], Path],
    failure: Failure | None,
    stage: str,
) -> None:
    small_volume(s3_settings.home / "data", 4 << 20)
    before = prepare_existing_node(s3_settings.home)
    if failure is None:  # an archive of 3 MiB of random bytes needs 6 MiB at the default 2x factor
        s3_admin.put_object(Bucket=s3_bucket, Key=PREFIX + "600.tar.gz", Body=os.urandom(3 << 20))
        params: dict[str, Any] = {}
    else:
        params = failure({"s3_admin": s3_admin, "bucket": s3_bucket})

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.SNAPSHOT_RESTORE, params)

    assert caught.value.reason == "InsufficientDisk"
    assert ("only" in caught.value.message) if stage == "precheck" else ("800/zeros" in caught.value.message)
    assert tree_fingerprint(s3_settings.home) == before


async def test_restore_needs_room_for_the_files_only_not_for_a_copy_of_the_archive(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    s3_admin: Any,
    s3_bucket: str,
    small_volume: Callable[[Path, int], Path],
) -> None:
    # 5 MiB of random file data on an 8 MiB volume: archive + files would need 10 MiB, streaming needs 5.
    small_volume(s3_settings.home / "data", 8 << 20)
    payload = os.urandom(5 << 20)
    put_archive(s3_admin, s3_bucket, PREFIX + "500.tar.gz", [(tarfile.TarInfo("500/random.bin"), payload)])

    result = await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {"diskSafetyFactor": 1.0})

    assert result is not None and result["height"] == 500
    restored = s3_settings.home / "data" / "snapshots" / "500" / "random.bin"
    assert hashlib.sha256(restored.read_bytes()).digest() == hashlib.sha256(payload).digest()


@pytest.mark.slow
async def test_cancelled_restore_removes_its_staging_and_keeps_the_data(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    source_home: Path,
    s3_http_faults: HttpFaultProxy,
) -> None:
    await upload_from(source_home, s3_settings)
    before = prepare_existing_node(s3_settings.home)
    # The archive (~1 MiB) trickles in at 256 KiB/s: the restore is extracting into its staging directory for seconds
    # (a stall before the first byte is not enough: once the body flows, the whole restore takes milliseconds).
    s3_http_faults.slow_body(256 * 1024, method="GET", path=".tar.zst$", times=10)
    s3_run_handler.settings = s3_settings.model_copy(update={"s3_endpoint_url": s3_http_faults.url})
    restore = asyncio.create_task(s3_run_handler(TaskType.SNAPSHOT_RESTORE, {}))
    staging = s3_settings.home / "data" / ".snapshot-restore-staging"
    await wait_until(staging.exists, what="the restore's staging directory", unless_done=restore)

    restore.cancel()
    with pytest.raises(asyncio.CancelledError):
        await restore

    assert tree_fingerprint(s3_settings.home) == before


@pytest.mark.slow
async def test_leftovers_of_a_crashed_restore_are_cleaned_up(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, source_home: Path
) -> None:
    await upload_from(source_home, s3_settings)
    staging = s3_settings.home / "data" / ".snapshot-restore-staging" / "200"
    staging.mkdir(parents=True)
    (staging / "half-written").write_bytes(b"x")

    await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {})

    assert not (s3_settings.home / "data" / ".snapshot-restore-staging").exists()
    assert tree_fingerprint(s3_settings.home / "data" / "snapshots") == expected_snapshots(source_home, 200)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"targetHeight": 0}, "params.targetHeight"),
        ({"targetHeight": -5}, "params.targetHeight"),
        ({"sha256": "abc"}, "params.sha256"),
        ({"diskSafetyFactor": 0.5}, "params.diskSafetyFactor"),
        ({"bucket": "a"}, "params.bucket"),
        ({"region": "US East"}, "params.region"),
    ],
)
async def test_bad_params_are_refused_before_anything_runs(
    s3_run_handler: HandlerRunner, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ParamsInvalid, match=field.replace(".", r"\.")):
        await s3_run_handler(TaskType.SNAPSHOT_RESTORE, params)


HUGE_HEADER = gzip.compress(raw_header("././@PaxHeader", tarfile.XHDTYPE, 1 << 40) + b"\0" * 4096)


@pytest.mark.slow
@pytest.mark.parametrize("case", [*sorted(HOSTILE), "huge-header"])
async def test_hostile_snapshots_are_refused_and_leave_the_node_data_as_it_was(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, case: str
) -> None:
    before = prepare_existing_node(s3_settings.home)
    if case == "huge-header":
        s3_admin.put_object(Bucket=s3_bucket, Key=PREFIX + "900.tar.gz", Body=HUGE_HEADER)
    else:
        members, _ = HOSTILE[case]
        put_archive(s3_admin, s3_bucket, PREFIX + "900.tar.gz", [(member("900/ok"), b"fine"), *members])

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.SNAPSHOT_RESTORE, {})

    assert caught.value.reason == "ArchiveUnsafe"
    assert tree_fingerprint(s3_settings.home) == before
    assert not (s3_settings.home / ".sei-sidecar-snapshot-done").exists()

"""snapshot-upload-once against moto: the original's one-shot type, its outcome vocabulary, and its deadline."""

from __future__ import annotations

from typing import Any

import pytest

from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.common import HandlerRunner
from tests.fixtures.s3 import S3FaultProxy, make_snapshots

ONCE = TaskType.SNAPSHOT_UPLOAD_ONCE


async def test_the_originals_empty_body_uploads_once_then_reports_already_uploaded(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings
) -> None:
    make_snapshots(s3_settings.home, [100, 200, 300])

    first = await s3_run_handler(ONCE, {})
    second = await s3_run_handler(ONCE, {})

    assert first is not None and (first["outcome"], first["height"], first["uploaded"]) == ("uploaded", 200, True)
    assert first["key"].endswith("/test-chain/state-sync/200.tar.zst")
    assert second is not None
    assert (second["outcome"], second["noopReason"], second["height"]) == ("noop", "already-uploaded", 200)


async def test_fewer_than_two_snapshots_is_a_noop(s3_run_handler: HandlerRunner, s3_settings: AgentSettings) -> None:
    make_snapshots(s3_settings.home, [100])

    result = await s3_run_handler(ONCE, {})

    assert result is not None and (result["outcome"], result["noopReason"]) == ("noop", "fewer-than-2-snapshots")


@pytest.mark.slow
async def test_an_upload_past_its_deadline_fails_retryable_and_publishes_nothing(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, s3_faults: S3FaultProxy
) -> None:
    make_snapshots(s3_settings.home, [100, 200, 300])
    s3_faults.stall("PUT", "200.tar.zst", seconds=5, times=100)  # no part can land within the 1 s deadline
    s3_run_handler.settings = s3_settings.model_copy(update={"s3_endpoint_url": s3_faults.url})

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(ONCE, {"timeoutSeconds": 1})

    assert (caught.value.reason, caught.value.retryable) == ("DeadlineExceeded", True)
    # The stalled PUT may still land once the proxy lets it through, but nothing announces it: no checksum, no
    # latest.txt, no state file, so a restore never picks it and the next run uploads again.
    listed = {item["Key"] for item in s3_admin.list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    assert not {key for key in listed if key.endswith((".sha256", "latest.txt"))}
    assert not (s3_settings.home / ".sei-sidecar-last-upload.json").exists()


async def test_an_interval_is_refused(s3_run_handler: HandlerRunner) -> None:
    with pytest.raises(ParamsInvalid, match="intervalSeconds"):
        await s3_run_handler(ONCE, {"intervalSeconds": 60})

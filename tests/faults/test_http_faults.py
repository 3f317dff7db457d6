"""HTTP faults between the agent and its servers: S3 (moto) and a CometBFT RPC, through `HttpFaultProxy`.

Each test runs the real handler with its endpoint pointed at the proxy, injects server errors, throttling, slow bodies
and connection resets mid-body, and checks that the task either survives them (same bytes on disk as without faults)
or fails with a clear reason naming the endpoint, never with a half-written node.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.models import TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.cometbft import CometBFTFactory, FakeCometBFT
from tests.fixtures.common import HandlerRunner
from tests.fixtures.httpfaults import HttpFaultProxy, http_fault_proxy
from tests.fixtures.s3 import as_extracted, make_snapshots, tree_fingerprint

ARCHIVE = "test-chain/state-sync/200.tar.zst"  # the upload takes the second-newest snapshot, zstd by default


@pytest.fixture
def source_home(tmp_path: Path) -> Path:
    home = tmp_path / "source-home"
    snapshots = make_snapshots(home, [100, 200, 300])
    (snapshots / "200" / "random.bin").write_bytes(os.urandom(1 << 20))  # a body worth cutting in the middle
    return home


def through(settings: AgentSettings, proxy: HttpFaultProxy, **update: Any) -> HandlerRunner:
    return HandlerRunner(settings.model_copy(update={"s3_endpoint_url": proxy.url, **update}))


async def test_snapshot_restore_survives_5xx_throttling_slow_bodies_and_resets_mid_body(
    s3_settings: AgentSettings, source_home: Path, s3_http_faults: HttpFaultProxy
) -> None:
    await HandlerRunner(s3_settings.model_copy(update={"home": source_home}))(TaskType.SNAPSHOT_UPLOAD, {})
    faults = s3_http_faults
    faults.status(500, method="GET", path=ARCHIVE + "$", times=2)
    faults.status(503, method="GET", path=ARCHIVE + "$", times=1, retry_after="1")  # SlowDown-style throttling
    faults.reset_mid_body(256 * 1024, method="GET", path=ARCHIVE + "$", times=2)
    faults.slow_body(4 << 20, method="GET", path=ARCHIVE + "$", times=1)
    faults.status(500, method="GET", path=ARCHIVE + ".sha256$", times=1)

    result = await through(s3_settings, faults)(TaskType.SNAPSHOT_RESTORE, {})

    assert result is not None and result["height"] == 200
    assert faults.injected == 7, faults.requests
    snapshots = source_home / "data" / "snapshots"
    restored = tree_fingerprint(s3_settings.home / "data" / "snapshots")
    assert restored == as_extracted(
        {k: v for k, v in tree_fingerprint(snapshots).items() if k.split("/")[0] in ("200", "metadata.db")}
    )


@pytest.mark.slow
async def test_snapshot_restore_that_never_gets_the_archive_fails_clearly_and_keeps_the_data(
    s3_settings: AgentSettings, source_home: Path, s3_http_faults: HttpFaultProxy
) -> None:
    await HandlerRunner(s3_settings.model_copy(update={"home": source_home}))(TaskType.SNAPSHOT_UPLOAD, {})
    (s3_settings.home / "data").mkdir(parents=True, exist_ok=True)
    (s3_settings.home / "data" / "priv_validator_state.json").write_text('{"height":"5"}')
    before = tree_fingerprint(s3_settings.home)
    s3_http_faults.status(503, method="GET", path=ARCHIVE + "$", times=1000, retry_after="0")

    with pytest.raises(TaskError) as caught:
        await through(s3_settings, s3_http_faults)(TaskType.SNAPSHOT_RESTORE, {})

    assert ARCHIVE.rsplit("/", 1)[0] in caught.value.message and "503" in caught.value.message
    assert tree_fingerprint(s3_settings.home) == before
    assert not (s3_settings.home / ".sei-sidecar-snapshot-done").exists()


async def test_snapshot_upload_survives_5xx_and_throttling_on_its_puts(
    s3_settings: AgentSettings, source_home: Path, s3_http_faults: HttpFaultProxy, s3_admin: Any, s3_bucket: str
) -> None:
    s3_http_faults.status(500, method="PUT", path=".tar.zst", times=2)
    s3_http_faults.status(503, method="PUT", path=".tar.zst", times=1, retry_after="1", skip=1)
    s3_http_faults.status(500, method="PUT", path="latest.txt", times=1)

    result = await through(s3_settings, s3_http_faults, home=source_home)(TaskType.SNAPSHOT_UPLOAD, {})

    assert result is not None and result["uploaded"]
    assert s3_http_faults.injected == 4, s3_http_faults.requests
    listed = {entry["Key"] for entry in s3_admin.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {ARCHIVE, ARCHIVE + ".sha256", "test-chain/state-sync/latest.txt"} <= listed


@pytest.fixture
def rpc(cometbft_factory: CometBFTFactory) -> Iterator[tuple[FakeCometBFT, HttpFaultProxy]]:
    node = cometbft_factory(height=90)
    for proxy in http_fault_proxy(node.url):
        yield node, proxy


@pytest.mark.slow
async def test_await_condition_survives_rpc_5xx_throttling_slow_bodies_and_resets(
    settings: AgentSettings, rpc: tuple[FakeCometBFT, HttpFaultProxy]
) -> None:
    node, proxy = rpc
    node.advance_every(0.05)
    proxy.status(502, path="/status", times=2)
    proxy.status(429, path="/status", times=2, retry_after="1")
    proxy.reset_mid_body(20, path="/status", times=2)
    proxy.slow_body(200, path="/status", times=1)
    runner = HandlerRunner(settings.model_copy(update={"rpc_endpoint": proxy.url}))

    result = await runner(
        TaskType.AWAIT_CONDITION,
        {"condition": "height", "targetHeight": 100, "pollIntervalSeconds": 0.1, "requestTimeoutSeconds": 5},
    )

    assert result is not None and result["height"] >= 100
    assert proxy.injected == 7, proxy.requests
    assert result["rpcErrors"] >= 6  # each failed poll was counted, not fatal

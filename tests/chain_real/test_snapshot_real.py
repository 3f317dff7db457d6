"""snapshot-upload of a stopped real node's snapshots, snapshot-restore into a fresh home: the restored snapshot is a
valid state of the chain (a third node state-syncs from it alone and lands on the source's app hash)."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from agent.models import TaskStatus, TaskType
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import SimdChain, rpc_get
from tests.fixtures.s3 import REGION

pytestmark = pytest.mark.chain

INTERVAL = 5


async def test_an_uploaded_then_restored_snapshot_restores_the_chain_state(
    simd_chain: SimdChain, chain_agent, s3_endpoint: str, s3_bucket: str, s3_admin: Any
) -> None:
    source = simd_chain.validator("a")
    source.edit_app(
        {"state-sync.snapshot-interval": INTERVAL, "state-sync.snapshot-keep-recent": 2, "pruning": "nothing"}
    )
    source.start(wait_height=4 * INTERVAL + 2)
    source.stop()
    s3 = {"s3_endpoint_url": s3_endpoint, "snapshot_bucket": s3_bucket, "snapshot_region": REGION}
    uploader: InProcessAgent = chain_agent(source.home, **s3)
    uploaded = await uploader.run(TaskType.SNAPSHOT_UPLOAD, {"compression": "gz"})
    assert uploaded.status is TaskStatus.COMPLETED, uploaded.error
    height = uploaded.result["height"]  # type: ignore[index]
    source.start(wait_height=None)

    server = simd_chain.follower("b", of=source, peer=False)
    restorer: InProcessAgent = chain_agent(server.home, **s3)
    restored = await restorer.run(TaskType.SNAPSHOT_RESTORE)
    assert restored.status is TaskStatus.COMPLETED, restored.error
    assert restored.result["height"] == height  # type: ignore[index]
    server.start(wait_height=None)

    fresh = simd_chain.follower("c", of=source, peer=False)
    trusted = rpc_get(source.rpc_url, f"block?height={height - 2}")
    fresh.edit_config(
        {
            "p2p.persistent_peers": server.p2p_address,  # the restored snapshot is the only one it can get
            "statesync.enable": True,
            "statesync.rpc_servers": f"{source.rpc_url},{source.rpc_url}",
            "statesync.trust_height": height - 2,
            "statesync.trust_hash": trusted["block_id"]["hash"],
            "statesync.discovery_time": "5s",
        }
    )
    fresh.start(wait_height=None)
    # Its only peer has no blocks: it stays at the snapshot's height, which only its application reports (/status
    # counts stored blocks, and state sync stores none).
    give_up = time.monotonic() + 120
    while _app_height(fresh.rpc_url) < height:
        assert time.monotonic() < give_up, "no state restored within 120 s"
        await asyncio.sleep(0.5)

    # The state it restored is the source's at that height: the app hash the source committed to in the next block.
    info = rpc_get(fresh.rpc_url, "abci_info")["response"]
    assert int(info["last_block_height"]) == height
    source_next = rpc_get(source.rpc_url, f"block?height={height + 1}")["block"]["header"]
    assert base64.b64decode(info["last_block_app_hash"]).hex().upper() == source_next["app_hash"]


def _app_height(rpc_url: str) -> int:
    try:
        return int(rpc_get(rpc_url, "abci_info")["response"].get("last_block_height") or 0)
    except (OSError, ValueError, RuntimeError):
        return 0

"""configure-state-sync against real nodes: node B, configured by the task from the witnesses' RPC only, state-syncs
from node A's snapshots and catches up."""

from __future__ import annotations

import asyncio

import pytest
import tomlkit

from agent.models import TaskStatus, TaskType
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import SimdChain, SimdNode, rpc_get

pytestmark = pytest.mark.chain

SNAPSHOT_INTERVAL = 5


def serve_snapshots(node: SimdNode) -> None:
    # SDK 0.45 wants the interval to be a multiple of pruning's keep-every (100 by default): keep every height.
    # Every snapshot is kept (keep-recent 0): with a block every 250 ms, keeping two would prune the one B found
    # before it fetched it.
    node.edit_app(
        {"state-sync.snapshot-interval": SNAPSHOT_INTERVAL, "state-sync.snapshot-keep-recent": 0, "pruning": "nothing"}
    )


def fast_discovery(node: SimdNode) -> None:
    # Tendermint's default spends 15 s discovering snapshots before it restores one; 5 s is its minimum.
    node.edit_config({"statesync.discovery_time": "5s"})


async def test_a_node_configured_by_the_task_state_syncs_and_catches_up(simd_chain: SimdChain, chain_agent) -> None:
    source = simd_chain.validator("a")
    serve_snapshots(source)
    source.start()
    witness = simd_chain.follower("w", of=source)  # a second, independent witness for the cross-check
    witness.start(wait_height=None)
    await asyncio.to_thread(source.wait_for_height, 2 * SNAPSHOT_INTERVAL + 2)
    await asyncio.to_thread(witness.wait_for_height, 2 * SNAPSHOT_INTERVAL)

    fresh = simd_chain.follower("b", of=source)
    fast_discovery(fresh)
    agent: InProcessAgent = chain_agent(fresh.home, rpc_endpoint=fresh.rpc_url)
    result = await agent.run(
        TaskType.CONFIGURE_STATE_SYNC,
        {"rpcServers": [source.rpc_url, witness.rpc_url], "trustHeightOffset": 3},
    )
    assert result.status is TaskStatus.COMPLETED, result.error
    statesync = tomlkit.parse((fresh.config_dir / "config.toml").read_text()).unwrap()["statesync"]
    assert statesync["enable"] is True
    assert statesync["trust_height"] == result.result["trustHeight"]  # type: ignore[index]
    assert (
        statesync["trust_hash"]
        == rpc_get(source.rpc_url, f"block?height={statesync['trust_height']}")["block_id"]["hash"]
    )

    fresh.start(wait_height=None)
    target = (source.height() or 0) + 3
    await asyncio.to_thread(fresh.wait_for_height, target, 120)

    status = rpc_get(fresh.rpc_url, "status")["sync_info"]
    earliest = int(status["earliest_block_height"])
    assert earliest > 1, "the node replayed from genesis instead of restoring a snapshot"
    assert earliest % SNAPSHOT_INTERVAL == 1 or earliest % SNAPSHOT_INTERVAL == 0
    assert "Snapshot restored" in fresh.process.tail(2000) or "Restored snapshot" in fresh.process.tail(2000)  # type: ignore[union-attr]
    height = int(status["latest_block_height"])
    assert (
        rpc_get(fresh.rpc_url, f"block?height={height}")["block_id"]["hash"]
        == rpc_get(source.rpc_url, f"block?height={height}")["block_id"]["hash"]
    )


async def test_a_second_run_reports_the_configuration_without_asking_the_witnesses(
    simd_chain: SimdChain, chain_agent
) -> None:
    source = simd_chain.validator("a").start(wait_height=4)
    witness = simd_chain.follower("w", of=source).start(wait_height=3)
    fresh = simd_chain.follower("b", of=source)
    agent: InProcessAgent = chain_agent(fresh.home)
    params = {"rpcServers": [source.rpc_url, witness.rpc_url], "trustHeightOffset": 1}
    first = await agent.run(TaskType.CONFIGURE_STATE_SYNC, params)
    assert first.status is TaskStatus.COMPLETED, first.error
    source.stop()
    witness.stop()

    again = await agent.run(TaskType.CONFIGURE_STATE_SYNC, params)

    assert again.status is TaskStatus.COMPLETED, again.error
    assert again.result is not None and again.result["alreadyConfigured"] is True
    assert again.result["trustHeight"] == first.result["trustHeight"]  # type: ignore[index]

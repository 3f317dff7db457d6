"""discover-peers against real nodes: candidates found through DNS on their own loopback addresses (same ports, like
machines), node IDs learnt from their /status, and a node started with the written peers connects to them."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.models import TaskStatus, TaskType
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import SimdChain, rpc_get
from tests.fixtures.dns import DnsStub
from tests.fixtures.ports import reserve_ports

pytestmark = pytest.mark.chain


async def test_peers_discovered_from_real_nodes_are_the_ones_the_node_then_connects_to(
    simd_chain: SimdChain, chain_agent, dns_stub: DnsStub
) -> None:
    ports = reserve_ports(3, hosts=("127.0.0.2", "127.0.0.3"))
    rpc_port, p2p_port, _ = ports
    source = simd_chain.validator("a", host="127.0.0.2", ports=ports).start(wait_height=2)
    other = simd_chain.follower("w", of=source, host="127.0.0.3", ports=ports).start(wait_height=2)
    dns_stub.add_a("a.nodes.test", "127.0.0.2")
    dns_stub.add_a("w.nodes.test", "127.0.0.3")
    fresh = simd_chain.follower("n", of=source, peer=False)
    agent: InProcessAgent = chain_agent(fresh.home)

    result = await agent.run(
        TaskType.DISCOVER_PEERS,
        {
            "sources": [{"type": "dns", "hosts": ["a.nodes.test", "w.nodes.test"], "nameservers": [dns_stub.address]}],
            "rpcPort": rpc_port,
            "p2pPort": p2p_port,
        },
    )

    assert result.status is TaskStatus.COMPLETED, result.error
    expected = {source.p2p_address, other.p2p_address}
    assert set(result.result["peers"]) == expected  # type: ignore[index]
    fresh.start(wait_height=None)
    await asyncio.to_thread(fresh.wait_for_height, (source.height() or 0) + 1)
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        peers = {peer["node_info"]["id"] for peer in rpc_get(fresh.rpc_url, "net_info")["peers"]}
        if peers == {source.node_id, other.node_id}:
            break
        await asyncio.sleep(0.3)
    assert peers == {source.node_id, other.node_id}

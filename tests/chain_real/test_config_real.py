"""config-apply, config-patch and config-validate on the files `simd init` writes (CometBFT/Tendermint-lineage keys
with underscores, Cosmos SDK app.toml with hyphens): the node starts with the patched files and uses the values."""

from __future__ import annotations

import asyncio

import pytest
import tomlkit

from agent.models import TaskStatus, TaskType
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import SimdChain, current_height, rpc_get
from tests.fixtures.ports import reserve_ports

pytestmark = pytest.mark.chain

HALT_HEIGHT = 6


async def test_node_starts_with_the_applied_and_patched_files_and_uses_their_values(
    simd_chain: SimdChain, chain_agent
) -> None:
    node = simd_chain.validator()
    agent: InProcessAgent = chain_agent(node.home)
    (new_rpc_port,) = reserve_ports(1)
    new_rpc = f"http://127.0.0.1:{new_rpc_port}"

    applied = await agent.run(
        TaskType.CONFIG_APPLY,
        {
            "incremental": True,
            "overrides": {"node.moniker": "applied-moniker", "network.rpc.laddr": f"tcp://127.0.0.1:{new_rpc_port}"},
        },
    )
    assert applied.status is TaskStatus.COMPLETED, applied.error
    patched = await agent.run(
        TaskType.CONFIG_PATCH,
        {
            "files": {
                "app.toml": {"halt-height": HALT_HEIGHT},
                "config.toml": {"consensus": {"timeout_commit": "300ms"}, "p2p": {"max_num_inbound_peers": 7}},
            }
        },
    )
    assert patched.status is TaskStatus.COMPLETED, patched.error
    validated = await agent.run(TaskType.CONFIG_VALIDATE)
    assert validated.status is TaskStatus.COMPLETED, validated.error

    config = tomlkit.parse((node.config_dir / "config.toml").read_text()).unwrap()
    assert config["moniker"] == "applied-moniker"
    assert config["rpc"]["laddr"] == f"tcp://127.0.0.1:{new_rpc_port}"
    assert config["p2p"]["max_num_inbound_peers"] == 7
    assert "max-num-inbound-peers" not in config["p2p"] and "moniker" in config

    node.start(wait_height=None)
    await asyncio.to_thread(node.process.wait_exit, 90)  # halt-height: the node stops itself  # type: ignore[union-attr]
    log = node.process.tail(200)  # type: ignore[union-attr]
    assert f"halt per configuration height {HALT_HEIGHT}" in log or "halting node per configuration" in log, log
    assert current_height(node.rpc_url) is None  # the old RPC address was never served

    node.edit_app({"halt-height": 0})  # serve again, to read the patched values over the new RPC address
    node.start(wait_height=None)
    status = await asyncio.to_thread(lambda: _wait_status(new_rpc))
    assert status["node_info"]["moniker"] == "applied-moniker"
    assert int(status["sync_info"]["latest_block_height"]) >= HALT_HEIGHT


def _wait_status(rpc_url: str) -> dict:
    import time

    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if current_height(rpc_url) is not None:
            return rpc_get(rpc_url, "status")
        time.sleep(0.2)
    pytest.fail(f"{rpc_url} never answered")


async def test_a_key_in_the_other_spelling_is_refused_and_matched_when_asked(
    simd_chain: SimdChain, chain_agent
) -> None:
    node = simd_chain.validator()
    agent: InProcessAgent = chain_agent(node.home)
    before = (node.config_dir / "config.toml").read_bytes()

    refused = await agent.run(TaskType.CONFIG_PATCH, {"files": {"config.toml": {"p2p": {"max-num-inbound-peers": 60}}}})
    assert refused.status is TaskStatus.FAILED
    assert refused.reason == "ParamsInvalid"
    assert "p2p.max-num-inbound-peers" in refused.error and "p2p.max_num_inbound_peers" in refused.error
    assert (node.config_dir / "config.toml").read_bytes() == before

    matched = await agent.run(
        TaskType.CONFIG_PATCH,
        {"files": {"config.toml": {"p2p": {"max-num-inbound-peers": 60}}}, "matchKeySpelling": True},
    )
    assert matched.status is TaskStatus.COMPLETED, matched.error
    p2p = tomlkit.parse((node.config_dir / "config.toml").read_text()).unwrap()["p2p"]
    assert p2p["max_num_inbound_peers"] == 60 and "max-num-inbound-peers" not in p2p


async def test_config_validate_flags_a_key_present_in_both_spellings(simd_chain: SimdChain, chain_agent) -> None:
    node = simd_chain.validator()
    agent: InProcessAgent = chain_agent(node.home)
    path = node.config_dir / "config.toml"
    # What config-patch with matchKeySpelling: false used to write, and what a hand edit still can.
    path.write_text(
        path.read_text().replace("max_num_inbound_peers = 40", "max_num_inbound_peers = 40\nmax-num-inbound-peers = 60")
    )

    result = await agent.run(TaskType.CONFIG_VALIDATE)

    assert result.status is TaskStatus.FAILED
    assert result.reason == "ConfigInvalid"
    assert "p2p.max_num_inbound_peers" in result.error and "p2p.max-num-inbound-peers" in result.error

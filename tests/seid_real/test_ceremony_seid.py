"""The genesis ceremony on seid: four validators, three whose gentx the agent makes and one made by a real
`seid gentx`, each home driven by its own agent (generate-identity, generate-gentx, upload-genesis-artifacts,
assemble-and-upload-genesis, configure-genesis, set-genesis-peers), the genesis bucket on moto's S3 server; the chain
starts with the four at equal power and each of them signs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agent.models import TaskStatus, TaskType
from agent.models.settings import AgentSettings
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import rpc_get
from tests.fixtures.s3 import REGION

from .conftest import SEID_MARKS, SeidNet, SeidNode

pytestmark = SEID_MARKS
CHAIN_ID = "seid-ceremony-1"
STAKE = "100000000usei"  # 100 units of voting power
BALANCE = "1000000000usei"
KEY_FILES = ("config/node_key.json", "config/priv_validator_key.json", "data/priv_validator_state.json")


async def done(agent: InProcessAgent, task_type: TaskType, params: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await agent.run(task_type, params or {})
    assert result.status is TaskStatus.COMPLETED, f"{task_type}: {result.reason}: {result.error} ({result.hint})"
    return result.result or {}


def seid_gentx(node: SeidNode, *, ip: str) -> None:
    """`seid gentx` in the home (its own test keyring and genesis account), signed with the agent-made consensus key.
    seid writes the memo `<node id>@<ip>:26656` (a fixed port), so this validator's advertised address is not where
    it listens: the others are reached because it dials them."""
    keyring = ["--keyring-backend", "test"]
    address = json.loads(node.seid("keys", "add", node.name, *keyring, "--output", "json"))["address"]
    node.seid("add-genesis-account", address, BALANCE, *keyring)
    node.seid("gentx", node.name, STAKE, "--chain-id", CHAIN_ID, "--ip", ip, *keyring)


def slower_blocks(genesis: dict[str, Any]) -> None:
    """seid's default consensus timeouts (50 ms vote and commit) let +2/3 close every commit before the fourth vote
    arrives on two loaded cores; at 500 ms every validator's precommit makes it into the next block."""
    timeouts = genesis["consensus_params"]["timeout"]
    timeouts["vote"] = timeouts["commit"] = "500000000"


async def test_four_validators_three_agent_gentxs_and_one_seid_gentx_all_sign(
    seid_net: SeidNet, s3_settings: AgentSettings, tmp_path: Path
) -> None:
    nodes: list[SeidNode] = []
    agents: list[InProcessAgent] = []
    identities: list[dict[str, Any]] = []
    try:
        for index in range(4):
            name = f"val-{index}"
            node = await asyncio.to_thread(seid_net.init, name, "validator", chain_id=CHAIN_ID)
            for relative in KEY_FILES:  # the agent makes the keys
                (node.home / relative).unlink()
            agent = InProcessAgent(
                AgentSettings(
                    home=node.home,
                    chain_id=CHAIN_ID,
                    pod_name=f"{name}-0",
                    pod_namespace="sei",
                    db_path=tmp_path / f"{name}.db",
                    s3_endpoint_url=s3_settings.s3_endpoint_url,
                    genesis_bucket=s3_settings.genesis_bucket,
                    genesis_region=REGION,
                )
            )
            nodes.append(node)
            agents.append(agent)
            identities.append(await done(agent, TaskType.GENERATE_IDENTITY, {"chainId": CHAIN_ID, "moniker": name}))
            if index < 3:
                gentx = {"stakingAmount": STAKE, "accountBalance": BALANCE, "host": "127.0.0.1"}
                await done(agent, TaskType.GENERATE_GENTX, {**gentx, "p2pPort": node.p2p_port})
            else:
                await asyncio.to_thread(seid_gentx, node, ip="127.0.0.4")
        for node, agent in zip(nodes, agents, strict=True):
            await done(agent, TaskType.UPLOAD_GENESIS_ARTIFACTS, {"nodeName": node.name})
        nodes[0].edit_genesis(slower_blocks)  # the genesis the assembly starts from
        nodes_param = [{"name": node.name} for node in nodes]
        await done(agents[0], TaskType.ASSEMBLE_AND_UPLOAD_GENESIS, {"accountBalance": BALANCE, "nodes": nodes_param})
        for agent in agents:
            await done(agent, TaskType.CONFIGURE_GENESIS)
            await done(agent, TaskType.SET_GENESIS_PEERS)
        genesis = (nodes[0].config_dir / "genesis.json").read_bytes()
        assert all((node.config_dir / "genesis.json").read_bytes() == genesis for node in nodes)
        await asyncio.to_thread(nodes[0].seid, "validate-genesis")

        for node in nodes:
            node.start(wait_height=None)
        for node in nodes:
            await asyncio.to_thread(node.wait_for_height, 6)

        expected = {identity["validatorAddress"] for identity in identities}
        validators = rpc_get(nodes[1].rpc_url, "validators")["validators"]
        assert {v["address"] for v in validators} == expected
        assert {v["voting_power"] for v in validators} == {"100"}
        signed: set[str] = set()  # a commit closes at +2/3: a block may lack one late signature, not all of them
        for height in range(2, 6):
            signatures = rpc_get(nodes[0].rpc_url, f"block?height={height + 1}")["block"]["last_commit"]["signatures"]
            signed |= {sig["validator_address"] for sig in signatures if sig["block_id_flag"] == 2}
        assert signed == expected
    finally:
        for agent in agents:
            await agent.close()

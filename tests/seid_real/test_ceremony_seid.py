"""The genesis ceremony and a fork on seid, each home driven by its own agent (generate-identity, generate-gentx,
upload-genesis-artifacts, assemble-and-upload-genesis or assemble-genesis-fork, configure-genesis,
set-genesis-peers), the genesis bucket on moto's S3 server.

- Four validators, three whose gentx the agent makes and one made by a real `seid gentx`: the chain starts with the
  four at equal power and each of them signs.
- export-state of a stopped seid validator (the handler runs `seid export`), then assemble-genesis-fork with three
  new validators: the fork starts above the old height, every new validator signs, the old balances are kept.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.models import TaskStatus, TaskType
from agent.models.settings import AgentSettings
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import current_height, rpc_get
from tests.fixtures.s3 import REGION
from tests.fixtures.waiting import poll_until

from .conftest import SEID_MARKS, SeidNet, SeidNode

pytestmark = SEID_MARKS
STAKE = "100000000usei"  # 100 units of voting power
BALANCE = "1000000000usei"
KEY_FILES = ("config/node_key.json", "config/priv_validator_key.json", "data/priv_validator_state.json")


async def done(agent: InProcessAgent, task_type: TaskType, params: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await agent.run(task_type, params or {})
    assert result.status is TaskStatus.COMPLETED, f"{task_type}: {result.reason}: {result.error} ({result.hint})"
    return result.result or {}


def slower_blocks(genesis: dict[str, Any]) -> None:
    """seid's default consensus timeouts (50 ms vote and commit) let +2/3 close every commit before the fourth vote
    arrives on two loaded cores; at 500 ms every validator's precommit makes it into the next block."""
    timeouts = genesis["consensus_params"]["timeout"]
    timeouts["vote"] = timeouts["commit"] = "500000000"


class SeidCeremony:
    """Validator homes made by `seid init` whose keys the agent makes, each with its own in-process agent."""

    def __init__(self, net: SeidNet, settings: AgentSettings, directory: Path, chain_id: str):
        self.net = net
        self.chain_id = chain_id
        self.directory = directory
        self.s3 = {
            "s3_endpoint_url": settings.s3_endpoint_url,
            "genesis_bucket": settings.genesis_bucket,
            "genesis_region": REGION,
        }
        self.nodes: list[SeidNode] = []
        self.agents: list[InProcessAgent] = []
        self.identities: list[dict[str, Any]] = []

    def agent_for(self, node: SeidNode, **settings: Any) -> InProcessAgent:
        agent = InProcessAgent(
            AgentSettings(
                home=node.home,
                chain_id=node.chain_id,
                pod_name=f"{node.name}-0",
                pod_namespace="sei",
                db_path=self.directory / f"{node.name}.db",
                **self.s3,
                **settings,
            )
        )
        self.agents.append(agent)
        return agent

    async def add(self, name: str) -> tuple[SeidNode, InProcessAgent]:
        node = await asyncio.to_thread(self.net.init, name, "validator", chain_id=self.chain_id)
        for relative in KEY_FILES:  # the agent makes the keys
            (node.home / relative).unlink()
        agent = self.agent_for(node)
        self.identities.append(
            await done(agent, TaskType.GENERATE_IDENTITY, {"chainId": self.chain_id, "moniker": name})
        )
        self.nodes.append(node)
        return node, agent

    async def agent_gentx(self, node: SeidNode, agent: InProcessAgent) -> dict[str, Any]:
        gentx = {"stakingAmount": STAKE, "accountBalance": BALANCE, "host": "127.0.0.1", "p2pPort": node.p2p_port}
        return await done(agent, TaskType.GENERATE_GENTX, gentx)

    async def publish_all(self) -> None:
        for node, agent in zip(self.nodes, self.agents[-len(self.nodes) :], strict=True):
            await done(agent, TaskType.UPLOAD_GENESIS_ARTIFACTS, {"nodeName": node.name})

    @property
    def node_list(self) -> list[dict[str, str]]:
        return [{"name": node.name} for node in self.nodes]

    async def distribute(self) -> None:
        for agent in self.agents[-len(self.nodes) :]:
            await done(agent, TaskType.CONFIGURE_GENESIS)
            await done(agent, TaskType.SET_GENESIS_PEERS)
        genesis = (self.nodes[0].config_dir / "genesis.json").read_bytes()
        assert all((node.config_dir / "genesis.json").read_bytes() == genesis for node in self.nodes)
        await asyncio.to_thread(self.nodes[0].seid, "validate-genesis")

    async def start_and_reach(self, height: int) -> None:
        for node in self.nodes:
            node.start(wait_height=None)
        for node in self.nodes:
            await asyncio.to_thread(node.wait_for_height, height)

    def signers(self, heights: range) -> set[str]:
        """Validators with a commit signature in any of `heights` (a commit closes at +2/3: one block may lack a late
        signature, not every block)."""
        signed: set[str] = set()
        for height in heights:
            block = rpc_get(self.nodes[0].rpc_url, f"block?height={height + 1}")["block"]
            signatures = block["last_commit"]["signatures"]
            signed |= {sig["validator_address"] for sig in signatures if sig["block_id_flag"] == 2}
        return signed

    def wait_all_sign(self, first: int, deadline: float = 120.0) -> None:
        """Until every validator has signed a block from `first` on. A validator that starts before its peers listen
        stays in block sync until seid's redial reaches two of them, then joins consensus."""
        seen: set[str] = set()
        checked = first

        def everyone_signed() -> bool:
            nonlocal checked
            height = current_height(self.nodes[0].rpc_url) or 0
            if height - 1 > checked:
                seen.update(self.signers(range(checked, height - 1)))
                checked = height - 1
            return seen == self.consensus_addresses

        poll_until(everyone_signed, what="every validator signing", timeout=deadline, interval=1.0)

    @property
    def consensus_addresses(self) -> set[str]:
        return {identity["validatorAddress"] for identity in self.identities}

    async def close(self) -> None:
        for agent in self.agents:
            await agent.close()


@pytest.fixture
async def ceremony(
    seid_net: SeidNet, s3_settings: AgentSettings, tmp_path: Path
) -> AsyncIterator[Callable[[str], SeidCeremony]]:
    made: list[SeidCeremony] = []

    def make(chain_id: str) -> SeidCeremony:
        made.append(SeidCeremony(seid_net, s3_settings, tmp_path, chain_id))
        return made[-1]

    yield make
    for item in made:
        await item.close()


def seid_gentx(node: SeidNode, *, ip: str) -> None:
    """`seid gentx` in the home (its own test keyring and genesis account), signed with the agent-made consensus key.
    seid writes the memo `<node id>@<ip>:26656` (a fixed port), so this validator's advertised address is not where
    it listens: the others are reached because it dials them."""
    keyring = ["--keyring-backend", "test"]
    address = json.loads(node.seid("keys", "add", node.name, *keyring, "--output", "json"))["address"]
    node.seid("add-genesis-account", address, BALANCE, *keyring)
    node.seid("gentx", node.name, STAKE, "--chain-id", node.chain_id, "--ip", ip, *keyring)


async def test_four_validators_three_agent_gentxs_and_one_seid_gentx_all_sign(ceremony: Any) -> None:
    chain: SeidCeremony = ceremony("seid-ceremony-1")
    for index in range(4):
        node, agent = await chain.add(f"val-{index}")
        if index < 3:
            await chain.agent_gentx(node, agent)
        else:
            await asyncio.to_thread(seid_gentx, node, ip="127.0.0.4")
    await chain.publish_all()
    chain.nodes[0].edit_genesis(slower_blocks)  # the genesis the assembly starts from
    params = {"accountBalance": BALANCE, "nodes": chain.node_list}
    await done(chain.agents[0], TaskType.ASSEMBLE_AND_UPLOAD_GENESIS, params)
    await chain.distribute()

    await chain.start_and_reach(6)

    validators = rpc_get(chain.nodes[1].rpc_url, "validators")["validators"]
    assert {v["address"] for v in validators} == chain.consensus_addresses
    assert {v["voting_power"] for v in validators} == {"100"}
    await asyncio.to_thread(chain.wait_all_sign, 2)


def query(node: SeidNode, *args: str) -> Any:
    return json.loads(node.seid("query", *args, "--node", f"tcp://127.0.0.1:{node.ports['rpc']}", "--output", "json"))


async def test_fork_of_a_seid_export_starts_with_new_validators_and_keeps_balances(
    seid_net: SeidNet, ceremony: Any, s3_admin: Any, s3_bucket: str
) -> None:
    source = seid_net.validator("src", chain_id="seid-src-1")
    await asyncio.to_thread(source.start, wait_height=5)
    old_balance = query(source, "bank", "balances", source.key_address)["balances"]
    await asyncio.to_thread(source.stop)
    chain: SeidCeremony = ceremony("seid-fork-1")
    exporter = chain.agent_for(source, seid_binary=str(source.binary))
    exported = await done(exporter, TaskType.EXPORT_STATE)
    export = json.loads(s3_admin.get_object(Bucket=s3_bucket, Key=exported["s3Key"])["Body"].read())
    initial_height = int(export["initial_height"])
    assert initial_height > 5

    for index in range(3):
        node, agent = await chain.add(f"new-{index}")
        await chain.agent_gentx(node, agent)
    await chain.publish_all()
    params = {"sourceChainId": "seid-src-1", "accountBalance": BALANCE, "nodes": chain.node_list}
    fork = await done(chain.agents[-3], TaskType.ASSEMBLE_GENESIS_FORK, params)
    assert fork["movedToCommunityPool"] != "nothing"  # the old validator's stake and unclaimed rewards
    await chain.distribute()

    await chain.start_and_reach(initial_height + 3)

    await asyncio.to_thread(chain.wait_all_sign, initial_height)
    kept = await asyncio.to_thread(query, chain.nodes[0], "bank", "balances", source.key_address)
    assert kept["balances"] == old_balance

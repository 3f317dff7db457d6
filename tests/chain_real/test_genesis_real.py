"""The genesis tasks against real binaries: CometBFT v0.38 reads the agent's identity, and stock simd (Cosmos SDK
v0.45) starts chains whose genesis the agent assembled, from a ceremony or from a real export.

Every agent runs with `SEI_BECH32_PREFIX=cosmos SEI_BOND_DENOM=stake` (stock simd's identity), through the real
engine and SQLite store (`chain_agent`), with moto's S3 server as the genesis bucket. Homes are made by `simd init`
(the seid-init container's role: full app_state, config.toml, app.toml) after which the agent's generate-identity
creates the keys. Nodes listen on reserved loopback ports and make a block about every 250 ms.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.chain.cosmos.address import Bech32Prefixes
from agent.chain.cosmos.gentx import verify_gentx
from agent.chain.crypto import bech32
from agent.models import TaskStatus, TaskType
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import ChainTools, ProcessGroup, SimdChain, SimdNode, rpc_get, wait_for_height
from tests.fixtures.ports import reserve_ports
from tests.fixtures.s3 import REGION

pytestmark = pytest.mark.chain

SIMD_IDENTITY = {"bech32_prefix": "cosmos", "bond_denom": "stake"}
COSMOS = Bech32Prefixes.from_main("cosmos")
STAKE = "100000000stake"  # 100 units of voting power
BALANCE = "1000000000stake"
KEY_FILES = ("config/node_key.json", "config/priv_validator_key.json", "data/priv_validator_state.json")


async def done(agent: InProcessAgent, task_type: TaskType, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one task through the engine; it must complete."""
    result = await agent.run(task_type, params or {})
    assert result.status is TaskStatus.COMPLETED, f"{task_type}: {result.reason}: {result.error} ({result.hint})"
    return result.result or {}


def run(argv: list[str | Path], **kwargs: Any) -> str:
    completed = subprocess.run([str(part) for part in argv], capture_output=True, text=True, timeout=120, **kwargs)
    assert completed.returncode == 0, f"{argv[1:3]} -> {completed.returncode}\n{completed.stderr[-3000:]}"
    return completed.stdout


def bare_home(simd_chain: SimdChain, name: str, chain_id: str) -> SimdNode:
    """`simd init` (genesis, config.toml, app.toml on reserved ports), then the keys removed: the agent makes them."""
    node = simd_chain._init(name, chain_id, "127.0.0.1", None)  # the fixture's home recipe: ports, 250 ms blocks
    for relative in KEY_FILES:
        (node.home / relative).unlink()
    return node


class Ceremony:
    """Validator homes, each with its own in-process agent, sharing the test's genesis bucket."""

    def __init__(self, simd_chain: SimdChain, chain_agent: Any, s3_settings: Any, chain_id: str, **settings: Any):
        self.simd_chain = simd_chain
        self.chain_agent = chain_agent
        self.chain_id = chain_id
        self.settings = {
            **SIMD_IDENTITY,
            "chain_id": chain_id,
            "s3_endpoint_url": s3_settings.s3_endpoint_url,
            "genesis_bucket": s3_settings.genesis_bucket,
            "genesis_region": REGION,
            **settings,
        }
        self.nodes: list[SimdNode] = []
        self.agents: list[InProcessAgent] = []
        self.identities: list[dict[str, Any]] = []

    async def add(self, name: str) -> tuple[SimdNode, InProcessAgent]:
        """A home with the agent's identity (generate-identity) for this chain."""
        node = await asyncio.to_thread(bare_home, self.simd_chain, name, self.chain_id)
        agent = self.chain_agent(node.home, pod_name=f"{name}-0", **self.settings)
        self.identities.append(
            await done(agent, TaskType.GENERATE_IDENTITY, {"chainId": self.chain_id, "moniker": name})
        )
        self.nodes.append(node)
        self.agents.append(agent)
        return node, agent

    async def agent_gentx(self, node: SimdNode, agent: InProcessAgent, **params: Any) -> dict[str, Any]:
        gentx = {"stakingAmount": STAKE, "accountBalance": BALANCE, "host": "127.0.0.1", "p2pPort": node.p2p_port}
        return await done(agent, TaskType.GENERATE_GENTX, {**gentx, **params})

    async def publish_all(self) -> None:
        for node, agent in zip(self.nodes, self.agents, strict=True):
            await done(agent, TaskType.UPLOAD_GENESIS_ARTIFACTS, {"nodeName": node.name})

    @property
    def node_list(self) -> list[dict[str, str]]:
        return [{"name": node.name} for node in self.nodes]

    async def assemble(self) -> dict[str, Any]:
        """assemble-and-upload-genesis on the first node."""
        params = {"accountBalance": BALANCE, "nodes": self.node_list}
        return await done(self.agents[0], TaskType.ASSEMBLE_AND_UPLOAD_GENESIS, params)

    async def distribute(self) -> None:
        """configure-genesis and set-genesis-peers in every home."""
        for agent in self.agents:
            await done(agent, TaskType.CONFIGURE_GENESIS)
            await done(agent, TaskType.SET_GENESIS_PEERS)

    async def start_and_reach(self, height: int) -> None:
        for node in self.nodes:
            node.start(wait_height=None)
        for node in self.nodes:
            await asyncio.to_thread(node.wait_for_height, height, 90.0)

    def signers(self, height: int) -> set[str]:
        """Validator addresses (upper hex) with a commit signature for block `height` (in block `height + 1`)."""
        block = rpc_get(self.nodes[0].rpc_url, f"block?height={height + 1}")["block"]
        return {sig["validator_address"] for sig in block["last_commit"]["signatures"] if sig["block_id_flag"] == 2}


@pytest.fixture
def ceremony(simd_chain: SimdChain, chain_agent: Any, s3_settings: Any) -> Any:
    return lambda chain_id, **settings: Ceremony(simd_chain, chain_agent, s3_settings, chain_id, **settings)


# --- generate-identity against cometbft ---------------------------------------------------------------------------


async def test_cometbft_reads_the_identity_the_agent_reports_and_signs_blocks_with_it(
    chain_tools: ChainTools, chain_processes: ProcessGroup, chain_agent: Any, tmp_path: Path
) -> None:
    home = tmp_path / "cometbft-home"
    home.mkdir()
    agent = chain_agent(home, chain_id="identity-1")
    identity = await done(agent, TaskType.GENERATE_IDENTITY, {"chainId": "identity-1", "moniker": "solo"})

    assert run([chain_tools.cometbft, "show-node-id", "--home", home]).strip() == identity["nodeId"]
    shown = json.loads(run([chain_tools.cometbft, "show-validator", "--home", home]))
    assert shown == {"type": "tendermint/PubKeyEd25519", "value": identity["consensusPubKey"]}

    # The agent's genesis with this validator in it; cometbft's kvstore app keeps the genesis validator set.
    genesis_path = home / "config" / "genesis.json"
    genesis = json.loads(genesis_path.read_text())
    genesis["validators"] = [{"address": identity["validatorAddress"], "pub_key": shown, "power": "10", "name": "solo"}]
    genesis_path.write_text(json.dumps(genesis))
    rpc_port, p2p_port = reserve_ports(2)
    node = chain_processes.start(
        "cometbft",
        [
            chain_tools.cometbft,
            "start",
            "--home",
            home,
            "--proxy_app",
            "kvstore",
            "--rpc.laddr",
            f"tcp://127.0.0.1:{rpc_port}",
            "--p2p.laddr",
            f"tcp://127.0.0.1:{p2p_port}",
            "--consensus.create_empty_blocks=true",
        ],
    )
    rpc = f"http://127.0.0.1:{rpc_port}"
    await asyncio.to_thread(wait_for_height, rpc, 3, 60.0, alive=lambda: node.running)

    status = rpc_get(rpc, "status")
    assert status["node_info"]["id"] == identity["nodeId"]
    assert status["validator_info"]["address"] == identity["validatorAddress"]
    commit = rpc_get(rpc, "block?height=3")["block"]["last_commit"]["signatures"]
    assert [sig["validator_address"] for sig in commit] == [identity["validatorAddress"]]
    state = json.loads((home / "data" / "priv_validator_state.json").read_text())
    assert int(state["height"]) >= 2  # the agent's signing state file is the one cometbft advances


# --- the genesis ceremony -----------------------------------------------------------------------------------------


def consensus_addresses(ceremony: Ceremony) -> set[str]:
    return {identity["validatorAddress"] for identity in ceremony.identities}


async def test_three_validator_ceremony_starts_a_chain_all_three_sign(
    ceremony: Any, s3_admin: Any, s3_bucket: str
) -> None:
    chain = ceremony("ceremony-1")
    for name in ("val-0", "val-1", "val-2"):
        node, agent = await chain.add(name)
        await chain.agent_gentx(node, agent)
    await chain.publish_all()

    assembled = await chain.assemble()
    await chain.distribute()

    published = s3_admin.get_object(Bucket=s3_bucket, Key="ceremony-1/genesis.json")["Body"].read()
    assert hashlib.sha256(published).hexdigest() == assembled["genesisHash"]
    for node in chain.nodes:
        assert (node.config_dir / "genesis.json").read_bytes() == published
    assert "warning" not in assembled
    genesis = json.loads(published)
    supply = genesis["app_state"]["bank"]["supply"]
    assert supply == [{"denom": "stake", "amount": str(3 * 1_000_000_000)}]
    await asyncio.to_thread(chain.nodes[0].simd, "validate-genesis")

    await chain.start_and_reach(5)

    for height in (3, 4):
        assert chain.signers(height) == consensus_addresses(chain)
    validators = rpc_get(chain.nodes[1].rpc_url, "validators")["validators"]
    assert {v["address"] for v in validators} == consensus_addresses(chain)
    assert {v["voting_power"] for v in validators} == {"100"}


async def test_add_genesis_account_after_the_agents_steps_keeps_the_genesis_valid(
    ceremony: Any, chain_tools: ChainTools, tmp_path: Path
) -> None:
    chain = ceremony("ceremony-2")
    node, agent = await chain.add("val-0")
    await chain.agent_gentx(node, agent)
    await chain.publish_all()
    assembled = await chain.assemble()
    assert "at least 3 nodes" in assembled["warning"]

    outsider = bech32.encode(COSMOS.account, bytes(20))
    await asyncio.to_thread(node.simd, "add-genesis-account", outsider, "12345stake")
    await asyncio.to_thread(node.simd, "validate-genesis")
    genesis = json.loads((node.config_dir / "genesis.json").read_text())
    assert genesis["app_state"]["bank"]["supply"] == [{"denom": "stake", "amount": str(1_000_000_000 + 12345)}]


def simd_gentx(node: SimdNode, *, ip: str, amino: bool) -> Path:
    """`simd gentx` in the home (its own test keyring and genesis account), re-signed in amino JSON when asked.

    simd v0.45 writes the memo `<node id>@<ip>:26656` (the port is fixed), so each such validator gets its own `ip`
    to keep P2P addresses distinct; the others reach it because it dials them.
    """
    keyring = ["--keyring-backend", "test"]
    address = json.loads(node.simd("keys", "add", node.name, *keyring, "--output", "json"))["address"]
    node.simd("add-genesis-account", address, BALANCE, *keyring)
    node.simd("gentx", node.name, STAKE, "--chain-id", node.chain_id, "--ip", ip, *keyring)
    [path] = (node.config_dir / "gentx").glob("gentx-*.json")
    if amino:
        unsigned = json.loads(path.read_text())
        unsigned["signatures"] = []
        unsigned["auth_info"]["signer_infos"] = []
        draft = node.home / "unsigned-gentx.json"
        draft.write_text(json.dumps(unsigned))
        node.simd(
            "tx", "sign", str(draft), "--sign-mode", "amino-json", "--offline", "--account-number", "0",
            "--sequence", "0", "--chain-id", node.chain_id, "--from", node.name, *keyring,
            "--output-document", str(path),
        )  # fmt: skip
    return path


async def test_gentxs_made_by_simd_direct_and_amino_json_join_an_agent_ceremony(ceremony: Any) -> None:
    chain = ceremony("mixed-1")
    node, agent = await chain.add("agent-made")
    await chain.agent_gentx(node, agent)
    modes = {}
    for name, ip, amino in (("simd-direct", "127.0.0.2", False), ("simd-amino", "127.0.0.3", True)):
        node, _ = await chain.add(name)
        path = await asyncio.to_thread(simd_gentx, node, ip=ip, amino=amino)
        modes[name] = verify_gentx(json.loads(path.read_text()), "mixed-1", COSMOS).sign_mode.name
    assert modes == {"simd-direct": "SIGN_MODE_DIRECT", "simd-amino": "SIGN_MODE_LEGACY_AMINO_JSON"}
    await chain.publish_all()

    await chain.assemble()
    await chain.distribute()
    await asyncio.to_thread(chain.nodes[0].simd, "validate-genesis")
    await chain.start_and_reach(4)

    assert chain.signers(3) == consensus_addresses(chain)


# --- export and fork -----------------------------------------------------------------------------------------------


def query(node: SimdNode, *args: str) -> Any:
    """`simd query <args>` against the running node, as JSON."""
    return json.loads(node.simd("query", *args, "--node", f"tcp://127.0.0.1:{node.rpc_port}", "--output", "json"))


def module_address(name: str) -> str:
    return bech32.encode(COSMOS.account, hashlib.sha256(name.encode()).digest()[:20])


async def test_fork_of_a_real_export_starts_with_new_validators_and_consistent_state(
    simd_chain: SimdChain, chain_agent: Any, ceremony: Any, s3_settings: Any, s3_admin: Any, s3_bucket: str
) -> None:
    # The source chain: a single simd validator, run for a few blocks (rewards, community pool), then stopped.
    source = simd_chain.validator("src", chain_id="src-1").start(wait_height=5)
    await asyncio.to_thread(source.stop)
    exporter = chain_agent(
        source.home,
        chain_id="src-1",
        seid_binary=str(source.tools.simd),  # export-state runs `<SEI_BINARY> export --home <home>`
        s3_endpoint_url=s3_settings.s3_endpoint_url,
        genesis_bucket=s3_bucket,
        genesis_region=REGION,
        **SIMD_IDENTITY,
    )
    exported = await done(exporter, TaskType.EXPORT_STATE)
    export = json.loads(s3_admin.get_object(Bucket=s3_bucket, Key=exported["s3Key"])["Body"].read())
    accounts = len(export["app_state"]["auth"]["accounts"])
    initial_height = int(export["initial_height"])
    old_balance = query_balance_from(export, source.key_address)

    # Stock SDK rule: above height 1, gentxs are verified with the accounts' real numbers (appended in node order).
    chain = ceremony("fork-1", gentx_account_numbers="initial-height")
    new_accounts = []
    for index, name in enumerate(("new-0", "new-1", "new-2")):
        node, agent = await chain.add(name)
        gentx = await chain.agent_gentx(node, agent, accountNumber=accounts + index)
        new_accounts.append(gentx["accountAddress"])
    await chain.publish_all()
    fork = await done(
        chain.agents[0],
        TaskType.ASSEMBLE_GENESIS_FORK,
        {"sourceChainId": "src-1", "accountBalance": BALANCE, "nodes": chain.node_list},
    )
    assert fork["movedToCommunityPool"] != "nothing"  # the old validator's stake and unclaimed rewards
    await chain.distribute()
    await asyncio.to_thread(chain.nodes[0].simd, "validate-genesis")

    # simd's crisis module asserts every invariant (supply, pools, distribution) at InitGenesis: a start proves them.
    await chain.start_and_reach(initial_height + 3)

    assert chain.signers(initial_height + 1) == consensus_addresses(chain)
    first = chain.nodes[0]
    for index, address in enumerate(new_accounts):
        account = await asyncio.to_thread(query, first, "auth", "account", address)
        assert int(account["account_number"]) == accounts + index
    kept = await asyncio.to_thread(query, first, "bank", "balances", source.key_address)
    assert kept["balances"] == old_balance
    bonded = (await asyncio.to_thread(query, first, "bank", "balances", module_address("bonded_tokens_pool")))[
        "balances"
    ]
    assert bonded == [{"denom": "stake", "amount": str(3 * 100_000_000)}]  # only the new validators' stake


def query_balance_from(genesis: dict[str, Any], address: str) -> list[dict[str, str]]:
    for entry in genesis["app_state"]["bank"]["balances"]:
        if entry["address"] == address:
            return entry["coins"]  # type: ignore[no-any-return]
    raise AssertionError(f"{address} has no balance in the export")

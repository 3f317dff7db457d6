"""Governance tasks on a real 3-validator simd chain (Cosmos SDK v0.45, 10 s voting period).

The chain is built once for the module by simd's own commands, with one twist that is itself under test: each
validator's operator key is made by the agent (its keystore, as generate-gentx writes it), exported with
`nodetask-agent keys export`, and imported with a real `simd keys import`; simd's gentx then signs with it. So the
agents sign with exactly the keys that hold the chain's voting power.

The agents run with spending ceilings exactly at what the tests pay (`CEILINGS`). Covered: a param-change proposal
submitted by an agent, voted yes by the three agents (one of them killed with SIGKILL right after its broadcast and
restarted: exactly one transaction, checked by the account sequence), passes and changes the parameter; a
software-upgrade proposal (its plan's zero time on the wire) sets the upgrade plan; insufficient fees, a fee in a
denom the chain refuses, a wrong chain ID and an unknown proposal fail with the chain's reasons (and
`inclusionStatus` where the chain committed); a fee draining the account is refused before signing; a resumed run
re-broadcasts the recorded bytes instead of re-signing; a record whose sequence another transaction used fails with
`SequenceConsumed`; a record for other params is not adopted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.chain.broadcast import TxRecord, TxRecords
from agent.chain.cosmos.address import Bech32Prefixes, ChainIdentity
from agent.chain.cosmos.keystore import AccountKey, ensure_account_key
from agent.chain.cosmos.proto import Coin, MsgVote, VoteOption
from agent.chain.cosmos.tx import sign_tx
from agent.models import Task, TaskResult, TaskStatus, TaskType, format_timestamp, utcnow
from agent.tasks.gov import GovVoteParams, params_hash
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import (
    ChainTools,
    ProcessGroup,
    SimdChain,
    SimdNode,
    gov_vote_killed_after_broadcast,
    wait_for_height,
)
from tests.fixtures.httpfaults import HttpFaultProxy

pytestmark = pytest.mark.chain

CHAIN_ID = "gov-real"
DENOM = "stake"
PREFIX = "cosmos"
VOTING_PERIOD_SECONDS = 10
MIN_GAS_PRICE = "0.01stake"
GAS = 300_000
FEES = "3000stake"  # exactly GAS x MIN_GAS_PRICE
DEPOSIT = "1000stake"
CEILINGS = {"max_gas_price": f"{MIN_GAS_PRICE},0.01uatom", "max_deposit": DEPOSIT}
"""The agents' spending ceilings (`NODETASK_MAX_GAS_PRICE`, `NODETASK_MAX_DEPOSIT`): exactly what the tests pay, and
a denom the chain refuses for fees (so that refusal is the chain's)."""
PASSPHRASE = "export passphrase for the test"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Validator:
    node: SimdNode
    key: AccountKey

    @property
    def address(self) -> str:
        return self.key.address


@dataclass
class GovChain:
    validators: list[Validator]
    tools: ChainTools
    processes: ProcessGroup

    def query(self, *args: str) -> Any:
        """`simd query` on validator 0, once it has caught up with the highest running validator: an agent confirms
        inclusion on its own node, which may be a block ahead of validator 0."""
        node = self.validators[0].node
        others = [v.node.height() for v in self.validators[1:] if v.node.running]
        highest = max((height for height in others if height is not None), default=0)
        if highest:
            node.wait_for_height(highest, deadline=15.0)
        output = subprocess.run(
            [str(self.tools.simd), "query", *args, "--node", f"tcp://127.0.0.1:{node.rpc_port}", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return json.loads(output)

    def sequence(self, address: str) -> int:
        return int(self.query("auth", "account", address)["sequence"])

    def settled_sequence(self, address: str, expected: int, deadline: float = 15.0) -> int:
        """The sequence as the queried node (validator 0) sees it once it reached `expected`, or the last one seen:
        the agent waits for inclusion on its own node, which may be a block ahead of validator 0."""
        give_up = time.monotonic() + deadline
        while True:
            sequence = self.sequence(address)
            if sequence >= expected or time.monotonic() > give_up:
                return sequence
            time.sleep(0.2)

    def proposal(self, proposal_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.query("gov", "proposal", str(proposal_id))
        return result

    def wait_for_proposal_end(self, proposal_id: int, deadline: float = 60.0) -> str:
        give_up = time.monotonic() + deadline
        while True:
            status = str(self.proposal(proposal_id)["status"])
            if status not in ("PROPOSAL_STATUS_VOTING_PERIOD", "PROPOSAL_STATUS_DEPOSIT_PERIOD"):
                return status
            if time.monotonic() > give_up:
                pytest.fail(f"proposal {proposal_id} still {status} after {deadline:g}s")
            time.sleep(0.5)


IDENTITY = ChainIdentity(Bech32Prefixes.from_main(PREFIX), bond_denom=DENOM)


def _import_key(node: SimdNode, key_home: Path) -> None:
    """`nodetask-agent keys export` piped into a real `simd keys import` (the operator's documented path)."""
    exported = subprocess.run(
        [sys.executable, "-m", "agent", "keys", "export", "--home", str(key_home)],
        input=PASSPHRASE + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "SEI_BECH32_PREFIX": PREFIX, "SEI_KEY_EXPORT_FORM": "amino"},
    )
    armored = node.home / "validator.armor"
    armored.write_text(exported.stdout)
    node.simd("keys", "import", "validator", str(armored), "--keyring-backend", "test", input=PASSPHRASE + "\n")


@pytest.fixture(scope="module")
def gov_chain(chain_tools: ChainTools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovChain]:
    directory = tmp_path_factory.mktemp("gov-chain")
    processes = ProcessGroup(directory)
    factory = SimdChain(chain_tools, directory, processes)
    try:
        nodes = [factory._init(f"val{index}", CHAIN_ID, "127.0.0.1", None) for index in range(3)]
        validators = []
        for node in nodes:
            key, created = ensure_account_key(node.home, IDENTITY)
            assert created
            _import_key(node, node.home)
            validators.append(Validator(node, key))
        first = nodes[0]

        def short_governance(genesis: dict[str, Any]) -> None:
            gov = genesis["app_state"]["gov"]
            gov["voting_params"]["voting_period"] = f"{VOTING_PERIOD_SECONDS}s"
            gov["deposit_params"]["min_deposit"] = [{"denom": DENOM, "amount": DEPOSIT.removesuffix(DENOM)}]

        first.edit_genesis(short_governance)
        for validator in validators:
            first.simd("add-genesis-account", validator.address, f"{10**12}{DENOM}")
        for node in nodes:
            node.edit_app({"minimum-gas-prices": MIN_GAS_PRICE})
            if node is not first:
                (node.config_dir / "genesis.json").write_bytes((first.config_dir / "genesis.json").read_bytes())
            node.simd("gentx", "validator", f"{10**9}{DENOM}", "--chain-id", CHAIN_ID, "--keyring-backend", "test")
            if node is not first:
                for gentx in (node.config_dir / "gentx").iterdir():
                    (first.config_dir / "gentx" / gentx.name).write_bytes(gentx.read_bytes())
        first.simd("collect-gentxs")
        peers = ",".join(node.p2p_address for node in nodes)
        for node in nodes:
            if node is not first:
                (node.config_dir / "genesis.json").write_bytes((first.config_dir / "genesis.json").read_bytes())
            node.edit_config({"p2p.persistent_peers": peers, "consensus.timeout_commit": "500ms"})
        for node in nodes:
            node.start(wait_height=None)
        for node in nodes:
            wait_for_height(node.rpc_url, 2, alive=lambda node=node: node.running)
        yield GovChain(validators, chain_tools, processes)
    finally:
        processes.stop_all()


def _agent_of(chain_agent: Any, validator: Validator, rpc_endpoint: str) -> InProcessAgent:
    """An agent on the validator's home, with its own store, reaching a node through `rpc_endpoint`."""
    agent: InProcessAgent = chain_agent(
        validator.node.home,
        chain_id=CHAIN_ID,
        rpc_endpoint=rpc_endpoint,
        bech32_prefix=PREFIX,
        bond_denom=DENOM,
        db_path=validator.node.home / f"agent-{uuid.uuid4().hex[:8]}.db",
        **CEILINGS,
    )
    return agent


@pytest.fixture
def agents(gov_chain: GovChain, chain_agent: Any) -> list[InProcessAgent]:
    return [_agent_of(chain_agent, validator, validator.node.rpc_url) for validator in gov_chain.validators]


def _common(**extra: Any) -> dict[str, Any]:
    return {"chainId": CHAIN_ID, "fees": FEES, "gas": GAS, **extra}


def _vote(proposal_id: int, option: str = "yes", **extra: Any) -> dict[str, Any]:
    return _common(proposalId=proposal_id, option=option, **extra)


def _ok(result: TaskResult) -> dict[str, Any]:
    assert result.status is TaskStatus.COMPLETED, (result.reason, result.error)
    assert result.result is not None
    assert result.result["inclusionStatus"] == "committed_ok" and result.result["height"] > 0, result.result
    return result.result


def _kill_after_broadcast_then_resume(validator: Validator, params: dict[str, Any], work: Path) -> dict[str, Any]:
    """The vote of validator 2's agent, killed after its broadcast and run again (`gov_vote_killed_after_broadcast`)."""
    env = {
        "SEI_RPC_ENDPOINT": validator.node.rpc_url,
        "SEI_CHAIN_ID": CHAIN_ID,
        "SEI_BECH32_PREFIX": PREFIX,
        "SEI_BOND_DENOM": DENOM,
        "NODETASK_MAX_GAS_PRICE": CEILINGS["max_gas_price"],
        "NODETASK_MAX_DEPOSIT": DEPOSIT,
    }
    return gov_vote_killed_after_broadcast(
        home=validator.node.home, work=work, params=params, target_pod="val2", env=env, within=60
    )


async def test_operator_keys_exported_by_the_agent_import_into_simd(gov_chain: GovChain) -> None:
    for validator in gov_chain.validators:
        shown = validator.node.simd("keys", "show", "validator", "-a", "--keyring-backend", "test").strip()
        assert shown == validator.address


async def test_param_change_proposal_passes_with_three_votes_one_through_a_kill(
    gov_chain: GovChain, agents: list[InProcessAgent], tmp_path: Path
) -> None:
    assert gov_chain.query("staking", "params")["max_validators"] != 150
    proposal = _ok(
        await agents[0].run(
            TaskType.GOV_PARAM_CHANGE,
            _common(
                title="Raise MaxValidators",
                description="to 150",
                changes=[{"subspace": "staking", "key": "MaxValidators", "value": 150}],
                initialDeposit=DEPOSIT,
            ),
        )
    )
    proposal_id = proposal["proposalId"]
    assert proposal["code"] == 0 and proposal["height"] > 0 and not proposal["adopted"]
    assert gov_chain.proposal(proposal_id)["status"] == "PROPOSAL_STATUS_VOTING_PERIOD"

    votes = await asyncio.gather(*(agents[index].run(TaskType.GOV_VOTE, _vote(proposal_id)) for index in (0, 1)))
    for vote in votes:
        assert _ok(vote)["proposalId"] == proposal_id

    killed = gov_chain.validators[2]
    before = await asyncio.to_thread(gov_chain.sequence, killed.address)
    resumed = await asyncio.to_thread(_kill_after_broadcast_then_resume, killed, _vote(proposal_id), tmp_path)
    assert resumed["adopted"] is True and resumed["code"] == 0
    assert (
        await asyncio.to_thread(gov_chain.settled_sequence, killed.address, before + 1) == before + 1
    )  # exactly one transaction
    secret = killed.key.private_key.secret_bytes()
    for leftover in (
        tmp_path / "agent.db",
        tmp_path / "agent-first.log",
        *TxRecords(killed.node.home).directory.iterdir(),
    ):
        content = leftover.read_bytes()
        assert secret not in content and secret.hex().encode() not in content, f"private key in {leftover}"

    status = await asyncio.to_thread(gov_chain.wait_for_proposal_end, proposal_id)
    assert status == "PROPOSAL_STATUS_PASSED"
    assert gov_chain.query("staking", "params")["max_validators"] == 150
    tally = gov_chain.proposal(proposal_id)["final_tally_result"]
    assert int(tally["yes"]) == 3 * 10**9 and int(tally["no"]) == 0


async def test_software_upgrade_proposal_sets_the_plan(gov_chain: GovChain, agents: list[InProcessAgent]) -> None:
    height = (gov_chain.validators[0].node.height() or 0) + 100_000
    proposal = _ok(
        await agents[1].run(
            TaskType.GOV_SOFTWARE_UPGRADE,
            _common(
                title="Upgrade",
                description="v2",
                upgradeName="v2",
                upgradeHeight=height,
                upgradeInfo='{"binaries":{}}',
                initialDeposit=DEPOSIT,
            ),
        )
    )
    proposal_id = proposal["proposalId"]
    content = gov_chain.proposal(proposal_id)["content"]
    assert content["@type"] == "/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal"
    assert (content["plan"]["name"], int(content["plan"]["height"])) == ("v2", height)

    for vote in await asyncio.gather(*(agent.run(TaskType.GOV_VOTE, _vote(proposal_id)) for agent in agents)):
        _ok(vote)
    assert await asyncio.to_thread(gov_chain.wait_for_proposal_end, proposal_id) == "PROPOSAL_STATUS_PASSED"
    plan = gov_chain.query("upgrade", "plan")
    assert (plan["name"], int(plan["height"]), plan["info"]) == ("v2", height, '{"binaries":{}}')


@pytest.mark.parametrize(
    ("params", "reason", "message", "consumes_sequence", "inclusion"),
    [
        (_vote(1, fees="1stake"), "InsufficientFee", "insufficient fee", False, None),
        (_vote(1, fees="3000uatom"), "InsufficientFee", "insufficient fee", False, None),
        (_vote(1, chainId="another-chain"), "ChainIdMismatch", "is on chain 'gov-real'", False, None),
        (_vote(999_999), "UnknownProposal", "999999", True, "committed_failed"),
        (_vote(1, gas=1000, fees="10stake"), "OutOfGas", "out of gas", False, None),
    ],
    ids=["insufficient-fees", "fee-denom-refused", "wrong-chain-id", "unknown-proposal", "out-of-gas"],
)
async def test_a_refused_transaction_fails_with_a_clear_reason(
    gov_chain: GovChain,
    agents: list[InProcessAgent],
    params: dict[str, Any],
    reason: str,
    message: str,
    consumes_sequence: bool,
    inclusion: str | None,
) -> None:
    """Bad input on a real chain: `Failed` with the chain's reason (code, codespace, log in the result once the
    chain answered), never a retry, never a second transaction."""
    validator = gov_chain.validators[0]
    before = await asyncio.to_thread(gov_chain.sequence, validator.address)

    result = await agents[0].run(TaskType.GOV_VOTE, params)

    assert result.status is TaskStatus.FAILED
    assert result.reason == reason, result.error
    assert message in (result.error or "")
    assert result.retryable is False and result.run == 1
    if reason != "ChainIdMismatch":
        assert result.result is not None and result.result["code"] != 0 and result.result["rawLog"], result.result
        assert result.result.get("inclusionStatus") == inclusion
    after = await asyncio.to_thread(gov_chain.sequence, validator.address)
    assert after == before + (1 if consumes_sequence else 0)


def _balance(gov_chain: GovChain, address: str) -> int:
    balances = gov_chain.query("bank", "balances", address)["balances"]
    return sum(int(coin["amount"]) for coin in balances if coin["denom"] == DENOM)


async def test_a_draining_fee_is_refused_before_anything_is_signed(
    gov_chain: GovChain, agents: list[InProcessAgent]
) -> None:
    """B13: a vote whose fee is the whole balance but 1000 is refused by the fee ceiling: nothing is signed,
    recorded or broadcast, and the balance is unchanged."""
    validator = gov_chain.validators[0]
    before = await asyncio.to_thread(gov_chain.sequence, validator.address)
    balance = await asyncio.to_thread(_balance, gov_chain, validator.address)
    assert balance > 10**6
    records = set(TxRecords(validator.node.home).directory.glob("*.json"))

    result = await agents[0].run(TaskType.GOV_VOTE, _vote(1, fees=f"{balance - 1000}{DENOM}"))

    assert (result.status, result.reason, result.retryable) == (TaskStatus.FAILED, "ParamsInvalid", False)
    assert "NODETASK_MAX_GAS_PRICE" in (result.error or "") and "nothing was signed" in (result.error or "")
    await asyncio.to_thread(validator.node.wait_for_height, (validator.node.height() or 0) + 2)
    assert await asyncio.to_thread(gov_chain.sequence, validator.address) == before
    assert await asyncio.to_thread(_balance, gov_chain, validator.address) == balance
    assert set(TxRecords(validator.node.home).directory.glob("*.json")) == records


def _record(validator: Validator, task_id: str, params: dict[str, Any], sequence: int, account_number: int) -> TxRecord:
    """What a run killed between persisting and broadcasting leaves behind."""
    validated = GovVoteParams.model_validate(params)
    message = MsgVote(proposal_id=validated.proposal_id, voter=validator.address, option=VoteOption.VOTE_OPTION_YES)
    signed = sign_tx(
        message,
        validator.key.private_key,
        chain_id=CHAIN_ID,
        account_number=account_number,
        sequence=sequence,
        fee=(Coin(DENOM, 3000),),
        gas=GAS,
        memo=f"taskID={task_id}",
    )
    record = TxRecord(
        task_id=task_id,
        run=1,
        params_hash=params_hash(TaskType.GOV_VOTE, validated),
        chain_id=CHAIN_ID,
        signer=validator.address,
        account_number=account_number,
        sequence=sequence,
        tx_hash=signed.tx_hash,
        tx_bytes=signed.tx_bytes,
        created_at=format_timestamp(utcnow()),
    )
    TxRecords(validator.node.home).save(record)
    return record


def _account_number(gov_chain: GovChain, address: str) -> int:
    return int(gov_chain.query("auth", "account", address)["account_number"])


async def _run_as(agent: InProcessAgent, task_id: str, params: dict[str, Any]) -> TaskResult:
    await agent.engine.submit(Task(id=task_id, type=TaskType.GOV_VOTE, params=params, timeout_seconds=120))
    return await agent.wait(task_id)


async def _open_proposal(gov_chain: GovChain, agent: InProcessAgent) -> int:
    proposal = _ok(
        await agent.run(
            TaskType.GOV_PARAM_CHANGE,
            _common(
                title="Scratch",
                description="for record tests",
                changes=[{"subspace": "staking", "key": "MaxValidators", "value": 140}],
                initialDeposit=DEPOSIT,
            ),
        )
    )
    return int(proposal["proposalId"])


async def test_a_resumed_run_broadcasts_the_recorded_bytes_instead_of_signing_again(
    gov_chain: GovChain, agents: list[InProcessAgent]
) -> None:
    validator = gov_chain.validators[1]
    proposal_id = await _open_proposal(gov_chain, agents[1])
    task_id = str(uuid.uuid4())
    params = _vote(proposal_id)
    sequence = await asyncio.to_thread(gov_chain.sequence, validator.address)
    record = _record(validator, task_id, params, sequence, _account_number(gov_chain, validator.address))

    result = _ok(await _run_as(agents[1], task_id, params))

    assert (result["txHash"], result["adopted"], result["sequence"]) == (record.tx_hash, True, sequence)
    assert await asyncio.to_thread(gov_chain.settled_sequence, validator.address, sequence + 1) == sequence + 1


async def test_a_record_whose_sequence_another_tx_used_fails_without_signing_again(
    gov_chain: GovChain, agents: list[InProcessAgent]
) -> None:
    validator = gov_chain.validators[2]
    proposal_id = await _open_proposal(gov_chain, agents[2])
    sequence = await asyncio.to_thread(gov_chain.sequence, validator.address)
    stale_id = str(uuid.uuid4())
    record = _record(validator, stale_id, _vote(proposal_id), sequence, _account_number(gov_chain, validator.address))
    _ok(await agents[2].run(TaskType.GOV_VOTE, _vote(proposal_id, option="no")))  # uses `sequence`

    result = await _run_as(agents[2], stale_id, _vote(proposal_id))

    assert result.status is TaskStatus.FAILED and result.reason == "SequenceConsumed", result.error
    assert record.tx_hash in (result.error or "") and f"sequence {sequence}" in (result.error or "")
    assert await asyncio.to_thread(gov_chain.settled_sequence, validator.address, sequence + 1) == sequence + 1


async def test_a_record_for_other_params_is_not_adopted(gov_chain: GovChain, agents: list[InProcessAgent]) -> None:
    validator = gov_chain.validators[0]
    proposal_id = await _open_proposal(gov_chain, agents[0])
    task_id = str(uuid.uuid4())
    sequence = await asyncio.to_thread(gov_chain.sequence, validator.address)
    old = _record(validator, task_id, _vote(proposal_id, memo="old intent"), sequence, 0)

    result = _ok(await _run_as(agents[0], task_id, _vote(proposal_id, option="abstain")))

    assert result["txHash"] != old.tx_hash and result["adopted"] is False
    assert TxRecords(validator.node.home).load(task_id).tx_hash == result["txHash"]  # type: ignore[union-attr]


async def test_a_node_without_a_transaction_index_fails_as_unverifiable(
    gov_chain: GovChain, chain_agent: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The agent talks to a full node with `tx_index.indexer = "null"`: it broadcasts (the transaction is gossiped and
    committed) but cannot confirm it, and says so instead of waiting out the deadline or reporting success."""
    validator = gov_chain.validators[0]
    factory = SimdChain(gov_chain.tools, tmp_path_factory.mktemp("unindexed"), gov_chain.processes)
    follower = factory.follower("unindexed", of=validator.node)
    follower.edit_config({"tx_index.indexer": "null"})
    follower.edit_app({"minimum-gas-prices": MIN_GAS_PRICE})
    follower.start(wait_height=(validator.node.height() or 1))
    agent = _agent_of(chain_agent, validator, follower.rpc_url)
    before = await asyncio.to_thread(gov_chain.sequence, validator.address)

    result = await agent.run(TaskType.GOV_VOTE, _vote(1))

    assert result.status is TaskStatus.FAILED and result.reason == "TxUnverifiable", result.error
    assert "does not index transactions" in (result.error or "") and result.retryable is False
    assert result.result is not None and result.result["inclusionStatus"] == "unverifiable"
    give_up = time.monotonic() + 30
    while await asyncio.to_thread(gov_chain.sequence, validator.address) == before:  # it was committed all the same
        assert time.monotonic() < give_up, "the broadcast transaction never reached a block"
        await asyncio.sleep(0.5)


async def test_two_votes_of_one_agent_submitted_together_both_succeed(
    gov_chain: GovChain, agents: list[InProcessAgent]
) -> None:
    """Without the per-signer serialisation the second would be signed with the same sequence and refused."""
    validator = gov_chain.validators[1]
    first, second = await _open_proposal(gov_chain, agents[1]), await _open_proposal(gov_chain, agents[1])
    before = await asyncio.to_thread(gov_chain.sequence, validator.address)

    results = await asyncio.gather(*(agents[1].run(TaskType.GOV_VOTE, _vote(pid)) for pid in (first, second)))

    sequences = sorted(_ok(result)["sequence"] for result in results)
    assert sequences == [before, before + 1]
    assert await asyncio.to_thread(gov_chain.settled_sequence, validator.address, before + 2) == before + 2


async def test_a_transaction_not_in_a_block_in_time_is_pending_and_the_next_run_adopts_it(
    gov_chain: GovChain,
    agents: list[InProcessAgent],
    chain_agent: Any,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The validators are frozen (SIGSTOP) after a full node accepted the transaction: no block comes, the run ends
    `TxPending` (retryable) with the transaction recorded; once they run again, running the task again adopts that
    transaction (found on chain) instead of signing a second one."""
    monkeypatch.setattr("agent.tasks.gov.INCLUSION_TIMEOUT_SECONDS", 3.0)
    validator = gov_chain.validators[2]
    factory = SimdChain(gov_chain.tools, tmp_path_factory.mktemp("full-node"), gov_chain.processes)
    full_node = factory.follower("full-node", of=validator.node)
    full_node.edit_app({"minimum-gas-prices": MIN_GAS_PRICE})
    await asyncio.to_thread(full_node.start, wait_height=(validator.node.height() or 1))
    agent = _agent_of(chain_agent, validator, full_node.rpc_url)
    proposal_id = await _open_proposal(gov_chain, agents[2])
    # The full node must have committed that proposal's transaction too: until then its mempool expects the next
    # sequence while its committed state still says this one (a real SequenceMismatch, not what is tested here).
    await asyncio.to_thread(full_node.wait_for_height, (validator.node.height() or 0) + 1)
    task_id = str(uuid.uuid4())
    before = await asyncio.to_thread(gov_chain.sequence, validator.address)
    frozen = [v.node.process for v in gov_chain.validators if v.node.process is not None]
    try:
        for process in frozen:
            os.kill(process.pid, signal.SIGSTOP)
        first = await _run_as(agent, task_id, _vote(proposal_id))
    finally:
        for process in frozen:
            os.kill(process.pid, signal.SIGCONT)

    assert first.status is TaskStatus.FAILED and first.reason == "TxPending" and first.retryable is True, first.error
    assert first.result is not None and first.result["inclusionStatus"] == "pending"
    record = TxRecords(validator.node.home).load(task_id)
    assert record is not None and record.tx_hash in (first.error or "")
    monkeypatch.setattr("agent.tasks.gov.INCLUSION_TIMEOUT_SECONDS", 60.0)
    thawed = validator.node.height() or 0
    await asyncio.to_thread(validator.node.wait_for_height, thawed + 2)  # the chain makes blocks again
    await agent.engine.submit(
        Task(id=task_id, type=TaskType.GOV_VOTE, params=_vote(proposal_id), timeout_seconds=120, retry_nonce="again")
    )
    second = _ok(await agent.wait(task_id))
    assert (second["txHash"], second["adopted"], second["sequence"]) == (record.tx_hash, True, before)
    assert await asyncio.to_thread(gov_chain.settled_sequence, validator.address, before + 1) == before + 1


async def test_a_broadcast_whose_answer_is_lost_is_pending_and_the_next_run_adopts_the_same_transaction(
    gov_chain: GovChain, agents: list[InProcessAgent], chain_agent: Any
) -> None:
    """The node receives the transaction but the connection is reset before its answer arrives: the outcome is
    unknown, so the run ends `TxPending` (retryable) with the transaction recorded, and running the task again adopts
    that transaction instead of signing a second one."""
    validator = gov_chain.validators[1]
    proposal_id = await _open_proposal(gov_chain, agents[1])
    proxy = HttpFaultProxy(validator.node.rpc_url).start()
    try:
        agent = _agent_of(chain_agent, validator, proxy.url)
        lost = proxy.reset_mid_body(0, method="GET", path="/broadcast_tx_sync")
        task_id = str(uuid.uuid4())
        before = await asyncio.to_thread(gov_chain.sequence, validator.address)

        first = await _run_as(agent, task_id, _vote(proposal_id))

        assert lost.hits == 1
        assert first.status is TaskStatus.FAILED and first.reason == "TxPending" and first.retryable, first.error
        assert first.result is not None and first.result["inclusionStatus"] == "pending"
        record = TxRecords(validator.node.home).load(task_id)
        assert record is not None and record.tx_hash in (first.error or "") and record.sequence == before
        await agent.engine.submit(
            Task(id=task_id, type=TaskType.GOV_VOTE, params=_vote(proposal_id), timeout_seconds=120, retry_nonce="2")
        )
        second = _ok(await agent.wait(task_id))
    finally:
        proxy.stop()

    assert (second["txHash"], second["adopted"], second["sequence"]) == (record.tx_hash, True, before)
    assert await asyncio.to_thread(gov_chain.settled_sequence, validator.address, before + 1) == before + 1

"""Governance through the agent on a real seid chain: one validator whose operator key is the agent's own (moved into
seid's keyring with `nodetask-agent keys export`), so the agent's votes carry the validator's power.

What seid does differently from stock CometBFT/SDK, and what these tests hold the agent to (issue "Sei's own node"):
its RPC refuses `0x` hex in URI byte arguments and answers errors as a flat `{"code","message"}` body; a vote on a
proposal still in its deposit period passes CheckTx and is committed with code 3 (`inactive proposal`); it re-encodes
a tx body and refuses one whose size differs (the software-upgrade plan's zero `time`); a validator's default config
has no tx index.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.chain.cosmos.keystore import AccountKey, ensure_account_key
from agent.models import TaskResult, TaskStatus, TaskType
from agent.models.settings import AgentSettings
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import ProcessGroup, gov_vote_killed_after_broadcast, wait_for_height

from .conftest import SEID_MARKS, SeidNet, SeidNode

pytestmark = SEID_MARKS
CHAIN_ID = "seid-gov-1"
FEES = "20000usei"
GAS = 200000
MIN_DEPOSIT = "10000000usei"
"""seid's default `gov.deposit_params.min_deposit`."""


@dataclass
class GovSeid:
    node: SeidNode
    key: AccountKey
    agent_home: Path

    def query(self, *args: str) -> Any:
        return json.loads(
            self.node.seid("query", *args, "--node", f"tcp://127.0.0.1:{self.node.ports['rpc']}", "--output", "json")
        )

    def sequence(self) -> int:
        account = self.query("account", self.key.address)
        return int(account.get("sequence", 0))

    def wait_for_proposal_end(self, proposal_id: int, deadline: float = 90.0) -> str:
        give_up = time.monotonic() + deadline
        while True:
            status = str(self.query("gov", "proposal", str(proposal_id))["status"])
            if status not in ("PROPOSAL_STATUS_VOTING_PERIOD", "PROPOSAL_STATUS_DEPOSIT_PERIOD"):
                return status
            if time.monotonic() > give_up:
                pytest.fail(f"proposal {proposal_id} still {status} after {deadline:g}s")
            time.sleep(1)


@pytest.fixture(scope="module")
def gov_seid(seid_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovSeid]:
    directory = tmp_path_factory.mktemp("seid-gov")
    processes = ProcessGroup(directory)
    try:
        agent_home = directory / "agent"
        key, _ = ensure_account_key(agent_home)
        node = SeidNet(seid_binary, directory, processes).validator(
            "val", chain_id=CHAIN_ID, operator_key_home=agent_home
        )
        assert node.key_address == key.address
        node.start(wait_height=2)
        yield GovSeid(node, key, agent_home)
    finally:
        processes.stop_all()


@pytest.fixture
async def agent(gov_seid: GovSeid, tmp_path: Path) -> AsyncIterator[InProcessAgent]:
    settings = AgentSettings(
        home=gov_seid.agent_home,
        chain_id=CHAIN_ID,
        rpc_endpoint=gov_seid.node.rpc_url,
        pod_name="val-0",
        pod_namespace="t",
        db_path=tmp_path / "agent.db",
    )
    running = InProcessAgent(settings)
    yield running
    await running.close()


def _common(**extra: Any) -> dict[str, Any]:
    return {"chainId": CHAIN_ID, "fees": FEES, "gas": GAS, **extra}


def _ok(result: TaskResult) -> dict[str, Any]:
    assert result.status is TaskStatus.COMPLETED, (result.reason, result.error)
    assert result.result is not None
    return result.result


async def test_a_vote_on_a_proposal_in_its_deposit_period_fails_with_seids_code_3(
    gov_seid: GovSeid, agent: InProcessAgent
) -> None:
    proposal = _ok(
        await agent.run(
            TaskType.GOV_PARAM_CHANGE,
            _common(
                title="Below the minimum deposit",
                description="stays in its deposit period",
                initialDeposit="1usei",
                changes=[{"subspace": "staking", "key": "MaxValidators", "value": 120}],
            ),
        )
    )
    before = gov_seid.sequence()

    vote = await agent.run(TaskType.GOV_VOTE, _common(proposalId=proposal["proposalId"], option="yes"))

    assert vote.status is TaskStatus.FAILED, vote.result
    assert vote.result is not None and vote.result["inclusionStatus"] == "committed_failed", vote.result
    assert (vote.result["code"], vote.result["codespace"]) == (3, "gov")
    assert "inactive proposal" in vote.error
    assert gov_seid.sequence() == before + 1  # one transaction, committed (and failed), never a second


async def test_a_software_upgrade_proposal_is_accepted_by_seid(gov_seid: GovSeid, agent: InProcessAgent) -> None:
    result = _ok(
        await agent.run(
            TaskType.GOV_SOFTWARE_UPGRADE,
            _common(
                title="Upgrade v2",
                description="to the next binary",
                initialDeposit=MIN_DEPOSIT,
                upgradeName="v2",
                upgradeHeight=100000,
                upgradeInfo='{"binaries":{}}',
            ),
        )
    )

    assert result["inclusionStatus"] == "committed_ok" and result["height"] > 0
    proposal = gov_seid.query("gov", "proposal", str(result["proposalId"]))
    assert proposal["status"] == "PROPOSAL_STATUS_VOTING_PERIOD"
    assert proposal["content"]["plan"]["name"] == "v2"
    assert str(proposal["content"]["plan"]["height"]) == "100000"


def _vote_killed_after_broadcast_then_resumed(gov_seid: GovSeid, params: dict[str, Any], work: Path) -> dict[str, Any]:
    """The agent's vote, killed after seid accepted it and run again (`gov_vote_killed_after_broadcast`)."""
    env = {"SEI_RPC_ENDPOINT": gov_seid.node.rpc_url, "SEI_CHAIN_ID": CHAIN_ID}
    return gov_vote_killed_after_broadcast(
        home=gov_seid.agent_home, work=work, params=params, target_pod="val-0", env=env, within=120
    )


async def test_a_param_change_passes_with_the_vote_of_an_agent_killed_after_broadcast(
    gov_seid: GovSeid, agent: InProcessAgent, tmp_path: Path
) -> None:
    """The voting agent is SIGKILLed right after "accepted by the node"; run again, it adopts its recorded tx:
    exactly one MsgVote on chain (the account's sequence moves by one), and the proposal passes on that vote."""
    assert str(gov_seid.query("staking", "params")["max_validators"]) != "150"
    proposal = _ok(
        await agent.run(
            TaskType.GOV_PARAM_CHANGE,
            _common(
                title="Raise MaxValidators",
                description="to 150",
                initialDeposit=MIN_DEPOSIT,
                changes=[{"subspace": "staking", "key": "MaxValidators", "value": 150}],
            ),
        )
    )
    before = gov_seid.sequence()
    work = tmp_path / "killed-agent"  # its own store: the `agent` fixture's is in tmp_path
    work.mkdir()

    resumed = await asyncio.to_thread(
        _vote_killed_after_broadcast_then_resumed,
        gov_seid,
        _common(proposalId=proposal["proposalId"], option="yes"),
        work,
    )

    assert resumed["adopted"] is True and resumed["code"] == 0
    assert gov_seid.sequence() == before + 1  # exactly one transaction
    votes = gov_seid.query("gov", "votes", str(proposal["proposalId"]))["votes"]
    assert [vote["voter"] for vote in votes] == [gov_seid.key.address]
    assert await asyncio.to_thread(gov_seid.wait_for_proposal_end, proposal["proposalId"]) == "PROPOSAL_STATUS_PASSED"
    assert str(gov_seid.query("staking", "params")["max_validators"]) == "150"


async def test_with_the_tx_index_off_a_vote_is_unverifiable_never_committed(
    gov_seid: GovSeid, agent: InProcessAgent
) -> None:
    """Last in the module: it restarts the node with a validator's default `[tx-index] indexer = ["null"]`."""
    proposal = _ok(
        await agent.run(
            TaskType.GOV_PARAM_CHANGE,
            _common(
                title="Index off",
                description="a proposal to vote on",
                initialDeposit=MIN_DEPOSIT,
                changes=[{"subspace": "staking", "key": "MaxValidators", "value": 160}],
            ),
        )
    )
    node = gov_seid.node
    node.stop()
    node.edit_config({"tx-index.indexer": ["null"]})
    node.start(wait_height=None)
    wait_for_height(node.rpc_url, 1, 120, alive=lambda: node.running)
    before = gov_seid.sequence()

    vote = await agent.run(TaskType.GOV_VOTE, _common(proposalId=proposal["proposalId"], option="yes"))

    assert vote.status is TaskStatus.FAILED, vote.result
    assert vote.reason == "TxUnverifiable"
    assert vote.result is not None and vote.result["inclusionStatus"] == "unverifiable"
    deadline = time.monotonic() + 30
    while gov_seid.sequence() == before and time.monotonic() < deadline:
        time.sleep(1)
    assert gov_seid.sequence() == before + 1  # the vote went in once: the agent just cannot confirm it

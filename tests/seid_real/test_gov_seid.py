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
import os
import subprocess
import sys
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
from tests.fixtures.chain import ProcessGroup, wait_for_height

from .conftest import REPO, SEID_MARKS, SeidNet, SeidNode

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
    """A gov-vote in a real `nodetask-agent local` process, SIGKILLed right after seid accepted the tx, then the same
    command again on the same store: the resumed run must finish the same task. Returns that task's result."""
    manifest = work / "vote.yaml"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "sei.io/v1alpha1",
                "kind": "NodeTask",
                "metadata": {"name": "kill-vote", "namespace": "t"},
                "spec": {"targetPod": "val-0", "type": "gov-vote", "params": params},
            }
        )
    )
    env = {**os.environ, "SEI_RPC_ENDPOINT": gov_seid.node.rpc_url, "SEI_CHAIN_ID": CHAIN_ID}
    argv = [sys.executable, "-m", "agent", "--log-level", "INFO", "local", str(manifest), "--home",
            str(gov_seid.agent_home), "--db", str(work / "agent.db")]  # fmt: skip
    log = work / "agent-first.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        give_up = time.monotonic() + 120
        while "accepted by the node" not in log.read_text(errors="replace"):
            assert process.poll() is None, f"the agent exited before broadcasting:\n{log.read_text()}"
            assert time.monotonic() < give_up, f"no broadcast within 120 s:\n{log.read_text()}"
            time.sleep(0.005)
        process.kill()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
    assert process.returncode == -9
    resumed = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "adopting tx" in resumed.stderr + resumed.stdout
    listing = [sys.executable, "-m", "agent", "tasks", "list", "--home", str(gov_seid.agent_home), "--db",
               str(work / "agent.db"), "-o", "json"]  # fmt: skip
    listed = subprocess.run(
        listing,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    rows = json.loads(listed.stdout)
    assert len(rows) == 1 and rows[0]["phase"] == "Succeeded" and rows[0]["resumes"] == 1, rows
    result: dict[str, Any] = rows[0]["result"]
    return result


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

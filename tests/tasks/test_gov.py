"""The gov tasks against the in-test CometBFT node in both dialects (stock CometBFT, and seid's as recorded).

What a real chain cannot show cheaply: seid's dialect without seid (D1, D2 of issue 22), every `inclusionStatus`,
and the spending ceilings refusing before anything is signed. The real chain tier (`tests/chain_real/
test_gov_real.py`) proves the same paths against simd.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.chain.broadcast import TxRecords
from agent.chain.cosmos.address import ChainIdentity
from agent.chain.cosmos.keystore import ensure_account_key
from agent.chain.cosmos.proto import MsgSubmitProposal, SoftwareUpgradeProposal, TxBody, TxRaw
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.cometbft import CometBFTFactory, FakeCometBFT
from tests.fixtures.common import HandlerRunner

TASK_ID = "00000000-0000-4000-8000-000000000000"
VOTE = {"chainId": "test-chain", "fees": "20000usei", "gas": 200000, "proposalId": 5, "option": "yes"}
UPGRADE = {
    "chainId": "test-chain",
    "fees": "20000usei",
    "gas": 200000,
    "title": "Upgrade",
    "description": "to v2",
    "upgradeName": "v2",
    "upgradeHeight": 123456,
    "initialDeposit": "10000000usei",
}
DIALECTS = pytest.mark.parametrize("dialect", ["cometbft", "seid"])


@pytest.fixture
def node_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    ensure_account_key(home, ChainIdentity.from_settings(AgentSettings(home=home)))
    return home


def _runner(home: Path, node: FakeCometBFT, **settings: Any) -> HandlerRunner:
    return HandlerRunner(AgentSettings(home=home, chain_id="test-chain", rpc_endpoint=node.url, **settings))


@DIALECTS
async def test_a_committed_vote_succeeds_with_its_height_in_both_dialects(
    cometbft_factory: CometBFTFactory, node_home: Path, dialect: str
) -> None:
    node = cometbft_factory("n", dialect=dialect)
    result = await _runner(node_home, node)(TaskType.GOV_VOTE, VOTE)
    assert result is not None
    assert result["inclusionStatus"] == "committed_ok" and result["code"] == 0
    assert result["height"] == node.height > 0
    assert len(node.broadcasts) == 1 and node.sequence == 1


@DIALECTS
async def test_a_vote_committed_with_a_non_zero_code_fails_with_the_chains_code_and_log(
    cometbft_factory: CometBFTFactory, node_home: Path, dialect: str
) -> None:
    """D2: a vote on a proposal past its voting period; seid reported it `Succeeded, height=0` before."""
    node = cometbft_factory("n", dialect=dialect)
    node.deliver_tx = {"code": 3, "codespace": "gov", "log": "failed to execute message; inactive proposal: 5"}
    with pytest.raises(TaskError) as caught:
        await _runner(node_home, node)(TaskType.GOV_VOTE, VOTE)
    error = caught.value
    assert (error.reason, error.retryable) == ("InactiveProposal", False)
    assert "gov code 3" in error.message and "inactive proposal: 5" in error.message
    assert error.result is not None
    assert error.result["inclusionStatus"] == "committed_failed"
    assert (error.result["code"], error.result["codespace"]) == (3, "gov")
    assert error.result["rawLog"] == "failed to execute message; inactive proposal: 5"
    assert error.result["height"] == node.height > 0


@DIALECTS
async def test_a_node_without_a_tx_index_is_unverifiable_never_committed(
    cometbft_factory: CometBFTFactory, node_home: Path, dialect: str
) -> None:
    """D2: seid's "transaction querying is disabled due to no kvEventSink" is "cannot verify"."""
    node = cometbft_factory("n", dialect=dialect)
    node.tx_index = False
    with pytest.raises(TaskError) as caught:
        await _runner(node_home, node)(TaskType.GOV_VOTE, VOTE)
    assert (caught.value.reason, caught.value.retryable) == ("TxUnverifiable", False)
    assert caught.value.result is not None and caught.value.result["inclusionStatus"] == "unverifiable"
    assert len(node.broadcasts) == 1


@DIALECTS
async def test_a_transaction_not_yet_in_a_block_is_pending(
    cometbft_factory: CometBFTFactory, node_home: Path, dialect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.tasks.gov.INCLUSION_TIMEOUT_SECONDS", 0.3)
    node = cometbft_factory("n", dialect=dialect)
    node.hold_txs = True
    with pytest.raises(TaskError) as caught:
        await _runner(node_home, node)(TaskType.GOV_VOTE, VOTE)
    assert (caught.value.reason, caught.value.retryable) == ("TxPending", True)
    assert caught.value.result is not None and caught.value.result["inclusionStatus"] == "pending"
    record = TxRecords(node_home).load(TASK_ID)
    assert record is not None and caught.value.result["txHash"] == record.tx_hash


@DIALECTS
async def test_a_transaction_refused_at_check_tx_fails_with_the_chains_code_and_is_not_recorded(
    cometbft_factory: CometBFTFactory, node_home: Path, dialect: str
) -> None:
    node = cometbft_factory("n", dialect=dialect)
    node.check_tx = {"code": 13, "codespace": "sdk", "log": "insufficient fees; got: 1usei required: 2000usei"}
    with pytest.raises(TaskError) as caught:
        await _runner(node_home, node)(TaskType.GOV_VOTE, VOTE)
    assert caught.value.reason == "InsufficientFee" and "sdk code 13" in caught.value.message
    assert caught.value.result is not None and "inclusionStatus" not in caught.value.result
    assert (caught.value.result["code"], caught.value.result["codespace"]) == (13, "sdk")
    assert "insufficient fees" in caught.value.result["rawLog"]
    assert TxRecords(node_home).load(TASK_ID) is None and node.sequence == 0


@DIALECTS
async def test_a_software_upgrade_proposal_carries_the_plans_zero_time_and_gets_its_proposal_id(
    cometbft_factory: CometBFTFactory, node_home: Path, dialect: str
) -> None:
    """D3: seid re-encodes the body and refuses one whose size differs; the plan's time must be on the wire."""
    node = cometbft_factory("n", dialect=dialect)
    node.next_proposal_id = 9
    result = await _runner(node_home, node)(TaskType.GOV_SOFTWARE_UPGRADE, UPGRADE)
    assert result is not None and result["proposalId"] == 9 and result["inclusionStatus"] == "committed_ok"
    body = TxBody.decode(TxRaw.decode(node.broadcasts[0]).body_bytes)
    message = body.messages[0].unpack("message")
    assert isinstance(message, MsgSubmitProposal) and message.content is not None
    content = message.content.unpack("content")
    assert isinstance(content, SoftwareUpgradeProposal)
    assert bytes.fromhex("120b088092b8c398feffffff01") in content.plan.encode()


@pytest.mark.parametrize(
    ("task_type", "params", "settings", "limit"),
    [
        (TaskType.GOV_VOTE, {**VOTE, "gas": 1_000_001, "fees": "1usei"}, {}, "NODETASK_MAX_GAS=1000000"),
        (TaskType.GOV_VOTE, {**VOTE, "fees": "20001usei"}, {}, "fee ceiling of 20000usei"),
        (TaskType.GOV_VOTE, {**VOTE, "fees": "998999995000usei"}, {}, "NODETASK_MAX_GAS_PRICE"),
        (TaskType.GOV_VOTE, {**VOTE, "fees": "1stake"}, {}, "'stake' has no ceiling in NODETASK_MAX_GAS_PRICE"),
        (TaskType.GOV_VOTE, {**VOTE, "fees": "3000stake"}, {"max_gas_price": "0.01stake"}, "fee ceiling of 2000"),
        (
            TaskType.GOV_SOFTWARE_UPGRADE,
            {**UPGRADE, "initialDeposit": "3500000001usei"},
            {},
            "deposit ceiling NODETASK_MAX_DEPOSIT 3500000000usei",
        ),
        (
            TaskType.GOV_SOFTWARE_UPGRADE,
            {**UPGRADE, "initialDeposit": "5uatom"},
            {},
            "'uatom' has no ceiling in NODETASK_MAX_DEPOSIT",
        ),
    ],
    ids=["gas", "fee-just-above", "draining-fee", "fee-denom-unlisted", "fee-own-ceiling", "deposit", "deposit-denom"],
)
async def test_spending_above_a_ceiling_fails_params_invalid_before_anything_is_signed(
    cometbft_factory: CometBFTFactory,
    node_home: Path,
    task_type: TaskType,
    params: dict[str, Any],
    settings: dict[str, Any],
    limit: str,
) -> None:
    node = cometbft_factory("n")
    with pytest.raises(ParamsInvalid) as caught:
        await _runner(node_home, node, **settings)(task_type, params)
    assert limit in caught.value.message and "nothing was signed" in caught.value.message
    assert node.requests == [] and node.broadcasts == []
    assert TxRecords(node_home).load(TASK_ID) is None


async def test_spending_at_the_ceilings_is_allowed(cometbft_factory: CometBFTFactory, node_home: Path) -> None:
    node = cometbft_factory("n")
    params = {**UPGRADE, "gas": 1_000_000, "fees": "100000usei", "initialDeposit": "3500000000usei"}
    result = await _runner(node_home, node)(TaskType.GOV_SOFTWARE_UPGRADE, params)
    assert result is not None and result["inclusionStatus"] == "committed_ok"


@DIALECTS
@pytest.mark.parametrize(
    ("case", "reason", "message"),
    [
        ("wrong-chain-id", "ChainIdMismatch", "is on chain 'test-chain'"),
        ("unknown-account", "AccountNotFound", "does not exist on chain"),
        ("key-missing", "TaskFailed", "file not found"),
    ],
)
async def test_bad_input_fails_with_its_reason_and_sends_nothing(
    cometbft_factory: CometBFTFactory, tmp_path: Path, node_home: Path, dialect: str, case: str, reason: str,
    message: str,
) -> None:  # fmt: skip
    node = cometbft_factory("n", dialect=dialect)
    params, home = dict(VOTE), node_home
    if case == "wrong-chain-id":
        params["chainId"] = "another-chain"
    elif case == "unknown-account":
        node.unknown_accounts.add(
            ensure_account_key(node_home, ChainIdentity.from_settings(AgentSettings()))[0].address
        )
    else:
        home = tmp_path / "no-key"
        home.mkdir()
    with pytest.raises(TaskError) as caught:
        await _runner(home, node)(TaskType.GOV_VOTE, params)
    assert caught.value.reason == reason and message in caught.value.message
    assert caught.value.retryable is False
    assert node.broadcasts == [] and TxRecords(home).load(TASK_ID) is None


async def test_seids_recorded_vote_on_an_inactive_proposal_fails_committed_failed(
    cometbft_factory: CometBFTFactory, node_home: Path
) -> None:
    """D2 as it happened on seid: CheckTx 0, committed at height 66 with gov code 3. The agent reported `Succeeded,
    height=0`; the fake answers `/tx` with seid's recorded body."""
    node = cometbft_factory("seid", dialect="seid")
    node.replay("/tx", "tx-vote-inactive-proposal")
    with pytest.raises(TaskError) as caught:
        await _runner(node_home, node)(TaskType.GOV_VOTE, VOTE)
    assert (caught.value.reason, caught.value.retryable) == ("InactiveProposal", False)
    assert caught.value.result is not None
    assert {key: caught.value.result[key] for key in ("inclusionStatus", "height", "code", "codespace")} == {
        "inclusionStatus": "committed_failed",
        "height": 66,
        "code": 3,
        "codespace": "gov",
    }
    assert "inactive proposal" in caught.value.result["rawLog"] and "inactive proposal" in caught.value.message


async def test_seids_recorded_check_tx_refusal_fails_with_its_code_and_records_nothing(
    cometbft_factory: CometBFTFactory, node_home: Path
) -> None:
    node = cometbft_factory("seid", dialect="seid")
    node.replay("/broadcast_tx_sync", "broadcast_tx_sync-wrong-sequence")
    with pytest.raises(TaskError) as caught:
        await _runner(node_home, node)(TaskType.GOV_VOTE, VOTE)
    assert (caught.value.reason, caught.value.retryable) == ("SequenceMismatch", True)
    assert caught.value.result is not None and caught.value.result["code"] == 32
    assert "account sequence mismatch" in caught.value.result["rawLog"]
    assert TxRecords(node_home).load(TASK_ID) is None

"""A gov vote the Go sidecar signed and broadcast, then crashed (its `tx_markers` row pending), is adopted by the agent
after the switch: the migrated `sidecar.db` hands the marker over, the re-submitted task adopts that transaction, and
the chain holds exactly one vote (the account sequence moves by one). Real 3-validator simd chain (issue 21 item 11).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agent.chain.cosmos.proto import Coin, MsgVote, VoteOption
from agent.chain.cosmos.tx import SignedTx, sign_tx
from agent.models import Task, TaskStatus, TaskType
from tests.chain_real.test_gov_real import (
    CEILINGS,
    CHAIN_ID,
    DENOM,
    DEPOSIT,
    GAS,
    PREFIX,
    GovChain,
    Validator,
    _account_number,
    _common,
    _vote,
    agents,
    gov_chain,
)
from tests.fixtures.chain import rpc_get
from tests.store.test_migrations import SEED_STEPS

__all__ = ["agents", "gov_chain"]

pytestmark = pytest.mark.chain


def _go_signed(validator: Validator, task_id: str, proposal_id: int, sequence: int, account_number: int) -> SignedTx:
    """What the Go sidecar's pipeline signs for a yes vote (memo `taskID=<id>`)."""
    return sign_tx(
        MsgVote(proposal_id=proposal_id, voter=validator.address, option=VoteOption.VOTE_OPTION_YES),
        validator.key.private_key,
        chain_id=CHAIN_ID,
        account_number=account_number,
        sequence=sequence,
        fee=(Coin(DENOM, 3000),),
        gas=GAS,
        memo=f"taskID={task_id}",
    )


def _go_sidecar_db(
    path: Path, task_id: str, params: dict[str, Any], signed: SignedTx, account_number: int, sequence: int
) -> None:
    """seictl HEAD's store after `inclusion undetermined`: the row failed (non-terminal), the marker kept."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("PRAGMA journal_mode=WAL")
        for step in SEED_STEPS:
            for statement in step:
                raw.execute(statement)
        raw.execute(
            "INSERT INTO task_results (id, type, status, params, error, submitted_at, completed_at, run) "
            "VALUES (?, 'gov-vote', 'failed', ?, ?, '2026-12-07T10:00:00.5Z', '2026-12-07T10:01:00Z', 1)",
            (task_id, json.dumps(params), f"tx {signed.tx_hash} inclusion undetermined; re-check pending"),
        )
        raw.execute(
            "INSERT INTO tx_markers VALUES (?, ?, ?, ?, ?, ?, '2026-12-07T10:00:01Z')",
            (task_id, signed.tx_hash, signed.tx_bytes, account_number, sequence, CHAIN_ID),
        )
        raw.execute("PRAGMA user_version = 5")


async def test_a_pending_go_sidecar_vote_is_adopted_after_the_switch_never_signed_again(
    gov_chain: GovChain, agents: list, chain_agent: Any
) -> None:
    validator = gov_chain.validators[0]
    proposal = await agents[0].run(
        TaskType.GOV_PARAM_CHANGE,
        _common(
            title="Go markers",
            description="adopted after the switch",
            changes=[{"subspace": "staking", "key": "MaxValidators", "value": 141}],
            initialDeposit=DEPOSIT,
        ),
    )
    assert proposal.status is TaskStatus.COMPLETED, (proposal.reason, proposal.error)
    proposal_id = int((proposal.result or {})["proposalId"])
    task_id = str(uuid.uuid4())
    params = _vote(proposal_id)
    sequence = await asyncio.to_thread(gov_chain.sequence, validator.address)
    account_number = _account_number(gov_chain, validator.address)
    signed = _go_signed(validator, task_id, proposal_id, sequence, account_number)
    # The Go sidecar broadcast it and crashed before learning the outcome.
    accepted = await asyncio.to_thread(
        rpc_get, validator.node.rpc_url, f"broadcast_tx_sync?tx=0x{signed.tx_bytes.hex()}"
    )
    assert int(accepted["code"]) == 0, accepted
    store = validator.node.home / f"sidecar-{uuid.uuid4().hex[:8]}.db"
    _go_sidecar_db(store, task_id, params, signed, account_number, sequence)

    switched = chain_agent(
        validator.node.home,
        chain_id=CHAIN_ID,
        rpc_endpoint=validator.node.rpc_url,
        bech32_prefix=PREFIX,
        bond_denom=DENOM,
        db_path=store,
        **CEILINGS,
    )
    task = Task(id=task_id, type=TaskType.GOV_VOTE, params=params, timeout_seconds=120)
    await switched.engine.submit(task, retry=True)  # the controller re-submits a pending task by its ID
    result = await switched.wait(task_id)

    assert result.status is TaskStatus.COMPLETED, (result.reason, result.error)
    assert result.result is not None
    assert (result.result["txHash"], result.result["adopted"]) == (signed.tx_hash, True)
    assert await asyncio.to_thread(gov_chain.settled_sequence, validator.address, sequence + 1) == sequence + 1
    await asyncio.sleep(3)  # a second transaction would move the sequence again within a block or two
    assert await asyncio.to_thread(gov_chain.sequence, validator.address) == sequence + 1

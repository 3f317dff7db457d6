"""The Go sidecar's `tx_markers` survive the switch to the agent (issue 21 item 11): migrating a `sidecar.db` whose
Go sidecar signed and broadcast a gov transaction (a pending marker) imports it as the agent's tx record, so the gov
task adopts that transaction and never signs a second one. The Go store is built here from seictl's own schema."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from agent.chain.broadcast import IMPORTED_FROM_GO, TxRecords
from agent.chain.cosmos.keystore import AccountKey, ensure_account_key
from agent.chain.cosmos.proto import Coin, MsgVote, VoteOption
from agent.chain.cosmos.tx import SignedTx, sign_tx
from agent.models import TaskError, TaskType
from agent.models.settings import AgentSettings
from agent.store import SqliteStore
from tests.fixtures.cometbft import FakeCometBFT
from tests.fixtures.common import HandlerRunner
from tests.store.test_migrations import SEED_STEPS

TASK_ID = "00000000-0000-4000-8000-000000000000"  # HandlerRunner's task ID
CHAIN = "test-chain"  # the fake node's network
VOTE = {"chainId": CHAIN, "proposalId": 5, "option": "yes", "fees": "20000usei", "gas": 200000}


def go_vote(key: AccountKey, *, sequence: int = 9) -> SignedTx:
    """The transaction the Go sidecar signed for the task (same message, memo and fee its pipeline builds)."""
    return sign_tx(
        MsgVote(proposal_id=5, voter=key.address, option=VoteOption.VOTE_OPTION_YES),
        key.private_key,
        chain_id=CHAIN,
        account_number=3,
        sequence=sequence,
        fee=(Coin("usei", 20000),),
        gas=200000,
        memo=f"taskID={TASK_ID}",
    )


def go_store(path: Path, markers: list[tuple[object, ...]], *, status: str = "running") -> None:
    """A sidecar.db as seictl HEAD (schema 5) leaves it: the gov task's row and its markers."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("PRAGMA journal_mode=WAL")
        for step in SEED_STEPS:
            for statement in step:
                raw.execute(statement)
        params = '{"chainId":"test-chain","proposalId":5,"option":"yes"}'
        raw.execute(
            "INSERT INTO task_results (id, type, status, params, error, submitted_at, run) "
            "VALUES (?, 'gov-vote', ?, ?, '', '2026-12-01T10:00:00.5Z', 2)",
            (TASK_ID, status, params),
        )
        raw.executemany("INSERT INTO tx_markers VALUES (?, ?, ?, ?, ?, ?, ?)", markers)
        raw.execute("PRAGMA user_version = 5")


def marker(signed: SignedTx, task_id: str = TASK_ID) -> tuple[object, ...]:
    return (task_id, signed.tx_hash, signed.tx_bytes, 3, 9, CHAIN, "2026-12-01T10:00:01.123456789Z")


def test_migrating_a_go_store_imports_each_marker_as_a_tx_record(home: Path) -> None:
    key, _ = ensure_account_key(home)
    signed = go_vote(key)
    broken = ("0e5c5a8a-0000-4000-8000-00000000000c", "DEADBEEF", b"\x0a\x0b", 7, 42, CHAIN, "2026-03-31T22:36:30Z")
    go_store(home / "sidecar.db", [marker(signed), broken])

    SqliteStore(home / "sidecar.db").close()

    record = TxRecords(home).load(TASK_ID)
    assert record is not None
    assert (record.tx_hash, record.tx_bytes, record.sequence, record.account_number) == (
        signed.tx_hash, signed.tx_bytes, 9, 3,
    )  # fmt: skip
    assert (record.params_hash, record.chain_id, record.signer, record.run) == (IMPORTED_FROM_GO, CHAIN, key.address, 2)
    assert TxRecords(home).load(broken[0]) is None  # its hash is not of its bytes: logged, not imported
    with closing(sqlite3.connect(home / "sidecar.db")) as raw:  # the Go table itself is left as it was
        assert raw.execute("SELECT task_id FROM tx_markers ORDER BY task_id").fetchall() == [(TASK_ID,), (broken[0],)]


def test_an_existing_record_is_never_replaced_by_a_marker(home: Path) -> None:
    key, _ = ensure_account_key(home)
    go_store(home / "sidecar.db", [marker(go_vote(key))])
    SqliteStore(home / "sidecar.db").close()
    records = TxRecords(home)
    ours = records.load(TASK_ID)
    assert ours is not None
    records.save(ours.__class__(**{**ours.__dict__, "params_hash": "ours"}))

    SqliteStore(home / "sidecar.db").close()  # every open imports again: what exists stays

    again = records.load(TASK_ID)
    assert again is not None and again.params_hash == "ours"


async def test_the_gov_task_adopts_the_go_sidecars_transaction_instead_of_signing_again(
    home: Path, settings: AgentSettings, cometbft: FakeCometBFT
) -> None:
    key, _ = ensure_account_key(home)
    signed = go_vote(key)
    go_store(home / "sidecar.db", [marker(signed)])
    SqliteStore(home / "sidecar.db").close()
    runner = HandlerRunner(settings.model_copy(update={"rpc_endpoint": cometbft.url, "chain_id": CHAIN}))

    try:  # this fake serves no transactions: the run cannot finish, but what it asked shows what it did
        await runner(TaskType.GOV_VOTE, VOTE)
    except TaskError as error:
        assert error.reason != "ChainIdMismatch"

    asked = [request for request in cometbft.requests if request != "/status"]
    assert (
        signed.tx_hash.lower() in asked[0].lower()
    )  # the first question is about the Go sidecar's transaction: adoption
    record = TxRecords(home).load(TASK_ID)
    assert record is not None and record.tx_hash == signed.tx_hash  # never replaced by a second signature

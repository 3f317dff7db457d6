"""Sign, broadcast and confirm one transaction per task, and never a second one for the same task.

The one sign-and-broadcast path of the signed-transaction tasks (`gov-*`). Steps:

1. **Chain guard.** The local node's `/status` must report `network == chainId`; otherwise nothing is signed
   (`ChainIdMismatch`). A signature is bound to the chain ID, so this is also what makes a wrong `chainId` param fail
   before anything reaches a mempool.
2. **Adopt or sign.** The task's tx record (below) is adopted when it was written for the same task, the same params
   (a hash of the type and the validated params), the same chain and the same signer. Anything else is a different
   intent and the record is not adopted (it is replaced once the new transaction is signed).
3. **Fresh signing.** Account number and sequence come from the node (`abci_query`
   `/cosmos.auth.v1beta1.Query/Account`, latest state); the transaction is signed SIGN_MODE_DIRECT with the fee and
   gas given; its bytes and hash are written to the record **durably (fsync, atomic rename) before the broadcast**.
4. **Broadcast** with `broadcast_tx_sync`. A CheckTx rejection of freshly signed bytes discards the record: the node
   refused them, so they exist nowhere and a later run may sign again. "Already in the mempool cache" counts as
   accepted. A transport error leaves the outcome undetermined (`TxPending`, retryable; the record stays).
5. **Inclusion**: `/tx?hash=` every `poll_interval` until `inclusion_timeout`. Committed (a positive height) with
   code 0 is success; committed with another code is a terminal failure whose reason comes from the code
   (`OutOfGas`, `UnknownProposal`...) and whose message quotes the chain's log (bounded, scrubbed). Not committed in
   time is `TxPending` (retryable): the next run adopts the same transaction. A node whose transaction index is off
   cannot confirm anything: `TxUnverifiable` (terminal; enable `tx_index.indexer = "kv"`). Nothing is ever a
   success without a commit height.

**`inclusionStatus`** (the original sidecar's values, so a controller branches on them as it does there): every
result and every failure after the transaction exists carries a result with it: `committed_ok` (success),
`committed_failed` (committed, non-zero code; terminal), `pending` (outcome undetermined; run the task again, the
same transaction is adopted) and `unverifiable` (no transaction index). A CheckTx refusal carries the chain's `code`,
`codespace` and `rawLog` in its result but no `inclusionStatus`: the transaction exists nowhere.

**Adoption** (a resumed run after a crash, or a retry of the same task with the same params): look the recorded hash
up; found means that transaction is the task's outcome. Not found and the account's sequence still equals the
recorded one: re-broadcast the **same bytes** (never re-sign) and wait as above. Not found but the sequence has moved
on (checked again after a few seconds, for index lag): another transaction used that sequence, ours can never be
included, and the task fails with `SequenceConsumed` instead of signing a second one.

**Tx records** live in `<home>/nodetask-tx/<task-id>.json` (0600, written with `atomic_write`): task ID, run,
params hash, chain ID, signer, account number, sequence, hash and the signed bytes (public data: they go on chain;
no key material). They are kept for the store's retention period (`NODETASK_RETENTION_HOURS`, pruned whenever a
signed-transaction task starts), so a resubmitted task within that window is still protected. Why files and not a
store table: the record must be on disk before the broadcast whatever the store's `synchronous` setting, and the
handler layer has no store handle; one small fsynced file per task is both.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.io.files import atomic_write
from agent.models import TaskError, format_timestamp, parse_timestamp, utcnow
from agent.models.redaction import scrub_output

from .cosmos.keystore import AccountKey
from .cosmos.proto import BaseAccount, Coin, Message, ProtoError, QueryAccountRequest
from .cosmos.tx import (
    SEQUENCE_MISMATCH,
    TX_IN_MEMPOOL_CACHE,
    account_from_query,
    bounded_log,
    classify,
    sign_tx,
    tx_hash,
)
from .rpc import RpcClient, RpcError

RECORD_DIR = "nodetask-tx"
RECORD_VERSION = 1
ACCOUNT_QUERY_PATH = "/cosmos.auth.v1beta1.Query/Account"
INDEX_LAG_SECONDS = 5.0
"""How long a hash that is not found yet is looked up again before concluding it was never included."""
_TASK_ID = re.compile(r"^[0-9a-f-]{1,64}$")
_IN_CACHE = re.compile(r"already exists in cache|tx already in mempool", re.IGNORECASE)

IMPORTED_FROM_GO = "go-sidecar-tx-marker"
"""The `params_hash` of a record imported from the Go sidecar's `tx_markers` when its `sidecar.db` was migrated
(`agent.store.migrations.import_go_tx_markers`). A marker binds a transaction to a task ID and chain only, so such a
record is adopted by a run of its task on its chain whatever the params hash and signer, as the Go sidecar adopts it."""

CHAIN_ID_MISMATCH = "ChainIdMismatch"
ACCOUNT_NOT_FOUND = "AccountNotFound"
TX_PENDING = "TxPending"
TX_UNVERIFIABLE = "TxUnverifiable"
SEQUENCE_CONSUMED = "SequenceConsumed"
TX_RECORD_INVALID = "TxRecordInvalid"

COMMITTED_OK = "committed_ok"
COMMITTED_FAILED = "committed_failed"
PENDING = "pending"
UNVERIFIABLE = "unverifiable"
"""`inclusionStatus` values (module docstring)."""


@dataclass(frozen=True)
class TxRecord:
    """What is persisted before a broadcast (see the module docstring)."""

    task_id: str
    run: int
    params_hash: str
    chain_id: str
    signer: str
    account_number: int
    sequence: int
    tx_hash: str
    tx_bytes: bytes
    created_at: str

    def document(self) -> dict[str, Any]:
        body = asdict(self)
        body["tx_bytes"] = base64.b64encode(self.tx_bytes).decode()
        return {"version": RECORD_VERSION, **body}

    @classmethod
    def parse(cls, document: object) -> TxRecord:
        if not isinstance(document, dict) or document.get("version") != RECORD_VERSION:
            raise ValueError(f"not a version-{RECORD_VERSION} tx record")
        fields = {key: value for key, value in document.items() if key != "version"}
        record = cls(**{**fields, "tx_bytes": base64.b64decode(str(fields.get("tx_bytes", "")), validate=True)})
        if tx_hash(record.tx_bytes) != record.tx_hash:
            raise ValueError("tx_hash is not the hash of tx_bytes")
        return record

    def adoptable(self, intent: TxIntent, signer: str) -> bool:
        """Whether a run of `intent`'s task signing as `signer` adopts this record instead of signing: same params
        hash, chain and signer; for a record imported from the Go sidecar, the same chain."""
        if self.params_hash == IMPORTED_FROM_GO:
            return self.chain_id == intent.chain_id
        return (self.params_hash, self.chain_id, self.signer) == (intent.params_hash, intent.chain_id, signer)


class TxRecords:
    """The tx records of one node home."""

    def __init__(self, home: Path):
        self.directory = home / RECORD_DIR

    def path(self, task_id: str) -> Path:
        if not _TASK_ID.match(task_id):
            raise ValueError(f"task ID {task_id!r} is not a canonical UUID")
        return self.directory / f"{task_id}.json"

    def load(self, task_id: str) -> TxRecord | None:
        """The task's record, None when there is none; a damaged one is a `TaskError` (never silently re-signed)."""
        path = self.path(task_id)
        try:
            return TxRecord.parse(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, binascii.Error) as error:
            raise TaskError(
                f"tx record {path} is unreadable ({error}); refusing to sign, since its transaction may be on chain",
                reason=TX_RECORD_INVALID,
                hint="look the task's transaction up on chain, then remove the file to let the task sign again",
            ) from None

    def save(self, record: TxRecord) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path(record.task_id), json.dumps(record.document(), indent=2) + "\n", mode=0o600)

    def discard(self, task_id: str) -> None:
        self.path(task_id).unlink(missing_ok=True)

    def prune(self, older_than: datetime) -> int:
        """Remove records created before `older_than`; unreadable ones are judged by their file time. Returns how
        many were removed."""
        removed = 0
        if not self.directory.is_dir():
            return 0
        for path in self.directory.glob("*.json"):
            try:
                created = parse_timestamp(str(json.loads(path.read_bytes()).get("created_at", "")))
            except (OSError, ValueError, AttributeError):
                created = datetime.fromtimestamp(path.stat().st_mtime, tz=older_than.tzinfo)
            if created < older_than:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


@dataclass(frozen=True)
class TxIntent:
    """One task's transaction: who asks (task, run, params hash), for which chain, and what to sign."""

    task_id: str
    run: int
    params_hash: str
    chain_id: str
    message: Message
    fee: tuple[Coin, ...]
    gas: int
    memo: str = ""


@dataclass(frozen=True)
class TxOutcome:
    """A committed transaction, as the chain reports it."""

    tx_hash: str
    height: int
    code: int
    codespace: str
    log: str
    gas_wanted: int
    gas_used: int
    data: bytes
    sequence: int
    adopted: bool

    def result(self) -> dict[str, Any]:
        """The task result's transaction part with its `inclusionStatus` (no log on success: it is the chain's event
        dump; a failure's log is bounded and scrubbed)."""
        result: dict[str, Any] = {
            "txHash": self.tx_hash,
            "height": self.height,
            "code": self.code,
            "gasWanted": self.gas_wanted,
            "gasUsed": self.gas_used,
            "sequence": self.sequence,
            "adopted": self.adopted,
            "inclusionStatus": COMMITTED_OK if self.code == 0 else COMMITTED_FAILED,
        }
        if self.codespace:
            result["codespace"] = self.codespace
        if self.code != 0:
            result["rawLog"] = bounded_log(self.log)
        return result


def pending_result(record: TxRecord) -> dict[str, Any]:
    """The result of a run that ended before the transaction's outcome was known."""
    return {"txHash": record.tx_hash, "sequence": record.sequence, "inclusionStatus": PENDING}


def _int(value: object) -> int:
    try:
        return int(str(value or 0))
    except ValueError:
        return 0


def _outcome(found: dict[str, Any], record: TxRecord, adopted: bool) -> TxOutcome:
    tx_result = found.get("tx_result") if isinstance(found.get("tx_result"), dict) else {}
    assert isinstance(tx_result, dict)
    height = _int(found.get("height"))
    if height <= 0:  # `RpcClient.tx` refuses such an answer already; a success needs a commit height, always
        raise TaskError(
            f"tx {record.tx_hash}: the node's answer has no commit height; outcome undetermined",
            reason=TX_PENDING,
            hint="run the task again: the same transaction is adopted, never signed twice",
            retryable=True,
            result=pending_result(record),
        )
    try:
        data = base64.b64decode(str(tx_result.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    return TxOutcome(
        tx_hash=record.tx_hash,
        height=height,
        code=_int(tx_result.get("code")),
        codespace=str(tx_result.get("codespace") or ""),
        log=str(tx_result.get("log") or ""),
        gas_wanted=_int(tx_result.get("gas_wanted")),
        gas_used=_int(tx_result.get("gas_used")),
        data=data,
        sequence=record.sequence,
        adopted=adopted,
    )


def committed_failure(outcome: TxOutcome) -> TaskError:
    """The terminal error for a transaction the chain committed with a non-zero code."""
    kind = classify(outcome.codespace, outcome.code)
    return TaskError(
        f"tx {outcome.tx_hash} committed at height {outcome.height} but failed: {outcome.codespace or 'sdk'} code "
        f"{outcome.code} (gas used {outcome.gas_used} of {outcome.gas_wanted}): {bounded_log(outcome.log)}",
        reason=kind.reason,
        hint=kind.hint + "; the transaction is final, so running this task again reports the same outcome",
        retryable=False,
        result=outcome.result(),
    )


_SIGNER_LOCKS: dict[tuple[int, str], asyncio.Lock] = {}


def _signer_lock(address: str) -> asyncio.Lock:
    """One lock per signer and event loop (a lock must not be shared across loops)."""
    key = (id(asyncio.get_running_loop()), address)
    lock = _SIGNER_LOCKS.get(key)
    if lock is None:
        lock = _SIGNER_LOCKS[key] = asyncio.Lock()
    return lock


class TxSender:
    """Runs the path in the module docstring against one node for one signing key."""

    def __init__(
        self,
        rpc: RpcClient,
        key: AccountKey,
        records: TxRecords,
        *,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
        inclusion_timeout: float = 60.0,
        poll_interval: float = 0.5,
    ):
        self.rpc = rpc
        self.key = key
        self.records = records
        self.log = log
        self.inclusion_timeout = inclusion_timeout
        self.poll_interval = poll_interval

    async def send(self, intent: TxIntent) -> TxOutcome:
        """The committed outcome of the task's one transaction (code 0 or not: the caller decides what a non-zero
        code means); `TaskError` for everything that did not end in a commit.

        Transactions of one signer are sent one at a time in this process (held until inclusion or failure): the
        account query reads committed state, so a second transaction signed while the first is still in the mempool
        would get the same sequence and be refused. Two gov tasks submitted together therefore both succeed, one
        after the other.
        """
        async with _signer_lock(self.key.address):
            return await self._send(intent)

    async def _send(self, intent: TxIntent) -> TxOutcome:
        await self._check_chain(intent.chain_id)
        record = self.records.load(intent.task_id)
        if record is not None:
            if record.adoptable(intent, self.key.address):
                self.log.info(
                    "adopting tx %s recorded by run %d (sequence %d)", record.tx_hash, record.run, record.sequence
                )
                return await self._adopt(record)
            self.log.warning(
                "tx record of run %d (tx %s) is for other params, chain or signer: not adopted",
                record.run,
                record.tx_hash,
            )
        account = await self.account(self.key.address)
        signed = sign_tx(
            intent.message,
            self.key.private_key,
            chain_id=intent.chain_id,
            account_number=account.account_number,
            sequence=account.sequence,
            fee=intent.fee,
            gas=intent.gas,
            memo=intent.memo,
        )
        record = TxRecord(
            task_id=intent.task_id,
            run=intent.run,
            params_hash=intent.params_hash,
            chain_id=intent.chain_id,
            signer=self.key.address,
            account_number=signed.account_number,
            sequence=signed.sequence,
            tx_hash=signed.tx_hash,
            tx_bytes=signed.tx_bytes,
            created_at=format_timestamp(utcnow()),
        )
        await asyncio.to_thread(self.records.save, record)
        self.log.info("broadcasting tx %s (account %s, sequence %d)", record.tx_hash, record.signer, record.sequence)
        rejection = await self._broadcast(record)
        if rejection is not None:
            self.records.discard(intent.task_id)  # the node refused these bytes: they exist nowhere
            raise rejection
        self.log.info("tx %s accepted by the node; waiting for a block", record.tx_hash)
        return await self._await_inclusion(record, adopted=False)

    # --- steps ---------------------------------------------------------------------------------------------------

    async def _check_chain(self, chain_id: str) -> None:
        status = await self.rpc.status()
        if status.network != chain_id:
            raise TaskError(
                f"params.chainId is {chain_id!r} but the node at {self.rpc.endpoint} is on chain {status.network!r}; "
                "nothing was signed",
                reason=CHAIN_ID_MISMATCH,
                hint="set params.chainId to the chain this node runs",
            )

    async def account(self, address: str) -> BaseAccount:
        """The signer's account (number and sequence) in the node's latest state."""
        response = await self.rpc.abci_query(ACCOUNT_QUERY_PATH, QueryAccountRequest(address).encode())
        if _int(response.get("code")):
            log = bounded_log(str(response.get("log") or ""))
            if "not found" in log:
                raise TaskError(
                    f"account {address} does not exist on chain {self.rpc.endpoint}: {log}",
                    reason=ACCOUNT_NOT_FOUND,
                    hint="an account exists once it has received funds; fund the operator account",
                )
            raise TaskError(f"account query for {address} failed: {log}", reason="AccountQueryFailed", retryable=True)
        try:
            return account_from_query(base64.b64decode(str(response.get("value") or ""), validate=True))
        except (ProtoError, binascii.Error, ValueError) as error:
            raise TaskError(
                f"account query for {address}: unusable answer ({error})", reason="AccountQueryFailed"
            ) from None

    async def _broadcast(self, record: TxRecord) -> TaskError | None:
        """None when the node accepted the bytes (or already holds them); the CheckTx rejection otherwise."""
        try:
            answer = await self.rpc.broadcast_tx_sync(record.tx_bytes)
        except RpcError as error:
            if error.kind == "rpc" and _IN_CACHE.search(error.rpc_data):
                return None
            raise TaskError(
                f"broadcast of tx {record.tx_hash} undetermined ({error.cause}); the transaction is recorded and the "
                "next run re-checks it",
                reason=TX_PENDING,
                hint="run the task again: the same transaction is adopted, never signed twice",
                retryable=True,
                result=pending_result(record),
            ) from None
        code, codespace = _int(answer.get("code")), str(answer.get("codespace") or "")
        if code == 0 or (code == TX_IN_MEMPOOL_CACHE and codespace in ("sdk", "")):
            return None
        kind = classify(codespace, code)
        log = bounded_log(str(answer.get("log") or ""))
        result: dict[str, Any] = {"txHash": record.tx_hash, "code": code, "codespace": codespace, "rawLog": log}
        return TaskError(
            f"tx {record.tx_hash} rejected at CheckTx: {codespace or 'sdk'} code {code}: {log}",
            reason=kind.reason,
            hint=kind.hint,
            retryable=kind.retryable,
            result=result,
        )

    async def _lookup(self, record: TxRecord) -> dict[str, Any] | None:
        try:
            return await self.rpc.tx(record.tx_hash, seconds=5.0)
        except RpcError as error:
            if error.kind == "unindexed":
                raise TaskError(
                    f"tx {record.tx_hash}: inclusion unverifiable, the node does not index transactions "
                    f"({scrub_output(error.rpc_data, 200, keep='head')})",
                    reason=TX_UNVERIFIABLE,
                    hint='set tx_index.indexer = "kv" in config.toml, or check the transaction on an indexed RPC',
                    result={"txHash": record.tx_hash, "sequence": record.sequence, "inclusionStatus": UNVERIFIABLE},
                ) from None
            raise

    async def _await_inclusion(self, record: TxRecord, *, adopted: bool, seconds: float | None = None) -> TxOutcome:
        seconds = self.inclusion_timeout if seconds is None else seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                found = await self._lookup(record)
            except RpcError as error:
                self.log.debug("looking up tx %s: %s", record.tx_hash, error.cause)
                found = None
            if found is not None:
                return _outcome(found, record, adopted)
            if loop.time() >= deadline:
                raise TaskError(
                    f"tx {record.tx_hash} was accepted but not found in a block within {seconds:g}s",
                    reason=TX_PENDING,
                    hint="run the task again: the same transaction is adopted, never signed twice",
                    retryable=True,
                    result=pending_result(record),
                )
            await asyncio.sleep(self.poll_interval)

    async def _adopt(self, record: TxRecord) -> TxOutcome:
        try:
            found = await self._lookup(record)
        except RpcError as error:
            raise TaskError(
                f"cannot look up recorded tx {record.tx_hash}: {error.cause}",
                reason=TX_PENDING,
                hint="run the task again once the node answers",
                retryable=True,
                result=pending_result(record),
            ) from None
        if found is not None:
            return _outcome(found, record, adopted=True)
        account = await self.account(record.signer)
        if account.account_number != record.account_number or account.sequence < record.sequence:
            raise TaskError(
                f"recorded tx {record.tx_hash} was signed for account number {record.account_number} sequence "
                f"{record.sequence}, but the chain has account number {account.account_number} sequence "
                f"{account.sequence}: the chain was reset or the record belongs elsewhere",
                reason=TX_RECORD_INVALID,
                hint="check the chain; remove the record to let the task sign again",
            )
        if account.sequence > record.sequence:
            return await self._consumed(record, account.sequence)
        self.log.info("re-broadcasting the recorded bytes of tx %s", record.tx_hash)
        rejection = await self._broadcast(record)
        if rejection is not None:
            try:
                return await self._await_inclusion(record, adopted=True, seconds=INDEX_LAG_SECONDS)
            except TaskError:
                pass
            if rejection.reason == classify("sdk", SEQUENCE_MISMATCH).reason:
                return await self._consumed(record, None)
            raise rejection
        return await self._await_inclusion(record, adopted=True)

    async def _consumed(self, record: TxRecord, chain_sequence: int | None) -> TxOutcome:
        """The recorded sequence is used up: ours unless the index lags, else another transaction's."""
        try:
            return await self._await_inclusion(record, adopted=True, seconds=INDEX_LAG_SECONDS)
        except TaskError as error:
            if error.reason != TX_PENDING:
                raise
        now = f" (the account is at sequence {chain_sequence})" if chain_sequence is not None else ""
        raise TaskError(
            f"sequence {record.sequence} of {record.signer} was consumed by another transaction{now}; the task's tx "
            f"{record.tx_hash} was never included and is not signed again",
            reason=SEQUENCE_CONSUMED,
            hint="check what the account sent; to send this transaction anyway, submit a new task",
        )

"""Governance through signed transactions: `gov-vote`, `gov-software-upgrade`, `gov-param-change`.

Each handler builds one x/gov v1beta1 message (cosmos-sdk v0.45, what Sei runs) and hands it to the one
sign-and-broadcast path, `agent.chain.broadcast.TxSender`, which documents signing, the tx record that keeps a task
to one transaction across crashes and retries, and how CheckTx/DeliverTx codes become reasons. The signer is the key
`keyName` names: an entry of the operator's Cosmos keyring, or the node's own `validator` key (`agent.chain.keyring`);
its private key is used in this process only and never reaches a result, a log line or an error.

Before anything is signed or recorded, `gas`, `fees` and `initialDeposit` are held against the agent's spending
ceilings (`NODETASK_MAX_GAS`, `NODETASK_MAX_GAS_PRICE`, `NODETASK_MAX_DEPOSIT`; `agent.models.spending`): above
them the task fails `ParamsInvalid` naming the limit.

Result (the same keys for all three; `proposalId` for proposals):

    {"txHash": "<UPPER HEX>", "height": 123, "code": 0, "gasWanted": 200000, "gasUsed": 81234, "sequence": 4,
     "adopted": false, "inclusionStatus": "committed_ok", "signer": "sei1...", "proposalId": 7}

`adopted` is true when the transaction was signed by an earlier run of the task (a crash or retry), false when this
run signed it. `inclusionStatus` has the original sidecar's values and a failed task carries it too (see
`agent.chain.broadcast`): `committed_failed` (committed with a non-zero code: the chain's `code`, `codespace` and
`rawLog`), `pending` (run the same task again) or `unverifiable`. A proposal committed with code 0 but without a
proposal ID in its result data fails (`ProposalIdMissing`, result `committed_ok`) rather than report success without
the one value the caller needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from agent.chain.broadcast import TxIntent, TxOutcome, TxRecords, TxSender, committed_failure
from agent.chain.cosmos.keystore import AccountKey
from agent.chain.cosmos.proto import (
    Any as AnyMessage,
)
from agent.chain.cosmos.proto import (
    Coin,
    Message,
    MsgSubmitProposal,
    MsgVote,
    ParamChange,
    ParameterChangeProposal,
    Plan,
    SoftwareUpgradeProposal,
    VoteOption,
)
from agent.chain.cosmos.tx import proposal_id_from_data
from agent.chain.keyring import signing_key
from agent.chain.rpc import RpcClient
from agent.models import TaskError, TaskType, utcnow
from agent.models.params.base import ChainId, TaskParams
from agent.models.params.coins import Coin as ParamCoin
from agent.models.params.coins import Coins, PositiveInt

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---
# Wire names follow the Go sidecar (v0.0.70), so its controller's requests validate unchanged. Where the original
# is loose: `keyName` names a key of the operator's Cosmos keyring (`SEI_KEYRING_BACKEND`) or `validator`, the
# node's own key, and a name no keyring holds fails the task naming it (`agent.chain.keyring`); `fees` may be in
# any denom, every amount positive; big integers (`gas`, `proposalId`, `upgradeHeight`) are JSON numbers or digit
# strings; `changes[].value` is the parameter's raw JSON, sent as its compact JSON text (a JSON string keeps its
# quotes, which is what the params module expects for string params).

MAX_MEMO_BYTES = 200
"""The SDK allows 256 bytes; the agent appends ` taskID=<uuid>` (44 bytes) so a transaction names its task."""
DEFAULT_KEY_NAME = "validator"


_VOTE_OPTION_NAMES = {
    "yes": "yes",
    "no": "no",
    "abstain": "abstain",
    "no_with_veto": "no_with_veto",
    "nowithveto": "no_with_veto",
}


_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,140}$")
_KEY_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,128}")


def _vote_option(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected one of yes, no, abstain, no_with_veto; got {value!r}")
    option = _VOTE_OPTION_NAMES.get(value.strip().lower().replace("-", "_"))
    if option is None:
        raise ValueError(f"{value!r} is not one of yes, no, abstain, no_with_veto")
    return option


def _raw_json(value: object) -> str:
    """The compact JSON text of a param value given as JSON (or as an already-encoded JSON text string)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


VoteOptionName = Annotated[Literal["yes", "no", "abstain", "no_with_veto"], BeforeValidator(_vote_option)]


class SignedTxParams(TaskParams):
    """What every signed-transaction task takes besides its message."""

    chain_id: ChainId = Field(min_length=1, description="The chain the transaction is for; must be the node's.")
    key_name: str = Field(
        default=DEFAULT_KEY_NAME,
        description="Keyring key to sign with: an entry of the operator's keyring, or 'validator' (the node's own).",
    )
    fees: Coins = Field(description="Fee paid, e.g. '20000usei' (gas x the node's minimum gas price or more).")
    gas: PositiveInt = Field(description="Gas limit (no simulation).")
    memo: str = Field(default="", description="Memo; the agent appends ' taskID=<id>'.")

    @field_validator("key_name")
    @classmethod
    def _key_name(cls, value: str) -> str:
        if not _KEY_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a key name (1-128 of A-Z a-z 0-9 _ . - @)")
        return value

    @field_validator("memo")
    @classmethod
    def _printable_memo(cls, value: str) -> str:
        if len(value.encode()) > MAX_MEMO_BYTES:
            raise ValueError(f"is {len(value.encode())} bytes, at most {MAX_MEMO_BYTES} allowed")
        if not value.isprintable() or "taskID=" in value:
            raise ValueError("must be printable text on one line, without 'taskID=' (the agent adds that tag)")
        return value


class GovVoteParams(SignedTxParams):
    """`gov-vote`: vote on a proposal with the node's operator account."""

    proposal_id: PositiveInt = Field(description="Proposal to vote on.")
    option: VoteOptionName = Field(description="yes, no, abstain or no_with_veto (no-with-veto accepted).")


class ProposalParams(SignedTxParams):
    title: str = Field(min_length=1, max_length=140, description="Proposal title.")
    description: str = Field(min_length=1, max_length=10000, description="Proposal description.")
    initial_deposit: Coins = Field(description="Deposit sent with the proposal, e.g. '10000000usei'.")


class GovSoftwareUpgradeParams(ProposalParams):
    """`gov-software-upgrade`: submit a SoftwareUpgradeProposal."""

    upgrade_name: str = Field(description="Plan name (the upgrade handler's name in the new binary).")
    upgrade_height: PositiveInt = Field(description="Height at which the chain halts for the upgrade.")
    upgrade_info: str = Field(default="", max_length=10000, description="Plan info (binaries JSON or a URL).")

    @field_validator("upgrade_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: 1-140 characters of letters, digits and _.:/-")
        return value


class ParamChangeSpec(TaskParams):
    subspace: str = Field(min_length=1, description="Params subspace (module), e.g. 'staking'.")
    key: str = Field(min_length=1, description="Param key in that subspace, e.g. 'MaxValidators'.")
    value: Any = Field(description="The new value as JSON (a string param is a JSON string).")

    @field_validator("value", mode="before")
    @classmethod
    def _present(cls, value: object) -> object:
        if value is None:
            raise ValueError("required (JSON null is not a parameter value)")
        return value

    def value_text(self) -> str:
        return _raw_json(self.value)


class GovParamChangeParams(ProposalParams):
    """`gov-param-change`: submit a ParameterChangeProposal."""

    changes: list[ParamChangeSpec] = Field(min_length=1, description="The changes, applied together if it passes.")


INCLUSION_TIMEOUT_SECONDS = 60.0
"""How long one run waits for its transaction in a block (the original's 60 s); then `TxPending`, retryable."""
PROPOSAL_ID_MISSING = "ProposalIdMissing"
_VOTE_OPTIONS = {
    "yes": VoteOption.VOTE_OPTION_YES,
    "no": VoteOption.VOTE_OPTION_NO,
    "abstain": VoteOption.VOTE_OPTION_ABSTAIN,
    "no_with_veto": VoteOption.VOTE_OPTION_NO_WITH_VETO,
}


def params_hash(task_type: TaskType, params: SignedTxParams) -> str:
    """SHA-256 over the type and the validated params (canonical JSON): what binds a tx record to its intent."""
    canonical = json.dumps(
        {"type": str(task_type), "params": params.model_dump(mode="json", by_alias=True)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _coins(coins: tuple[ParamCoin, ...]) -> tuple[Coin, ...]:
    return tuple(Coin(coin.denom, coin.amount) for coin in coins)


def _memo(memo: str, task_id: str) -> str:
    """The caller's memo plus `taskID=<id>`, so a transaction on chain names the task that sent it."""
    return f"{memo} taskID={task_id}".strip()


def _signing_key(ctx: TaskContext, params: SignedTxParams) -> AccountKey:
    """The one place the signing key is chosen: `params.keyName` from the operator's keyring, or the node's own
    `validator` key (`agent.chain.keyring`)."""
    return signing_key(ctx.settings, params.key_name)


def _check_spending(ctx: TaskContext, params: SignedTxParams, deposit: tuple[ParamCoin, ...] = ()) -> None:
    """`ParamsInvalid` when the fee, gas or deposit is above the agent's ceilings; before anything is signed."""
    ctx.settings.spending_limits.check(
        gas=params.gas,
        fees=[(coin.denom, coin.amount) for coin in params.fees],
        deposit=[(coin.denom, coin.amount) for coin in deposit],
    )


async def _send(ctx: TaskContext, params: SignedTxParams, build: Any) -> tuple[TxOutcome, AccountKey]:
    """Check the ceilings, load the key, build the message for its address, and run the one transaction of this
    task."""
    _check_spending(ctx, params, params.initial_deposit if isinstance(params, ProposalParams) else ())
    key = await asyncio.to_thread(_signing_key, ctx, params)
    message: Message = build(key.address)
    records = TxRecords(ctx.home)
    await asyncio.to_thread(records.prune, utcnow() - max(ctx.settings.retention, timedelta(hours=1)))
    intent = TxIntent(
        task_id=ctx.task_id,
        run=ctx.run,
        params_hash=params_hash(ctx.task_type, params),
        chain_id=params.chain_id,
        message=message,
        fee=_coins(params.fees),
        gas=params.gas,
        memo=_memo(params.memo, ctx.task_id),
    )
    async with RpcClient(ctx.settings.rpc_endpoint) as rpc:
        sender = TxSender(rpc, key, records, log=ctx.log, inclusion_timeout=INCLUSION_TIMEOUT_SECONDS)
        outcome = await sender.send(intent)
    ctx.log.info("tx %s committed at height %d with code %d", outcome.tx_hash, outcome.height, outcome.code)
    if outcome.code != 0:
        raise committed_failure(outcome)
    if outcome.height <= 0:  # never reached: TxSender returns only committed outcomes; a success needs a height
        raise TaskError(f"tx {outcome.tx_hash} has no commit height", reason="TxPending", retryable=True)
    return outcome, key


def _result(outcome: TxOutcome, key: AccountKey) -> dict[str, Any]:
    return {**outcome.result(), "signer": key.address}


async def _propose(
    ctx: TaskContext, params: SignedTxParams, content: Message, deposit: tuple[Coin, ...]
) -> dict[str, Any]:
    outcome, key = await _send(
        ctx,
        params,
        lambda proposer: MsgSubmitProposal(
            content=AnyMessage.pack(content), initial_deposit=deposit, proposer=proposer
        ),
    )
    proposal_id = proposal_id_from_data(outcome.data)
    if proposal_id is None:
        raise TaskError(
            f"tx {outcome.tx_hash} committed at height {outcome.height} but its result data holds no proposal ID",
            reason=PROPOSAL_ID_MISSING,
            hint="look the proposal up on chain (gov proposals by proposer); the transaction is final",
            result=_result(outcome, key),
        )
    return {**_result(outcome, key), "proposalId": proposal_id}


@handler(TaskType.GOV_VOTE, GovVoteParams)
async def gov_vote(params: GovVoteParams, ctx: TaskContext) -> dict[str, Any]:
    """Vote on a governance proposal with the node's operator account (one signed MsgVote)."""
    outcome, key = await _send(
        ctx,
        params,
        lambda voter: MsgVote(proposal_id=params.proposal_id, voter=voter, option=_VOTE_OPTIONS[params.option]),
    )
    return {**_result(outcome, key), "proposalId": params.proposal_id, "option": params.option}


@handler(TaskType.GOV_SOFTWARE_UPGRADE, GovSoftwareUpgradeParams)
async def gov_software_upgrade(params: GovSoftwareUpgradeParams, ctx: TaskContext) -> dict[str, Any]:
    """Submit a SoftwareUpgradeProposal (plan name, height, info) with its initial deposit."""
    content = SoftwareUpgradeProposal(
        title=params.title,
        description=params.description,
        plan=Plan(name=params.upgrade_name, height=params.upgrade_height, info=params.upgrade_info),
    )
    return await _propose(ctx, params, content, _coins(params.initial_deposit))


@handler(TaskType.GOV_PARAM_CHANGE, GovParamChangeParams)
async def gov_param_change(params: GovParamChangeParams, ctx: TaskContext) -> dict[str, Any]:
    """Submit a ParameterChangeProposal (subspace, key, raw JSON value per change) with its initial deposit."""
    content = ParameterChangeProposal(
        title=params.title,
        description=params.description,
        changes=tuple(ParamChange(change.subspace, change.key, change.value_text()) for change in params.changes),
    )
    return await _propose(ctx, params, content, _coins(params.initial_deposit))


HANDLERS = [gov_vote, gov_software_upgrade, gov_param_change]

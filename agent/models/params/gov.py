"""Params of the governance tasks (`gov-vote`, `gov-software-upgrade`, `gov-param-change`).

Wire names follow the Go sidecar (v0.0.70) so its controller's requests validate here unchanged. Differences, each
an operator's call where the original is loose:
- `keyName` names a key of the operator's Cosmos keyring (`SEI_KEYRING_BACKEND`), or `validator`, the node's own
  key; a name no keyring holds fails the task naming it (`agent.chain.keyring`), never signs with another key.
- `fees` may be in any denom (the chain's minimum gas prices decide); every amount must be positive.
- Big integers (`gas`, `proposalId`, `upgradeHeight`) are accepted as JSON numbers or digit strings.
- `changes[].value` is the parameter's raw JSON (any JSON value); it is sent as its compact JSON text. A JSON string
  is sent with its quotes (`"\"600s\""` on the wire), which is what the params module expects for string params.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from .base import ChainId, TaskParams
from .genesis import Coins, PositiveInt

MAX_MEMO_BYTES = 200
"""The SDK allows 256 bytes; the agent appends ` taskID=<uuid>` (44 bytes) so a transaction names its task."""
DEFAULT_KEY_NAME = "validator"
_VOTE_OPTIONS = {
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
    option = _VOTE_OPTIONS.get(value.strip().lower().replace("-", "_"))
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

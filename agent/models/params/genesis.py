"""Params of the genesis ceremony tasks: generate-gentx, upload-genesis-artifacts, assemble-and-upload-genesis,
assemble-genesis-fork and export-state.

Coin strings use the Cosmos form `<integer amount><denom>` (`1000000usei`, several joined by commas:
`5usei,10uatom`). They are parsed here, so a bad amount or denom is a `ParamsInvalid` naming the field and the
value before any handler runs. Decimal amounts (`1.5usei`), zero or negative amounts and repeated denoms are refused.

Chain ID, bucket and region default to the agent's settings (`SEI_CHAIN_ID`, `SEI_GENESIS_BUCKET`,
`SEI_GENESIS_REGION`) when left empty; the handlers resolve those defaults and refuse to run without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .base import TaskParams, check_chain_id

DENOM_PATTERN = r"[a-zA-Z][a-zA-Z0-9/:._-]{2,127}"
"""The Cosmos SDK's denom rule: a letter, then 2 to 127 letters, digits or `/:._-`."""
_COIN = re.compile(rf"^(?P<amount>[0-9]+)(?P<denom>{DENOM_PATTERN})$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
DEFAULT_P2P_PORT = 26656


@dataclass(frozen=True, order=True)
class Coin:
    """One amount of one denom (`amount` is an exact integer of base units)."""

    denom: str
    amount: int

    def __str__(self) -> str:
        return f"{self.amount}{self.denom}"


def parse_coins(text: object) -> tuple[Coin, ...]:
    """Parse `1000usei` or `5usei,10uatom` into coins sorted by denom; ValueError names the offending part."""
    if isinstance(text, tuple | list) and all(isinstance(item, Coin) for item in text):
        return tuple(sorted(text))
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a coin string such as '1000000usei', got {text!r}")
    coins: dict[str, Coin] = {}
    for raw_part in text.split(","):
        part = raw_part.strip()
        where = repr(part) if part == text else f"{part!r} in {text!r}"
        match = _COIN.match(part)
        if not match:
            raise ValueError(
                f"{where} is not a coin: expected an integer amount followed by a denom (for example '1000000usei')"
            )
        amount, denom = int(match["amount"]), match["denom"]
        if amount <= 0:
            raise ValueError(f"{where}: the amount must be positive")
        if denom in coins:
            raise ValueError(f"{text!r} names denom {denom!r} twice")
        coins[denom] = Coin(denom, amount)
    return tuple(sorted(coins.values()))


def _parse_decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", value.strip()):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    else:
        raise ValueError(f"expected a decimal string such as '0.10', got {value!r}")
    if number.as_tuple().exponent < -18:  # type: ignore[operator]
        raise ValueError(f"{value!r} has more than 18 decimal places")
    if not 0 <= number <= 1:
        raise ValueError(f"{value!r} is not between 0 and 1")
    return number


def _parse_positive_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"expected a positive integer (a number or a string of digits), got {value!r}")
    if number <= 0:
        raise ValueError(f"{value!r} must be positive")
    return number


Coins = Annotated[tuple[Coin, ...], BeforeValidator(parse_coins)]
Rate = Annotated[Decimal, BeforeValidator(_parse_decimal)]
PositiveInt = Annotated[int, BeforeValidator(_parse_positive_int)]


class GenesisBucketParams(TaskParams):
    """Where the ceremony's artifacts live: `s3://<bucket>/<chainId>/...` (defaults from the agent's settings).

    `bucket` and `region` are spelt as in every other task that reads or writes S3; the ceremony's earlier
    `s3Bucket` / `s3Region` are accepted as deprecated spellings while the API is v1alpha1.
    """

    deprecated_names: ClassVar[dict[str, str]] = {"s3Bucket": "bucket", "s3Region": "region"}

    chain_id: str = ""
    bucket: str = ""
    region: str = ""

    _chain_id = field_validator("chain_id")(check_chain_id)

    @property
    def s3_bucket(self) -> str:
        """The former name of `bucket`, for code written before the rename."""
        return self.bucket

    @property
    def s3_region(self) -> str:
        """The former name of `region`, for code written before the rename."""
        return self.region


class GenerateGentxParams(TaskParams):
    """`generate-gentx`: this validator's account, its genesis balance, and its signed `MsgCreateValidator`."""

    chain_id: str = Field(default="", description="Chain the gentx is signed for; default SEI_CHAIN_ID.")
    staking_amount: Coins = Field(description="Self-delegation, one coin of the bond denom: '1000000usei'.")
    account_balance: Coins = Field(description="Genesis balance of the new account: '10000000usei[,...]'.")
    moniker: str = Field(default="", max_length=70, description="Default: config.toml's moniker, else the pod name.")
    identity: str = Field(default="", max_length=3000)
    website: str = Field(default="", max_length=140)
    security_contact: str = Field(default="", max_length=140)
    details: str = Field(default="", max_length=280)
    host: str = Field(default="", description="P2P host in the memo; default <pod>.<service>.<ns>.svc.cluster.local.")
    p2p_port: int = Field(default=DEFAULT_P2P_PORT, ge=1, le=65535)
    commission_rate: Rate = Decimal("0.10")
    commission_max_rate: Rate = Decimal("0.20")
    commission_max_change_rate: Rate = Decimal("0.01")
    min_self_delegation: PositiveInt = 1
    account_number: int = Field(
        default=0,
        ge=0,
        lt=2**64,
        description="Account number the gentx is signed with: 0, except for a fork onto a stock Cosmos SDK chain "
        "(SEI_GENTX_ACCOUNT_NUMBERS=initial-height), where it is the account's position in the fork's genesis.",
    )

    _chain_id = field_validator("chain_id")(check_chain_id)

    @field_validator("host")
    @classmethod
    def _host_is_a_hostname(cls, value: str) -> str:
        if value and not _HOST.match(value):
            raise ValueError(f"{value!r} is not a host name or IPv4 address (no scheme, port or '@')")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GenerateGentxParams:
        if len(self.staking_amount) != 1:
            raise ValueError(f"stakingAmount: expected exactly one coin, got {len(self.staking_amount)}")
        if not self.commission_rate <= self.commission_max_rate:
            raise ValueError(
                f"commissionRate {self.commission_rate} is above commissionMaxRate {self.commission_max_rate}"
            )
        if not self.commission_max_change_rate <= self.commission_max_rate:
            raise ValueError(
                f"commissionMaxChangeRate {self.commission_max_change_rate} is above commissionMaxRate "
                f"{self.commission_max_rate}"
            )
        if self.min_self_delegation > self.staking_amount[0].amount:
            raise ValueError(
                f"minSelfDelegation {self.min_self_delegation} is above the stakingAmount {self.staking_amount[0]}"
            )
        return self


class UploadGenesisArtifactsParams(GenesisBucketParams):
    """`upload-genesis-artifacts`: publish this node's gentx and public identity under `<chainId>/<nodeName>/`."""

    node_name: str = Field(description="This node's name in the ceremony (a DNS label, e.g. the SeiNode name).")

    @field_validator("node_name")
    @classmethod
    def _node_name_is_a_label(cls, value: str) -> str:
        return _check_node_name(value)


def _check_node_name(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(f"{value!r} is not a node name (a DNS label: lowercase letters, digits and '-')")
    return value


class CeremonyNode(TaskParams):
    """One validator of the ceremony, by the name it uploaded its artifacts under."""

    name: str

    _name = field_validator("name")(_check_node_name)


class VestingSpec(TaskParams):
    """Vesting of an external genesis account (continuous from genesis time, or all at `endTime` when delayed)."""

    amount: Coins = Field(description="Original vesting amount; at most the account's balance.")
    end_time: PositiveInt = Field(description="Unix seconds when vesting ends; after the genesis time.")
    delayed: bool = Field(default=False, description="DelayedVestingAccount instead of ContinuousVestingAccount.")


class GenesisAccountSpec(TaskParams):
    """An account of the new chain that belongs to no validator (a treasury, a faucet, an investor)."""

    address: str = Field(min_length=1, description="Bech32 account address with the chain's prefix.")
    balance: Coins = Field(description="Full genesis balance, vesting part included.")
    vesting: VestingSpec | None = Field(default=None, description="Makes it a vesting account.")

    @model_validator(mode="after")
    def _vesting_within_balance(self) -> GenesisAccountSpec:
        if self.vesting is not None:
            held = {coin.denom: coin.amount for coin in self.balance}
            for coin in self.vesting.amount:
                if held.get(coin.denom, 0) < coin.amount:
                    raise ValueError(f"vesting.amount {coin} is more than the balance holds of {coin.denom}")
        return self


class AssembleGenesisParams(GenesisBucketParams):
    """`assemble-and-upload-genesis`: collect every node's gentx into this node's genesis and publish it."""

    account_balance: Coins = Field(description="Balance given to a gentx's account that genesis does not hold yet.")
    nodes: list[CeremonyNode] = Field(min_length=1, description="Every validator of the ceremony.")
    accounts: list[GenesisAccountSpec] = Field(
        default_factory=list, description="External (and vesting) accounts added to genesis."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted app_state paths set to JSON values: {'staking.params.max_validators': 50}.",
    )

    @field_validator("accounts")
    @classmethod
    def _unique_accounts(cls, accounts: list[GenesisAccountSpec]) -> list[GenesisAccountSpec]:
        seen: set[str] = set()
        for account in accounts:
            if account.address in seen:
                raise ValueError(f"account {account.address!r} is listed twice")
            seen.add(account.address)
        return accounts

    @field_validator("overrides")
    @classmethod
    def _no_null_values(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        for key, value in overrides.items():
            if value is None:
                raise ValueError(f"{key!r}: null is not a value (omit the key to keep the genesis's)")
        return overrides

    @field_validator("nodes")
    @classmethod
    def _unique_names(cls, nodes: list[CeremonyNode]) -> list[CeremonyNode]:
        seen: set[str] = set()
        for node in nodes:
            if node.name in seen:
                raise ValueError(f"node {node.name!r} is listed twice")
            seen.add(node.name)
        return nodes


class AssembleGenesisForkParams(AssembleGenesisParams):
    """`assemble-genesis-fork`: the same ceremony, starting from another chain's exported state."""

    source_chain_id: str = Field(description="The chain whose exported state the fork starts from.")
    export_key: str = Field(
        default="", description="S3 key of the export; default <sourceChainId>/exported-state.json."
    )
    genesis_time: datetime | None = Field(default=None, description="Default: now (kept across re-runs).")
    initial_height: PositiveInt | None = Field(default=None, description="Default: the export's initial_height.")

    _source_chain_id = field_validator("source_chain_id")(check_chain_id)

    @model_validator(mode="after")
    def _no_accounts_or_overrides(self) -> AssembleGenesisForkParams:
        if self.accounts or self.overrides:
            raise ValueError(
                "accounts and overrides are not supported by assemble-genesis-fork: the export is streamed, never "
                "held whole; put such changes into the source chain's state"
            )
        return self

    @model_validator(mode="after")
    def _new_chain(self) -> AssembleGenesisForkParams:
        if not self.source_chain_id:
            raise ValueError("sourceChainId: must not be empty")
        if self.chain_id and self.chain_id == self.source_chain_id:
            raise ValueError(f"chainId {self.chain_id!r} must differ from sourceChainId (a fork is a new chain)")
        return self


class ExportStateParams(GenesisBucketParams):
    """`export-state`: `seid export` streamed to `s3://<bucket>/<key>` (`s3Key` is the deprecated spelling of `key`)."""

    deprecated_names: ClassVar[dict[str, str]] = {**GenesisBucketParams.deprecated_names, "s3Key": "key"}

    key: str = Field(default="", description="Default: <chainId>/exported-state.json.")
    height: int = Field(default=0, ge=0, description="Height to export; 0 means the latest.")
    seid_binary: Any = Field(
        default=None,
        exclude=True,
        description="Refused: the node binary is agent configuration (SEI_BINARY), never task input.",
    )

    @field_validator("seid_binary")
    @classmethod
    def _no_binary_from_params(cls, value: Any) -> None:
        # A task param naming a program to execute let anyone who can create a NodeTask run a file of their choice
        # (for example a script restored from a snapshot) inside the agent's container.
        if value is not None:
            raise ValueError(
                "no longer accepted: the binary export-state runs is agent configuration now "
                "(SEI_BINARY / AgentSettings.seid_binary), never a task param; remove seidBinary from the manifest"
            )
        return None

    @field_validator("key")
    @classmethod
    def _key_is_relative(cls, value: str) -> str:
        if value and (value.startswith("/") or value.endswith("/") or "//" in value):
            raise ValueError(f"{value!r} is not an object key (no leading or trailing '/', no empty segment)")
        return value

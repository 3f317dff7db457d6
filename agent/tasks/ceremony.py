"""The genesis ceremony across pods: upload-genesis-artifacts, assemble-and-upload-genesis, assemble-genesis-fork.

Flow (docs/genesis-ceremony.md): every validator runs generate-identity, generate-gentx and
upload-genesis-artifacts; one assembler node then runs assemble-and-upload-genesis (or assemble-genesis-fork), which
downloads every listed node's gentx and identity, verifies them, writes the genesis and publishes it; every node
then fetches it (configure-genesis) and its peers (set-genesis-peers). S3 layout: `agent.chain.cosmos.artifacts`.

Assembly checks everything before it writes anything: each gentx is decoded, re-encoded and its signature verified
against its own signer key over sign bytes recomputed for this chain; its memo must be present and agree with the
node's identity; no two validators may share a consensus key, operator, node ID or P2P address; every self-delegation
must be in the bond denom, worth at least one unit of voting power and covered by the delegator's balance. Each
problem fails the task with a reason (`GentxInvalid`, `GentxMissingMemo`, `DuplicateValidator`,
`InsufficientBalance`, `TooManyValidators`, `GenesisArtifactsMissing`) and a message naming the validator.

Then, in memory: missing accounts get `accountBalance` (and a non-empty supply grows to match), EVM associations are
added when genesis has an `evm` module, `genutil.gen_txs` is replaced by the verified gentxs (canonical proto-JSON) in
`nodes` order, and the genesis `validators` array is filled (state sync needs it).
The genesis is written atomically, `peers.json` is uploaded, then `genesis.json` (last: its presence tells the other
pods that the ceremony is complete), then the done-marker. The result is `{"genesisHash": <sha256 hex of the
uploaded bytes>}` plus counts. Every edit is idempotent, so a re-run after a crash produces the same genesis.

Assembly does not write gentx files into the shared `config/gentx/` directory (pods writing it at once would race)
and does not rewrite `config.toml` (set-genesis-peers sets peers from `peers.json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from agent.chain.cosmos import artifacts, fork, genesis_extras
from agent.chain.cosmos import genesis as genesis_doc
from agent.chain.cosmos.address import ChainIdentity, address_bytes, consensus_address_bytes
from agent.chain.cosmos.coins import add as coin_add
from agent.chain.cosmos.coins import coin_map, coins_to_json, format_coins
from agent.chain.cosmos.gentx import (
    GENTX_INVALID,
    GentxProblem,
    VerifiedGentx,
    check_signature,
    parse_gentx_bytes,
    verify_gentx,
)
from agent.chain.crypto import bech32
from agent.chain.crypto.evm import eth_address
from agent.chain.keys import load_node_key, node_key_path
from agent.io.files import TEMP_SUFFIX, atomic_write, atomic_writer, has_marker, write_marker
from agent.io.s3 import S3_NOT_FOUND, S3Client, check_cancel, run_blocking
from agent.models import ParamsInvalid, TaskError, TaskType, format_timestamp, parse_timestamp, utcnow
from agent.models.params.base import TaskParams, check_chain_id
from agent.models.params.coins import Coins, PositiveInt
from agent.models.params.s3 import GenesisBucketParams

from .base import TaskContext, handler
from .gentx import GENESIS_INVALID, INSUFFICIENT_BALANCE, gentx_path, load_genesis, resolve_chain_id
from .prechecks import genesis_bucket_known

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


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


UPLOAD_MARKER = "artifact-upload"
ASSEMBLE_MARKER = "assemble"
FORK_MARKER = "fork-assemble"
ARTIFACTS_MISSING = "GenesisArtifactsMissing"
DUPLICATE_VALIDATOR = "DuplicateValidator"
TOO_MANY_VALIDATORS = "TooManyValidators"
GENTX_MISSING = "GentxMissing"
IDENTITY_INVALID = "IdentityInvalid"
MAX_ARTIFACT_BYTES = 1024 * 1024
FORK_TIME_FILE = ".nodetask-fork-genesis-time.json"
MIN_SEI_NETWORK_NODES = 3
FEW_NODES_WARNING = (
    "{count} validator(s): Sei's node does not leave block sync with fewer than two peers, so this network neither "
    "starts nor survives a validator restart unless it has at least 3 nodes (add full nodes peered with the validators)"
)


@dataclass(frozen=True)
class Bucket:
    chain_id: str
    name: str
    s3: S3Client
    identity: ChainIdentity


def genesis_bucket(params: GenesisBucketParams, ctx: TaskContext) -> Bucket:
    """Chain ID, bucket and client from params, falling back to SEI_CHAIN_ID / SEI_GENESIS_BUCKET / _REGION."""
    chain_id = resolve_chain_id(params.chain_id, ctx.settings)
    bucket = params.bucket or ctx.settings.genesis_bucket
    if not bucket:
        raise ParamsInvalid("params.bucket: not given, and SEI_GENESIS_BUCKET is not set")
    region = params.region or ctx.settings.genesis_region
    s3 = S3Client.from_settings(ctx.settings, region=region)
    return Bucket(chain_id, bucket, s3, ChainIdentity.from_settings(ctx.settings))


# --- upload-genesis-artifacts --------------------------------------------------------------------------------------


def _local_artifacts(
    home: Path, chain_id: str, node_name: str, chain: ChainIdentity
) -> tuple[bytes, artifacts.NodeIdentity]:
    node_id = load_node_key(node_key_path(home)).node_id
    path = gentx_path(home, node_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TaskError(
            f"{path}: no gentx for this node", reason=GENTX_MISSING, hint="run generate-gentx first"
        ) from None
    try:
        account_number = None if chain.defers_gentx_signatures else 0  # the assembler checks a deferred one
        verified = verify_gentx(parse_gentx_bytes(data), chain_id, chain.prefixes, account_number)
    except GentxProblem as problem:
        raise TaskError(f"{path}: {problem.detail}", reason=problem.reason, hint="re-run generate-gentx") from None
    if verified.node_id != node_id:
        raise TaskError(
            f"{path}: memo names node {verified.node_id}, but this node's key is {node_id}",
            reason=GENTX_INVALID,
        )
    identity = artifacts.NodeIdentity(
        node_name=node_name,
        node_id=node_id,
        p2p_address=verified.p2p_address,
        moniker=verified.moniker,
        consensus_public_key=verified.consensus_public_key,
        consensus_address=consensus_address_bytes(verified.consensus_public_key).hex().upper(),
        account_address=verified.delegator_address,
        validator_address=verified.validator_address,
    )
    return data, identity


@handler(TaskType.UPLOAD_GENESIS_ARTIFACTS, UploadGenesisArtifactsParams, precheck=genesis_bucket_known)
async def upload_genesis_artifacts(params: UploadGenesisArtifactsParams, ctx: TaskContext) -> dict[str, Any]:
    """Publish this node's gentx and public identity (never a private key) under `<chainId>/<nodeName>/`."""
    bucket = genesis_bucket(params, ctx)
    keys = {
        "gentxKey": artifacts.gentx_key(bucket.chain_id, params.node_name),
        "identityKey": artifacts.identity_key(bucket.chain_id, params.node_name),
    }
    if has_marker(ctx.home, UPLOAD_MARKER):
        return {"alreadyDone": True, **keys}
    gentx, identity = await asyncio.to_thread(
        _local_artifacts, ctx.home, bucket.chain_id, params.node_name, bucket.identity
    )
    await bucket.s3.put_bytes(bucket.name, keys["gentxKey"], gentx, content_type="application/json")
    await bucket.s3.put_json(bucket.name, keys["identityKey"], identity.to_json(), indent=2)
    write_marker(ctx.home, UPLOAD_MARKER)
    return {"nodeId": identity.node_id, "p2pAddress": identity.p2p_address, **keys}


# --- collecting and checking the validators ------------------------------------------------------------------------


@dataclass(frozen=True)
class Validator:
    node_name: str
    gentx: VerifiedGentx

    def problem(self, reason: str, detail: str, **kwargs: Any) -> TaskError:
        return TaskError(f"validator {self.node_name!r} ({self.gentx.moniker}): {detail}", reason=reason, **kwargs)


async def _fetch(bucket: Bucket, key: str, node_name: str) -> bytes:
    try:
        return await bucket.s3.get_bytes(bucket.name, key, max_bytes=MAX_ARTIFACT_BYTES)
    except TaskError as error:
        if error.reason != S3_NOT_FOUND:
            raise
        raise TaskError(
            f"validator {node_name!r}: s3://{bucket.name}/{key} does not exist (the node has not run "
            "upload-genesis-artifacts yet, or is not part of this ceremony)",
            reason=ARTIFACTS_MISSING,
            hint="check params.nodes; a retry policy lets the assembler wait for late validators",
            retryable=True,
        ) from None


async def _collect(bucket: Bucket, node_names: list[str], ctx: TaskContext) -> list[Validator]:
    validators = []
    for index, name in enumerate(node_names):
        ctx.progress(index, len(node_names), "validators", f"verifying {name}")
        gentx_data = await _fetch(bucket, artifacts.gentx_key(bucket.chain_id, name), name)
        identity_data = await _fetch(bucket, artifacts.identity_key(bucket.chain_id, name), name)
        validators.append(_verify_node(name, gentx_data, identity_data, bucket.chain_id, bucket.identity))
    ctx.progress(len(node_names), len(node_names), "validators", "verified")
    _check_unique(validators)
    return validators


def _verify_node(name: str, gentx_data: bytes, identity_data: bytes, chain_id: str, chain: ChainIdentity) -> Validator:
    try:
        account_number = None if chain.defers_gentx_signatures else 0  # deferred: checked in _assemble
        verified = verify_gentx(parse_gentx_bytes(gentx_data), chain_id, chain.prefixes, account_number)
    except GentxProblem as problem:
        raise TaskError(f"validator {name!r}: gentx {problem.detail}", reason=problem.reason) from None
    validator = Validator(name, verified)
    try:
        identity = artifacts.NodeIdentity.from_json(json.loads(identity_data))
    except (UnicodeDecodeError, json.JSONDecodeError, artifacts.IdentityInvalid) as error:
        raise validator.problem(IDENTITY_INVALID, f"identity.json: {error}") from None
    mismatches = [
        f"{what} {theirs!r} != gentx {ours!r}"
        for what, theirs, ours in (
            ("nodeId", identity.node_id, verified.node_id),
            ("p2pAddress", identity.p2p_address, verified.p2p_address),
            ("consensusPubKey", identity.consensus_public_key.hex(), verified.consensus_public_key.hex()),
        )
        if theirs != ours
    ]
    if mismatches:
        raise validator.problem(GENTX_INVALID, "identity.json disagrees with the gentx: " + "; ".join(mismatches))
    return validator


def _check_unique(validators: list[Validator]) -> None:
    facts: dict[str, Callable[[VerifiedGentx], str]] = {
        "consensus key": lambda gentx: gentx.consensus_public_key.hex(),
        "operator": lambda gentx: gentx.validator_address,
        "node ID": lambda gentx: gentx.node_id,
        "P2P address": lambda gentx: gentx.p2p_address,
    }
    for what, fact in facts.items():
        seen: dict[str, Validator] = {}
        for validator in validators:
            value = fact(validator.gentx)
            if value in seen:
                raise validator.problem(
                    DUPLICATE_VALIDATOR, f"has the same {what} ({value}) as validator {seen[value].node_name!r}"
                )
            seen[value] = validator


def _check_stakes(validators: list[Validator], bond_denom: str, limit: int | None) -> None:
    """The validator count against max_validators; every self-delegation in the bond denom, worth voting power."""
    if limit is not None and len(validators) > limit:
        raise TaskError(
            f"{len(validators)} validators but staking.params.max_validators is {limit}: the extra ones would not be "
            "bonded and genesis's validators would not match InitChain's",
            reason=TOO_MANY_VALIDATORS,
        )
    for validator in validators:
        stake = validator.gentx.self_delegation
        if stake.denom != bond_denom:
            raise validator.problem(GENTX_INVALID, f"self-delegation {stake} is not in the bond denom {bond_denom!r}")
        if stake.amount < genesis_doc.POWER_REDUCTION:
            raise validator.problem(
                GENTX_INVALID,
                f"self-delegation {stake} is below {genesis_doc.POWER_REDUCTION}{stake.denom}, i.e. zero voting power",
            )


def _check_covered(validator: Validator, balance: dict[str, int]) -> None:
    stake = validator.gentx.self_delegation
    if balance.get(stake.denom, 0) < stake.amount:
        raise validator.problem(
            INSUFFICIENT_BALANCE,
            f"account {validator.gentx.delegator_address} holds {format_coins(balance)}, which does not cover the "
            f"self-delegation {stake}",
        )


def _check_signatures(
    validators: list[Validator], chain: ChainIdentity, chain_id: str, initial_height: int, positions: dict[str, int]
) -> None:
    """Deferred check (stock SDK rule): above height 1 a gentx is verified with its account's position in genesis."""
    for validator in validators:
        position = positions.get(validator.gentx.delegator_address, 0)  # known whenever the rule needs it
        number = chain.gentx_account_number(initial_height, position)
        try:
            check_signature(validator.gentx, chain_id, number)
        except GentxProblem as problem:
            raise validator.problem(problem.reason, f"gentx {problem.detail}") from None


def _validator_entries(validators: list[Validator]) -> list[dict[str, Any]]:
    return [
        genesis_doc.validator_entry(v.gentx.consensus_public_key, v.gentx.self_delegation.amount, v.gentx.moniker)
        for v in validators
    ]


def _check_extras(params: AssembleGenesisParams, chain: ChainIdentity) -> None:
    """`accounts[]` addresses and `overrides` keys, checked before anything is read or written."""
    for index, account in enumerate(params.accounts):
        try:
            address_bytes(account.address, chain.prefixes.account)
        except bech32.Bech32Error as error:
            raise ParamsInvalid(
                f"params.accounts[{index}].address: {error} (expected a {chain.prefixes.account!r} address)"
            ) from None
    try:
        genesis_extras.check_override_keys(list(params.overrides))
    except ValueError as error:
        raise ParamsInvalid(f"params.overrides: {error}") from None


def _add_extras(document: genesis_doc.Document, params: AssembleGenesisParams, validators: list[Validator]) -> None:
    """Overrides first (so the checks and the validators array see the final params), then external accounts.

    Both are idempotent on a genesis an earlier run of this ceremony already wrote (see `genesis_extras`).
    """
    try:
        genesis_extras.apply_overrides(document, params.overrides)
        genesis_unix = int(parse_timestamp(str(document.get("genesis_time", ""))).timestamp())
        accounts = [
            genesis_extras.ExternalAccount(
                account.address,
                coin_map(account.balance),
                None
                if account.vesting is None
                else genesis_extras.Vesting(
                    coin_map(account.vesting.amount), account.vesting.end_time, account.vesting.delayed
                ),
            )
            for account in params.accounts
        ]
        genesis_extras.add_external_accounts(
            document,
            accounts,
            genesis_unix=genesis_unix,
            validator_addresses={validator.gentx.delegator_address for validator in validators},
        )
    except ValueError as error:  # GenesisInvalid, or a genesis_time that does not parse
        raise TaskError(str(error), reason=GENESIS_INVALID) from None


def _assemble(
    document: genesis_doc.Document,
    validators: list[Validator],
    account_balance: dict[str, int],
    chain: ChainIdentity,
) -> None:
    """Accounts, balances, gen_txs and validators into `document` (in memory); raises before any write."""
    _check_stakes(
        validators, genesis_doc.bond_denom(document) or chain.bond_denom, genesis_doc.max_validators(document)
    )
    for validator in validators:
        gentx = validator.gentx
        genesis_doc.add_account(document, gentx.delegator_address, account_balance)
        genesis_doc.add_evm_association(document, gentx.delegator_address, eth_address(gentx.account_public_key))
        _check_covered(validator, genesis_doc.balance_of(document, gentx.delegator_address) or {})
    if chain.defers_gentx_signatures:
        initial_height = genesis_doc.initial_height(document)
        positions = genesis_doc.account_positions(document)
        _check_signatures(validators, chain, str(document.get("chain_id")), initial_height, positions)
    genesis_doc.set_gen_txs(document, [validator.gentx.to_json() for validator in validators])
    document["validators"] = _validator_entries(validators)


async def _publish(
    bucket: Bucket, genesis_path: Path, written: genesis_doc.WrittenFile, validators: list[Validator]
) -> dict[str, Any]:
    """peers.json first, genesis.json last (its appearance tells the other pods the ceremony is complete)."""
    peers = [f"{v.gentx.node_id}@{v.gentx.p2p_address}" for v in validators]
    await bucket.s3.put_json(bucket.name, artifacts.peers_key(bucket.chain_id), peers)
    with genesis_path.open("rb") as source:
        await bucket.s3.upload_stream(
            bucket.name,
            artifacts.genesis_key(bucket.chain_id),
            source,
            content_type="application/json",
            size_hint=written.size,
        )
    result: dict[str, Any] = {
        "genesisHash": written.sha256,
        "genesisKey": artifacts.genesis_key(bucket.chain_id),
        "peersKey": artifacts.peers_key(bucket.chain_id),
        "validators": len(validators),
    }
    if len(validators) < MIN_SEI_NETWORK_NODES:
        result["warning"] = FEW_NODES_WARNING.format(count=len(validators))
    return result


def _already_assembled(home: Path) -> dict[str, Any]:
    return {"alreadyDone": True, "genesisHash": genesis_doc.sha256_file(home / "config" / "genesis.json")}


async def _begin_assembly(
    params: AssembleGenesisParams, ctx: TaskContext, marker: str
) -> tuple[Bucket, list[Validator] | None]:
    """The bucket, and the verified validators unless `marker` says the assembly is already done (then None)."""
    bucket = genesis_bucket(params, ctx)
    if has_marker(ctx.home, marker):
        return bucket, None
    return bucket, await _collect(bucket, [node.name for node in params.nodes], ctx)


@handler(TaskType.ASSEMBLE_AND_UPLOAD_GENESIS, AssembleGenesisParams, precheck=genesis_bucket_known)
async def assemble_and_upload_genesis(params: AssembleGenesisParams, ctx: TaskContext) -> dict[str, Any]:
    """Collect every node's gentx into this node's genesis, fill validators, and publish genesis and peers."""
    _check_extras(params, ChainIdentity.from_settings(ctx.settings))
    bucket, validators = await _begin_assembly(params, ctx, ASSEMBLE_MARKER)
    if validators is None:
        return await asyncio.to_thread(_already_assembled, ctx.home)
    genesis_path = ctx.home / "config" / "genesis.json"
    balance = coin_map(params.account_balance)

    def build() -> genesis_doc.WrittenFile:
        document = load_genesis(genesis_path)
        if document.get("chain_id") != bucket.chain_id:
            raise TaskError(
                f"{genesis_path}: chain_id {document.get('chain_id')!r} is not {bucket.chain_id!r}",
                reason=GENESIS_INVALID,
            )
        _add_extras(document, params, validators)
        _assemble(document, validators, balance, bucket.identity)
        return genesis_doc.write_genesis(genesis_path, document)

    written = await asyncio.to_thread(build)
    result = await _publish(bucket, genesis_path, written, validators)
    write_marker(ctx.home, ASSEMBLE_MARKER)
    ctx.log.info("genesis for %s assembled from %d validators: %s", bucket.chain_id, len(validators), written.sha256)
    return result


# --- assemble-genesis-fork -----------------------------------------------------------------------------------------


def _fork_genesis_time(home: Path, chain_id: str, requested: datetime | None) -> str:
    """The genesis time of the fork: the param, else the one chosen by an earlier run for this chain, else now.

    Remembered in `<home>/.nodetask-fork-genesis-time.json`, so a re-run after a crash that happened after the upload
    re-uploads the same genesis (same hash) rather than one with a new time.
    """
    if requested is not None:
        return format_timestamp(requested)
    path = home / FORK_TIME_FILE
    with contextlib.suppress(OSError, ValueError, TypeError):
        remembered = json.loads(path.read_text())
        if remembered.get("chainId") == chain_id:
            return format_timestamp(parse_timestamp(str(remembered["genesisTime"])))
    chosen = format_timestamp(utcnow())
    atomic_write(path, json.dumps({"chainId": chain_id, "genesisTime": chosen}))
    return chosen


def _fork_initial_height(params: AssembleGenesisForkParams, exported: object) -> int:
    if params.initial_height is not None:
        return params.initial_height
    exported = "1" if exported is None else exported
    if not str(exported).isdigit() or int(str(exported)) < 1:
        raise TaskError(f"the export's initial_height {exported!r} is not a positive integer", reason=GENESIS_INVALID)
    # Kept as is: an export already records last height + 1 (seictl added another 1, leaving a one-block gap).
    return int(str(exported))


@dataclass(frozen=True)
class _ForkPlan:
    edits: fork.ForkEdits
    result: dict[str, str]


def _plan_fork(
    checkpoint: Callable[[], None],
    export_path: Path,
    params: AssembleGenesisForkParams,
    validators: list[Validator],
    account_balance: dict[str, int],
    chain: ChainIdentity,
    chain_id: str,
    genesis_time: str,
) -> _ForkPlan:
    """Scan the export (first pass) and decide every edit; raises before anything is written."""
    facts = fork.scan_export(export_path, {v.gentx.delegator_address for v in validators}, checkpoint)
    if "app_state" not in facts.top_level:
        raise TaskError("the export has no app_state: not a genesis document", reason=GENESIS_INVALID)
    initial_height = _fork_initial_height(params, facts.initial_height)
    _check_stakes(validators, facts.bond_denom or chain.bond_denom, facts.max_validators)

    accounts: list[dict[str, Any]] = []
    balances: list[dict[str, Any]] = []
    associations: list[dict[str, str]] = []
    positions: dict[str, int] = {}
    added: dict[str, int] = {}
    for validator in validators:
        gentx = validator.gentx
        address = gentx.delegator_address
        if address in facts.account_numbers:
            number = facts.account_numbers[address]
            if chain.defers_gentx_signatures and initial_height > 1:
                positions[address] = facts.rank(number, export_path)  # rare: an extra pass over the accounts
        else:
            positions[address] = facts.account_count + len(accounts)
            accounts.append(genesis_doc.new_account_entry(address, facts.max_account_number + 1 + len(accounts)))
        existing = facts.balances.get(fork.address_bytes(address) or b"")
        if existing is None:
            balances.append({"address": address, "coins": coins_to_json(account_balance)})
            added = coin_add(added, account_balance)
        _check_covered(validator, account_balance if existing is None else existing)
        if "evm" in facts.modules and address not in facts.associated:
            associations.append({"sei_address": address, "eth_address": eth_address(gentx.account_public_key)})
    if chain.defers_gentx_signatures:
        _check_signatures(validators, chain, chain_id, initial_height, positions)

    distribution = genesis_doc.module_address_bytes(genesis_doc.DISTRIBUTION)
    pools: dict[str, int] = {}
    for name in (genesis_doc.BONDED_POOL, genesis_doc.NOT_BONDED_POOL):
        pools = coin_add(pools, facts.balances.get(genesis_doc.module_address_bytes(name), {}))
    fee_pool = facts.fee_pool or {}
    settled = genesis_doc.settle_stripped_stake(
        pools, facts.balances.get(distribution, {}), fee_pool.get("community_pool"), "distribution" in facts.modules
    )
    if settled.distribution_balance and distribution not in facts.balances:
        balances.append(
            {
                "address": bech32.encode(chain.prefixes.account, distribution),
                "coins": coins_to_json(settled.distribution_balance),
            }
        )
    base_supply = facts.supply or facts.total_balances
    supply = coins_to_json({d: a - settled.burned.get(d, 0) for d, a in coin_add(base_supply, added).items()})
    gen_txs = [validator.gentx.to_json() for validator in validators]

    edits = fork.ForkEdits(
        replace={
            "chain_id": chain_id,
            "genesis_time": genesis_time,
            "initial_height": str(initial_height),
            "validators": _validator_entries(validators),
            **fork.stripped_state_edits(facts.modules),
            "app_state.bank.supply": supply,
            "app_state.genutil.gen_txs": gen_txs,
        },
        create={
            "app_state.auth": {"accounts": accounts},
            "app_state.bank": {"balances": balances, "supply": supply},
            "app_state.genutil": {"gen_txs": gen_txs},
            f"{fork.ACCOUNTS}": accounts,
            f"{fork.BALANCES}": balances,
            f"{fork.ASSOCIATIONS}": associations,
        },
        item_by_address={fork.BALANCES: fork.settled_balance_rule(settled.distribution_balance)},
        append_items={fork.ACCOUNTS: accounts, fork.BALANCES: balances, fork.ASSOCIATIONS: associations},
    )
    if settled.community_pool is not None:
        edits.replace["app_state.distribution.fee_pool"] = {**fee_pool, "community_pool": settled.community_pool}
    return _ForkPlan(
        edits, {"movedToCommunityPool": format_coins(settled.moved), "burned": format_coins(settled.burned)}
    )


def _write_fork(
    export_path: Path, target: Path, edits: fork.ForkEdits, checkpoint: Callable[[], None]
) -> genesis_doc.WrittenFile:
    """Second pass: the export streamed into `target` (atomically) with the edits, hashed while written."""
    digest = hashlib.sha256()
    size = 0
    with atomic_writer(target, mode=0o644) as handle:

        class _Sink:
            @staticmethod
            def write(data: bytes) -> None:
                nonlocal size
                digest.update(data)
                size += len(data)
                handle.write(data)

        fork.write_fork(export_path, _Sink(), edits, checkpoint)
    return genesis_doc.WrittenFile(digest.hexdigest(), size)


@handler(TaskType.ASSEMBLE_GENESIS_FORK, AssembleGenesisForkParams, precheck=genesis_bucket_known)
async def assemble_genesis_fork(params: AssembleGenesisForkParams, ctx: TaskContext) -> dict[str, Any]:
    """Assemble a new chain's genesis from a source chain's exported state plus the new validators' gentxs."""
    # The gentxs are small and fail fast: they are checked before a multi-GB export is downloaded.
    bucket, validators = await _begin_assembly(params, ctx, FORK_MARKER)
    if validators is None:
        return await asyncio.to_thread(_already_assembled, ctx.home)
    export_key = params.export_key or artifacts.export_key(params.source_chain_id)
    config = ctx.home / "config"
    config.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".exported-state.", suffix=f".json{TEMP_SUFFIX}", dir=config)
    export_path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as sink:
            info = await bucket.s3.download(
                bucket.name,
                export_key,
                sink,
                progress=lambda done, total: ctx.progress(done, total, "bytes", f"downloading {export_key}"),
            )
        genesis_time = await asyncio.to_thread(_fork_genesis_time, ctx.home, bucket.chain_id, params.genesis_time)
        balance = coin_map(params.account_balance)

        def build(cancel: threading.Event) -> tuple[genesis_doc.WrittenFile, dict[str, str]]:
            # Two streamed passes over the export: memory does not grow with its size (agent.chain.cosmos.fork).
            # A cancelled task stops within a few thousand JSON events; the atomic write leaves nothing behind.
            def checkpoint() -> None:
                check_cancel(cancel)

            try:
                plan = _plan_fork(
                    checkpoint, export_path, params, validators, balance, bucket.identity, bucket.chain_id, genesis_time
                )
                return _write_fork(export_path, config / "genesis.json", plan.edits, checkpoint), plan.result
            except (genesis_doc.GenesisInvalid, ValueError) as error:
                raise TaskError(f"s3://{bucket.name}/{export_key}: {error}", reason=GENESIS_INVALID) from None

        ctx.progress(info.size, info.size, "bytes", "rewriting the exported state")
        written, settled = await run_blocking(build)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(export_path)  # noqa: PTH108 - a cheap unlink in cleanup, also on cancellation
    result = await _publish(bucket, config / "genesis.json", written, validators)
    write_marker(ctx.home, FORK_MARKER)
    return {
        **result,
        "sourceChainId": params.source_chain_id,
        "exportKey": export_key,
        "exportBytes": info.size,
        **settled,
    }


HANDLERS = [upload_genesis_artifacts, assemble_and_upload_genesis, assemble_genesis_fork]

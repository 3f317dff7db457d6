"""`generate-gentx`: this validator's account key, its genesis account, and its signed `MsgCreateValidator`.

Steps (all in this pod, no `seid`), each safe to repeat, so a run interrupted anywhere finishes on the next:
1. resolve the inputs: chain ID (param, else `SEI_CHAIN_ID`; must match genesis), moniker (param, else
   `config.toml`'s `moniker`, else the pod name), P2P host (`default_p2p_host`), node ID and consensus key (from
   generate-identity's key files);
2. check the balance covers the self-delegation and the self-delegation is in the bond denom, before writing anything;
3. the account key: loaded from the keystore when present, else derived from a new 24-word mnemonic and written once
   (`agent.chain.cosmos.keystore` documents the file and why the mnemonic is not kept);
4. genesis: the account (next account number), its balance, the supply when genesis lists one, and the EVM
   address association when genesis has an `evm` module; an account already there with this address is kept as is;
5. the gentx, signed offline (SIGN_MODE_DIRECT, account number `accountNumber` (0), sequence 0, RFC 6979), written to
   `config/gentx/gentx-<nodeID>.json`; deterministic, so a re-run rewrites identical bytes;
6. the `gentx` done-marker, last.

The result holds public values only (addresses, node ID, memo). The mnemonic and private key never leave the
keystore file: not in the result, a log line or an error.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from agent.chain.cosmos import genesis as genesis_doc
from agent.chain.cosmos.address import ChainIdentity, with_prefix
from agent.chain.cosmos.coins import coin_map
from agent.chain.cosmos.gentx import GentxProblem, ValidatorSpec, build_gentx, gentx_file_bytes, memo_for, verify_gentx
from agent.chain.cosmos.keystore import ensure_account_key, keystore_path
from agent.chain.crypto.evm import eth_address
from agent.chain.keys import load_node_key, load_validator_key, node_key_path, validator_key_path
from agent.io.files import atomic_write, has_marker, write_marker
from agent.io.toml import read_toml
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.params.base import TaskParams, check_chain_id
from agent.models.params.coins import Coins, PositiveInt, Rate
from agent.models.settings import AgentSettings

from .base import TaskContext, handler

DEFAULT_P2P_PORT = 26656
# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


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


MARKER = "gentx"
INSUFFICIENT_BALANCE = "InsufficientBalance"
GENESIS_INVALID = "GenesisInvalid"
_STATEFULSET_POD = re.compile(r"^(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-[0-9]+$")
_IDENTITY_HINT = "run generate-identity on this pod first"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def gentx_path(home: Path, node_id: str) -> Path:
    return home / "config" / "gentx" / f"gentx-{node_id}.json"


def resolve_chain_id(chain_id: str, settings: AgentSettings, field: str = "chainId") -> str:
    """The param, else `SEI_CHAIN_ID`; ParamsInvalid naming `field` when neither is set."""
    resolved = chain_id or settings.chain_id
    if not resolved:
        raise ParamsInvalid(f"params.{field}: not given, and SEI_CHAIN_ID is not set")
    return resolved


def _pod_namespace(settings: AgentSettings) -> str:
    if settings.pod_namespace:
        return settings.pod_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def external_ipv4() -> str:
    """The first IPv4 address of an interface that is up and not loopback, in interface-index order ("" when there
    is none): what the Go sidecar and `seid gentx` put in the memo (the Cosmos SDK's `server.ExternalIP`)."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocgifaddr, iff_up, iff_loopback = 0x8913, 0x8915, 0x1, 0x8
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in sorted(socket.if_nameindex()):
            request = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(sock.fileno(), siocgifflags, request), 16)[0]
                if not flags & iff_up or flags & iff_loopback:
                    continue
                address = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), siocgifaddr, request)[20:24])
            except OSError:  # gone meanwhile, or no IPv4 address
                continue
            if not address.startswith("127."):
                return address
    return ""


def default_p2p_host(settings: AgentSettings) -> str:
    """The host other validators reach this node's P2P port at, when `params.host` is not given:

    1. `<pod>.<service>.<namespace>.svc.cluster.local` for a StatefulSet pod `<service>-<ordinal>` (the headless
       service the controller creates per node has the node's name, the pod is `<node>-0`); the pod name is
       `POD_NAME`, under `seictl serve` `HOSTNAME` as the original reads it; the namespace is `POD_NAMESPACE`, else the
       pod's ServiceAccount mount (the controller sets no downward-API variables but mounts the token);
    2. the original's answer: the pod's IPv4 address (`external_ipv4`), stable only while the pod lives;
    3. ParamsInvalid naming what was missing.
    """
    match = _STATEFULSET_POD.match(settings.pod_name)
    namespace = _pod_namespace(settings)
    if match and namespace:
        return f"{settings.pod_name}.{match['service']}.{namespace}.svc.cluster.local"
    address = external_ipv4()
    if address:
        return address
    raise ParamsInvalid(
        f"params.host: not given, no pod DNS name can be formed from POD_NAME={settings.pod_name!r} "
        f"POD_NAMESPACE={namespace!r} (expected a StatefulSet pod '<name>-<ordinal>'; the namespace is also read from "
        f"{SERVICE_ACCOUNT_NAMESPACE}), and no network interface has an IPv4 address",
        hint="pass params.host, the address other validators reach this node's P2P port at",
    )


def _moniker(params: GenerateGentxParams, home: Path, settings: AgentSettings) -> str:
    if params.moniker:
        return params.moniker
    configured = read_toml(home / "config" / "config.toml", missing_ok=True).get("moniker")
    moniker = configured if isinstance(configured, str) and configured else settings.pod_name
    if not moniker or len(moniker) > 70:
        raise ParamsInvalid(
            f"params.moniker: not given, and neither config.toml's moniker nor the pod name gives one of 1-70 "
            f"characters (found {moniker!r})"
        )
    return moniker


def load_genesis(path: Path) -> genesis_doc.Document:
    try:
        return genesis_doc.read_genesis(path)
    except genesis_doc.GenesisInvalid as error:
        raise TaskError(str(error), reason=GENESIS_INVALID, hint=_IDENTITY_HINT) from None


@dataclass(frozen=True)
class _Inputs:
    chain_id: str
    spec: ValidatorSpec
    node_id: str


def _inputs(params: GenerateGentxParams, home: Path, settings: AgentSettings, document: dict[str, Any]) -> _Inputs:
    chain_id = resolve_chain_id(params.chain_id, settings)
    genesis_chain = document.get("chain_id")
    if genesis_chain and genesis_chain != chain_id:
        raise ParamsInvalid(
            f"params.chainId: {chain_id!r} differs from config/genesis.json's chain_id {genesis_chain!r}"
        )
    stake = params.staking_amount[0]
    bond_denom = genesis_doc.bond_denom(document)
    if bond_denom is None:
        bond_denom = settings.bond_denom  # a minimal genesis (generate-identity's) has no staking params yet
        where = "the bond denom (SEI_BOND_DENOM)"
    else:
        where = "genesis's bond denom"
    if stake.denom != bond_denom:
        raise ParamsInvalid(f"params.stakingAmount: denom {stake.denom!r} is not {where} {bond_denom!r}")
    balance = coin_map(params.account_balance)
    if balance.get(stake.denom, 0) < stake.amount:
        raise ParamsInvalid(
            f"params.accountBalance {','.join(map(str, params.account_balance))} does not cover the "
            f"stakingAmount {stake}"
        )
    node_key = load_node_key(node_key_path(home))
    consensus = load_validator_key(validator_key_path(home))
    host = params.host or default_p2p_host(settings)
    spec = ValidatorSpec(
        moniker=_moniker(params, home, settings),
        self_delegation=stake,
        consensus_public_key=consensus.public_key,
        memo=memo_for(node_key.node_id, host, params.p2p_port),
        commission_rate=params.commission_rate,
        commission_max_rate=params.commission_max_rate,
        commission_max_change_rate=params.commission_max_change_rate,
        min_self_delegation=params.min_self_delegation,
        identity=params.identity,
        website=params.website,
        security_contact=params.security_contact,
        details=params.details,
    )
    return _Inputs(chain_id, spec, node_key.node_id)


def _generate(params: GenerateGentxParams, home: Path, settings: AgentSettings) -> dict[str, Any]:
    genesis_path = home / "config" / "genesis.json"
    document = load_genesis(genesis_path)
    inputs = _inputs(params, home, settings, document)
    identity = ChainIdentity.from_settings(settings)
    key, created = ensure_account_key(home, identity)
    balance = coin_map(params.account_balance)
    changed = genesis_doc.add_account(document, key.address, balance)
    existing = genesis_doc.balance_of(document, key.address) or {}
    stake = inputs.spec.self_delegation
    if existing.get(stake.denom, 0) < stake.amount:
        raise TaskError(
            f"account {key.address} already holds {existing.get(stake.denom, 0)}{stake.denom} in genesis, less than "
            f"the stakingAmount {stake}",
            reason=INSUFFICIENT_BALANCE,
        )
    changed |= genesis_doc.add_evm_association(document, key.address, eth_address(key.public_key))
    if changed:
        genesis_doc.write_genesis(genesis_path, document)
    tx = build_gentx(inputs.spec, key.private_key, inputs.chain_id, identity.prefixes, params.account_number)
    path = gentx_path(home, inputs.node_id)
    atomic_write(path, gentx_file_bytes(tx), mode=0o600)
    write_marker(home, MARKER)
    return {
        "accountAddress": key.address,
        "validatorAddress": with_prefix(key.address, identity.prefixes.validator),
        "nodeId": inputs.node_id,
        "moniker": inputs.spec.moniker,
        "memo": inputs.spec.memo,
        "gentxFile": str(path.relative_to(home)),
        "keystoreFile": str(keystore_path(home).relative_to(home)),
        "keyCreated": created,
    }


def _already_done(params: GenerateGentxParams, home: Path, settings: AgentSettings) -> dict[str, Any]:
    """Marker present: describe the gentx on disk (verified) without changing anything."""
    result: dict[str, Any] = {"alreadyDone": True}
    try:
        node_id = load_node_key(node_key_path(home)).node_id
        path = gentx_path(home, node_id)
        chain_id = resolve_chain_id(params.chain_id, settings)
        prefixes = ChainIdentity.from_settings(settings).prefixes
        verified = verify_gentx(json.loads(path.read_bytes()), chain_id, prefixes, params.account_number)
    except (OSError, ValueError, TaskError, GentxProblem):
        return result  # a home prepared by the Go sidecar: its marker is honoured, its files are its own
    result.update(
        accountAddress=verified.delegator_address,
        validatorAddress=verified.validator_address,
        nodeId=node_id,
        moniker=verified.moniker,
        memo=verified.memo,
        gentxFile=str(path.relative_to(home)),
    )
    return result


@handler(TaskType.GENERATE_GENTX, GenerateGentxParams)
async def generate_gentx(params: GenerateGentxParams, ctx: TaskContext) -> dict[str, Any]:
    """Create the validator's account key, genesis account and signed gentx (SIGN_MODE_DIRECT, offline)."""
    if has_marker(ctx.home, MARKER):
        return await asyncio.to_thread(_already_done, params, ctx.home, ctx.settings)
    result = await asyncio.to_thread(_generate, params, ctx.home, ctx.settings)
    ctx.log.info("gentx written for %s (node %s)", result["accountAddress"], result["nodeId"])
    return result


HANDLERS = [generate_gentx]

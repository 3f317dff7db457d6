"""`genesis.json` as the ceremony edits it: accounts, balances, supply, EVM associations, gen_txs and validators.

The document is a plain parsed-JSON dict; every edit here is in place and idempotent (adding an account that is
already there with the same address is a no-op), so a task that re-runs after a partial failure converges on the
same document instead of failing with "already exists".

Ordering follows the SDK's sanitising (`SanitizeGenesisAccounts` / `SanitizeGenesisBalances`): accounts sorted by
account number (stable), balances by the bytes of their address, coins by denom. A new account gets the next free
account number (0 in a fresh genesis), so the numbers match what auth's InitGenesis assigns in list order and an
exported chain's existing accounts keep theirs.

Writing streams the JSON encoder's chunks into `atomic_writer` while hashing them, so the SHA-256 of exactly the
bytes on disk (and later uploaded) is known without holding a second serialized copy in memory.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.chain.crypto import bech32
from agent.io.files import atomic_writer

from . import coins as coin_lists
from .coins import CoinMap

BASE_ACCOUNT_TYPE = "/cosmos.auth.v1beta1.BaseAccount"
ED25519_PUB_KEY_TYPE = "tendermint/PubKeyEd25519"
POWER_REDUCTION = 10**6
"""sdk.DefaultPowerReduction: one unit of consensus power per 10^6 base units of the bond denom."""

Document = dict[str, Any]


class GenesisInvalid(ValueError):
    """A genesis document that does not have the shape an edit needs; the message names the JSON path."""


@dataclass(frozen=True)
class WrittenFile:
    sha256: str
    size: int


def read_genesis(path: Path) -> Document:
    """Parse `path` as a genesis document (a JSON object with an `app_state` object)."""
    try:
        with path.open("rb") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise GenesisInvalid(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GenesisInvalid(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise GenesisInvalid(f"{path}: expected a JSON object")
    if not isinstance(document.get("app_state", {}), dict):
        raise GenesisInvalid(f"{path}: app_state is not an object")
    document.setdefault("app_state", {})
    return document


def write_genesis(path: Path, document: Document) -> WrittenFile:
    """Write `document` atomically (2-space indent, UTF-8, trailing newline); return the SHA-256 of those bytes."""
    digest = hashlib.sha256()
    size = 0
    with atomic_writer(path, mode=0o644) as handle:
        for chunk in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(document):
            data = chunk.encode()
            digest.update(data)
            size += len(data)
            handle.write(data)
        handle.write(b"\n")
        digest.update(b"\n")
    return WrittenFile(digest.hexdigest(), size + 1)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _module(document: Document, name: str, *, create: bool) -> dict[str, Any] | None:
    app_state = document.setdefault("app_state", {})
    module = app_state.get(name)
    if module is None and create:
        module = app_state[name] = {}
    if module is not None and not isinstance(module, dict):
        raise GenesisInvalid(f"app_state.{name} is not an object")
    return module


def _list(module: dict[str, Any], key: str, where: str) -> list[Any]:
    value = module.setdefault(key, [])
    if value is None:
        value = module[key] = []
    if not isinstance(value, list):
        raise GenesisInvalid(f"{where}.{key} is not a list")
    return value


def _base_account(entry: object) -> dict[str, Any] | None:
    """The BaseAccount inside any account type (module accounts and vesting accounts nest it)."""
    while isinstance(entry, dict):
        if "address" in entry:
            return entry
        entry = entry.get("base_account") or entry.get("base_vesting_account")
    return None


def _account_number(entry: object) -> int:
    base = _base_account(entry)
    number = base.get("account_number", "0") if base else "0"
    try:
        return int(number)
    except (TypeError, ValueError):
        raise GenesisInvalid(f"account {base and base.get('address')!r} has account_number {number!r}") from None


def _address_sort_key(address: str) -> tuple[int, bytes, str]:
    try:
        return 0, bech32.decode(address)[1], address
    except bech32.Bech32Error:
        return 1, b"", address  # undecodable addresses last, by text, rather than failing a sort


def account_addresses(document: Document) -> set[str]:
    auth = _module(document, "auth", create=False) or {}
    accounts = auth.get("accounts") or []
    return {base["address"] for base in map(_base_account, accounts) if base and isinstance(base.get("address"), str)}


def balance_of(document: Document, address: str) -> CoinMap | None:
    """The genesis balance of `address`, or None when bank has no entry for it."""
    bank = _module(document, "bank", create=False) or {}
    for index, entry in enumerate(bank.get("balances") or []):
        if isinstance(entry, dict) and entry.get("address") == address:
            return coin_lists.coins_from_json(entry.get("coins", []), f"app_state.bank.balances[{index}].coins")
    return None


def add_account(document: Document, address: str, coins: CoinMap) -> bool:
    """Add a BaseAccount and its balance (and grow a non-empty `supply` by the same coins). False if present.

    An account that exists keeps its balance. A balance entry without an account (or the reverse) is completed,
    which is what a re-run after a crash between the two edits needs.
    """
    auth = _module(document, "auth", create=True)
    bank = _module(document, "bank", create=True)
    assert auth is not None and bank is not None
    accounts = _list(auth, "accounts", "app_state.auth")
    balances = _list(bank, "balances", "app_state.bank")
    added = False
    if address not in account_addresses(document):
        next_number = max((_account_number(entry) for entry in accounts), default=-1) + 1
        accounts.append(
            {
                "@type": BASE_ACCOUNT_TYPE,
                "address": address,
                "pub_key": None,
                "account_number": str(next_number),
                "sequence": "0",
            }
        )
        accounts.sort(key=_account_number)
        added = True
    if balance_of(document, address) is None:
        balances.append({"address": address, "coins": coin_lists.coins_to_json(coins)})
        balances.sort(key=lambda entry: _address_sort_key(str(entry.get("address", ""))))
        supply = bank.get("supply")
        # An empty supply is computed by bank's InitGenesis from the balances; a non-empty one must equal their sum.
        if supply:
            bank["supply"] = coin_lists.coins_to_json(
                coin_lists.add(coin_lists.coins_from_json(supply, "app_state.bank.supply"), coins)
            )
        added = True
    return added


def add_evm_association(document: Document, sei_address: str, eth_address: str) -> bool:
    """Record `sei_address` <-> `eth_address` when the genesis has an `evm` module. False if absent or present."""
    evm = _module(document, "evm", create=False)
    if evm is None:
        return False
    associations = _list(evm, "address_associations", "app_state.evm")
    if any(isinstance(entry, dict) and entry.get("sei_address") == sei_address for entry in associations):
        return False
    associations.append({"sei_address": sei_address, "eth_address": eth_address})
    return True


def bond_denom(document: Document) -> str | None:
    staking = _module(document, "staking", create=False) or {}
    denom = (staking.get("params") or {}).get("bond_denom")
    return denom if isinstance(denom, str) and denom else None


def max_validators(document: Document) -> int | None:
    staking = _module(document, "staking", create=False) or {}
    value = (staking.get("params") or {}).get("max_validators")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def set_gen_txs(document: Document, gen_txs: list[dict[str, Any]]) -> None:
    """Replace `app_state.genutil.gen_txs` (replacing, not appending, keeps re-runs idempotent)."""
    genutil = _module(document, "genutil", create=True)
    assert genutil is not None
    genutil["gen_txs"] = gen_txs


def validator_entry(consensus_public_key: bytes, self_delegation: int, name: str) -> dict[str, Any]:
    """One entry of the genesis `validators` array, as staking's InitGenesis will report it to CometBFT."""
    return {
        "address": hashlib.sha256(consensus_public_key).digest()[:20].hex().upper(),
        "pub_key": {"type": ED25519_PUB_KEY_TYPE, "value": base64.b64encode(consensus_public_key).decode()},
        "power": str(self_delegation // POWER_REDUCTION),
        "name": name,
    }


_STRIPPED_STATE: dict[str, dict[str, Any]] = {
    "staking": {
        "validators": [],
        "delegations": [],
        "unbonding_delegations": [],
        "redelegations": [],
        "last_validator_powers": [],
        "last_total_power": "0",
        "exported": False,
    },
    "slashing": {"signing_infos": [], "missed_blocks": []},
    "distribution": {
        "delegator_withdraw_infos": [],
        "outstanding_rewards": [],
        "validator_accumulated_commissions": [],
        "validator_historical_rewards": [],
        "validator_current_rewards": [],
        "delegator_starting_infos": [],
        "validator_slash_events": [],
        "previous_proposer": "",
    },
    "evidence": {"evidence": []},
}


def strip_validator_state(document: Document) -> list[str]:
    """Remove the source chain's validator set from app_state (seictl's fork strip); returns the modules touched.

    Only the listed keys are reset; params, pools and everything else stay. A module the export lacks is skipped,
    not created. Bank balances of the bonded / not-bonded pools and of distribution are *not* touched: see
    docs/tasks/assemble-genesis-fork.md for why that can make InitChain fail.
    """
    touched = []
    for name, cleared in _STRIPPED_STATE.items():
        module = _module(document, name, create=False)
        if module is None:
            continue
        for key, value in cleared.items():
            module[key] = copy.deepcopy(value)
        touched.append(name)
    return touched

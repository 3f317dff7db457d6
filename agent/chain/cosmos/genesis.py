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
import decimal
import hashlib
import json
import re
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


def base_account(entry: object) -> dict[str, Any] | None:
    """The BaseAccount inside any account type (module accounts and vesting accounts nest it)."""
    while isinstance(entry, dict):
        if "address" in entry:
            return entry
        entry = entry.get("base_account") or entry.get("base_vesting_account")
    return None


def account_number_of(entry: object) -> int:
    """An account entry's `account_number` (any account type; a missing one counts as 0)."""
    base = base_account(entry)
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
    return {base["address"] for base in map(base_account, accounts) if base and isinstance(base.get("address"), str)}


def balance_of(document: Document, address: str) -> CoinMap | None:
    """The genesis balance of `address`, or None when bank has no entry for it."""
    bank = _module(document, "bank", create=False) or {}
    for index, entry in enumerate(bank.get("balances") or []):
        if isinstance(entry, dict) and entry.get("address") == address:
            return coin_lists.coins_from_json(entry.get("coins", []), f"app_state.bank.balances[{index}].coins")
    return None


def new_account_entry(address: str, number: int) -> dict[str, Any]:
    """A fresh `BaseAccount` as genesis lists it (no public key yet, sequence 0)."""
    return {
        "@type": BASE_ACCOUNT_TYPE,
        "address": address,
        "pub_key": None,
        "account_number": str(number),
        "sequence": "0",
    }


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
        next_number = max((account_number_of(entry) for entry in accounts), default=-1) + 1
        accounts.append(new_account_entry(address, next_number))
        accounts.sort(key=account_number_of)
        added = True
    if balance_of(document, address) is None:
        balances.append({"address": address, "coins": coin_lists.coins_to_json(coins)})
        balances.sort(key=lambda entry: _address_sort_key(str(entry.get("address", ""))))
        supply = bank.get("supply")
        if supply:
            bank["supply"] = coin_lists.coins_to_json(
                coin_lists.add(coin_lists.coins_from_json(supply, "app_state.bank.supply"), coins)
            )
        else:
            # Seid accepts an empty supply (InitGenesis computes it), but SDK 0.45's add-genesis-account then grows
            # it by its own coins only and validate-genesis fails: write the sum of every balance instead, which
            # both accept.
            bank["supply"] = coin_lists.coins_to_json(total_balances(document))
        added = True
    return added


def total_balances(document: Document) -> CoinMap:
    """The sum of every `bank.balances` entry (what a consistent `bank.supply` equals)."""
    bank = _module(document, "bank", create=False) or {}
    total: CoinMap = {}
    for index, entry in enumerate(bank.get("balances") or []):
        if isinstance(entry, dict):
            where = f"app_state.bank.balances[{index}].coins"
            total = coin_lists.add(total, coin_lists.coins_from_json(entry.get("coins", []), where))
    return total


def initial_height(document: Document) -> int:
    """Genesis's `initial_height` (1 when absent); `GenesisInvalid` when it is not a positive integer."""
    value = document.get("initial_height", "1")
    if not str(value).isdigit() or int(value) < 1:
        raise GenesisInvalid(f"initial_height {value!r} is not a positive integer")
    return int(value)


def account_positions(document: Document) -> dict[str, int]:
    """address -> the account number auth's InitGenesis gives it: its position once sorted by account number."""
    auth = _module(document, "auth", create=False) or {}
    ordered = sorted(auth.get("accounts") or [], key=account_number_of)
    return {
        base["address"]: position
        for position, base in enumerate(map(base_account, ordered))
        if base and isinstance(base.get("address"), str)
    }


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


STRIPPED_STATE: dict[str, dict[str, Any]] = {
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


BONDED_POOL = "bonded_tokens_pool"
NOT_BONDED_POOL = "not_bonded_tokens_pool"
DISTRIBUTION = "distribution"
_DEC_PRECISION = 18


def module_address_bytes(name: str) -> bytes:
    """A module account's address: SHA-256(name)[:20] (`authtypes.NewModuleAddress`), under any prefix."""
    return hashlib.sha256(name.encode()).digest()[:20]


def _dec_coins(entries: object, where: str) -> dict[str, decimal.Decimal]:
    if not isinstance(entries, list):
        raise GenesisInvalid(f"{where}: expected a list of coins")
    totals: dict[str, decimal.Decimal] = {}
    for index, entry in enumerate(entries):
        amount = entry.get("amount") if isinstance(entry, dict) else None
        if not isinstance(amount, str) or not re.fullmatch(r"\d+(\.\d{1,18})?", amount):
            raise GenesisInvalid(f"{where}[{index}]: amount {amount!r} is not a non-negative decimal")
        denom = str(entry.get("denom"))
        totals[denom] = totals.get(denom, decimal.Decimal(0)) + decimal.Decimal(amount)
    return totals


def _dec_coins_to_json(coins: dict[str, decimal.Decimal]) -> list[dict[str, str]]:
    return [
        {"denom": denom, "amount": f"{amount:.{_DEC_PRECISION}f}"} for denom, amount in sorted(coins.items()) if amount
    ]


@dataclass(frozen=True)
class Settlement:
    """How a fork settles what the removed validator set held (see `settle_stripped_stake`)."""

    moved: CoinMap
    """Taken from the bonded and not-bonded pools into the community pool."""
    burned: CoinMap
    """Taken from the pools and removed from supply (only without a distribution module)."""
    distribution_balance: CoinMap | None
    """The distribution module account's new balance (None without a distribution module)."""
    community_pool: list[dict[str, str]] | None
    """`distribution.fee_pool.community_pool`'s new value (None without a distribution module)."""


def settle_stripped_stake(
    pools: CoinMap, distribution_balance: CoinMap, community_pool: object, has_distribution: bool
) -> Settlement:
    """After the fork strips the old validator set: move what it held into the community pool.

    Staking's InitGenesis requires the bonded and not-bonded pools to hold exactly the tokens of the genesis
    validators and unbonding entries (none after the strip; the new validators bond through their gentxs later), and
    distribution's requires its module account to hold exactly the community pool plus the outstanding rewards (none
    after the strip). So the pools' balances (`pools`: old stake, bonded and unbonding) go to the distribution
    account, and the community pool grows until its whole part equals that account's balance, which also absorbs
    the old validators' unclaimed rewards and commission. Supply is unchanged, and governance can return the coins
    (a community-pool spend). Without a distribution module the pools' coins are burned instead.
    """
    if not has_distribution:
        return Settlement({}, dict(pools), None, None)
    held = coin_lists.add(distribution_balance, pools)
    with decimal.localcontext() as context:
        context.prec = 200  # exact: amounts are up to ~80 digits, plus 18 decimals
        pool = _dec_coins(community_pool or [], "app_state.distribution.fee_pool.community_pool")
        for denom, amount in held.items():
            current = pool.get(denom, decimal.Decimal(0))
            pool[denom] = current + (amount - int(current))  # the whole part becomes the account's balance
        for denom in list(pool):
            if denom not in held:
                pool[denom] = pool[denom] - int(pool[denom])  # no coins held: only a fraction may remain
        return Settlement(dict(pools), {}, held, _dec_coins_to_json(pool))

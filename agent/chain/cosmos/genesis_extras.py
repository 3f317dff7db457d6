"""What a genesis ceremony adds besides the validators: external (and vesting) accounts, and genesis overrides.

**External accounts** (`accounts[]` of assemble-and-upload-genesis, seictl #120 and #238): a `BaseAccount`, or a
`ContinuousVestingAccount` (vesting from the genesis time to `endTime`) or `DelayedVestingAccount` (all at `endTime`)
over one, plus a bank balance of the full `balance`; `original_vesting = vesting.amount`. Account numbers continue after
the highest present. An address that is already an account is a collision, with one exception that makes a retry safe:
an account **exactly equal** to the one this entry would add (same type, vesting and balance), which is what an earlier
run of the same ceremony left in the local genesis. A validator's own account is always a collision, so a ceremony
cannot hand a validator a second balance.

**Overrides** (`overrides`, seictl #181): `{"<module>.<key>[.<key>...]": <JSON value>}` set leaves of `app_state`. The
first segment must be an existing module; missing or null intermediate objects are created; a non-object on the way is
an error. Keys are applied in sorted order and a key that is a prefix of another (`staking.params` and
`staking.params.unbonding_time`) is refused, because their result would depend on the order. The ceremony's own outputs
(`auth.accounts`, `bank.balances`, `bank.supply`, `genutil.gen_txs`) cannot be overridden: the accounts and gentxs
params say what goes there.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import coins as coin_lists
from .genesis import (
    Document,
    GenesisInvalid,
    _address_sort_key,
    account_addresses,
    account_number_of,
    balance_of,
    base_account,
    total_balances,
)

BASE_ACCOUNT = "/cosmos.auth.v1beta1.BaseAccount"
CONTINUOUS_VESTING = "/cosmos.vesting.v1beta1.ContinuousVestingAccount"
DELAYED_VESTING = "/cosmos.vesting.v1beta1.DelayedVestingAccount"
CEREMONY_OWNED = ("auth.accounts", "bank.balances", "bank.supply", "genutil.gen_txs")


@dataclass(frozen=True)
class Vesting:
    amount: coin_lists.CoinMap
    end_time: int
    """Unix seconds."""
    delayed: bool = False


@dataclass(frozen=True)
class ExternalAccount:
    address: str
    balance: coin_lists.CoinMap
    vesting: Vesting | None = None


def _account_json(account: ExternalAccount, number: int, genesis_unix: int) -> dict[str, Any]:
    base = {"address": account.address, "pub_key": None, "account_number": str(number), "sequence": "0"}
    if account.vesting is None:
        return {"@type": BASE_ACCOUNT, **base}
    vesting = {
        "base_account": base,
        "original_vesting": coin_lists.coins_to_json(account.vesting.amount),
        "delegated_free": [],
        "delegated_vesting": [],
        "end_time": str(account.vesting.end_time),
    }
    if account.vesting.delayed:
        return {"@type": DELAYED_VESTING, "base_vesting_account": vesting}
    return {"@type": CONTINUOUS_VESTING, "base_vesting_account": vesting, "start_time": str(genesis_unix)}


def _without_number(entry: Any) -> Any:
    """An account entry with its account number blanked, for the "same account" comparison."""
    clone = copy.deepcopy(entry)
    node = clone
    while isinstance(node, dict):
        if "account_number" in node:
            node["account_number"] = ""
            break
        node = node.get("base_account") or node.get("base_vesting_account")
    return clone


def add_external_accounts(
    document: Document, accounts: list[ExternalAccount], *, genesis_unix: int, validator_addresses: set[str]
) -> int:
    """Add every account and balance; returns how many were added (0 on a retry that finds them all).

    Raises `GenesisInvalid` naming the address on a collision, and on a vesting end not after the genesis time.
    """
    auth = document.setdefault("app_state", {}).setdefault("auth", {})
    bank = document["app_state"].setdefault("bank", {})
    entries = auth.setdefault("accounts", [])
    balances = bank.setdefault("balances", [])
    if not isinstance(entries, list) or not isinstance(balances, list):
        raise GenesisInvalid("app_state.auth.accounts or app_state.bank.balances is not a list")
    added = 0
    for account in accounts:
        if account.vesting is not None and account.vesting.end_time <= genesis_unix:
            raise GenesisInvalid(
                f"account {account.address}: vesting endTime {account.vesting.end_time} is not after the genesis "
                f"time ({genesis_unix})"
            )
        if account.address in validator_addresses:
            raise GenesisInvalid(f"external account {account.address} collides with a validator's account")
        wanted_balance = coin_lists.coins_to_json(account.balance)
        if account.address in account_addresses(document):
            existing = next(entry for entry in entries if _address_of(entry) == account.address)
            same_account = _without_number(existing) == _without_number(_account_json(account, 0, genesis_unix))
            present_balance = balance_of(document, account.address)
            same_balance = present_balance is not None and coin_lists.coins_to_json(present_balance) == wanted_balance
            if same_account and same_balance:
                continue  # left by an earlier run of this ceremony
            raise GenesisInvalid(f"external account {account.address} collides with an existing genesis account")
        if balance_of(document, account.address) is not None:
            raise GenesisInvalid(f"external account {account.address} already has a genesis balance")
        number = max((account_number_of(entry) for entry in entries), default=-1) + 1
        entries.append(_account_json(account, number, genesis_unix))
        balances.append({"address": account.address, "coins": wanted_balance})
        supply = bank.get("supply")
        if supply:  # a listed supply must stay the sum of the balances
            bank["supply"] = coin_lists.coins_to_json(
                coin_lists.add(coin_lists.coins_from_json(supply, "app_state.bank.supply"), account.balance)
            )
        else:  # as genesis.add_account: SDK 0.45's validate-genesis needs the sum written out
            bank["supply"] = coin_lists.coins_to_json(total_balances(document))
        added += 1
    entries.sort(key=account_number_of)
    balances.sort(key=lambda entry: _address_sort_key(str(entry.get("address", ""))))
    return added


def _address_of(entry: Any) -> str | None:
    base = base_account(entry)
    return str(base["address"]) if base else None


def check_override_keys(keys: list[str]) -> None:
    """`ValueError` naming the first unusable key (shape, ceremony-owned, or overlapping another key)."""
    for key in keys:
        segments = key.split(".")
        if len(segments) < 2 or any(not segment for segment in segments):
            raise ValueError(f"{key!r}: expected <module>.<key>[.<key>...] with no empty segment")
        for owned in CEREMONY_OWNED:
            if key == owned or key.startswith(owned + ".") or owned.startswith(key + "."):
                raise ValueError(f"{key!r}: {owned} is written by the ceremony itself and cannot be overridden")
    present = set(keys)
    for key in sorted(keys):
        segments = key.split(".")
        for end in range(2, len(segments)):
            shorter = ".".join(segments[:end])
            if shorter in present:
                raise ValueError(f"{shorter!r} and {key!r} overlap: their result would depend on the order")


def apply_overrides(document: Document, overrides: Mapping[str, Any]) -> None:
    """Set each dotted `app_state` path to its value, in sorted key order (see the module docstring)."""
    check_override_keys(list(overrides))
    app_state = document.get("app_state")
    if not isinstance(app_state, dict):
        raise GenesisInvalid("app_state is missing or not an object")
    for key in sorted(overrides):
        module, *path, leaf = key.split(".")
        if module not in app_state:
            raise GenesisInvalid(f"override {key!r}: genesis has no module {module!r}")
        target = app_state[module]
        walked = module
        for segment in path:
            if not isinstance(target, dict):
                raise GenesisInvalid(f"override {key!r}: {walked} is not an object")
            if target.get(segment) is None:
                target[segment] = {}
            target = target[segment]
            walked += "." + segment
        if not isinstance(target, dict):
            raise GenesisInvalid(f"override {key!r}: {walked} is not an object")
        target[leaf] = copy.deepcopy(overrides[key])

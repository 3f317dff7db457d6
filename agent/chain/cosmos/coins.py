"""Coin lists as genesis JSON holds them: `[{"denom": "usei", "amount": "1000"}, ...]`, sorted by denom.

Amounts are exact integers (Python ints); a list that is not in that shape is a `ValueError` naming where it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from agent.models.params.coins import Coin

CoinMap = dict[str, int]
"""denom -> amount; the working form for sums and comparisons."""


def coin_map(coins: Iterable[Coin]) -> CoinMap:
    totals: CoinMap = {}
    for coin in coins:
        totals[coin.denom] = totals.get(coin.denom, 0) + coin.amount
    return totals


def coins_from_json(entries: object, where: str) -> CoinMap:
    """Parse a genesis coin list; `where` names it in errors (`bank.balances[3].coins`)."""
    if not isinstance(entries, list):
        raise ValueError(f"{where}: expected a list of coins")
    totals: CoinMap = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("denom"), str):
            raise ValueError(f"{where}[{index}]: expected {{denom, amount}}")
        amount = entry.get("amount")
        if not isinstance(amount, str) or not re.fullmatch(r"\d+", amount):
            raise ValueError(f"{where}[{index}]: amount {amount!r} is not a non-negative integer string")
        totals[entry["denom"]] = totals.get(entry["denom"], 0) + int(amount)
    return totals


def coins_to_json(coins: Mapping[str, int]) -> list[dict[str, Any]]:
    """The SDK's canonical form: sorted by denom, zero amounts dropped, amounts as strings."""
    return [{"denom": denom, "amount": str(amount)} for denom, amount in sorted(coins.items()) if amount]


def add(left: Mapping[str, int], right: Mapping[str, int]) -> CoinMap:
    total = dict(left)
    for denom, amount in right.items():
        total[denom] = total.get(denom, 0) + amount
    return total


def format_coins(coins: Mapping[str, int]) -> str:
    """`1000usei,5uatom` (the string form people type), or `nothing` for an empty list."""
    return ",".join(f"{amount}{denom}" for denom, amount in sorted(coins.items()) if amount) or "nothing"

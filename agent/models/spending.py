"""Spending ceilings of signed transactions: what one gov task may pay in fees and lock up as a deposit.

A signed task's `fees`, `gas` and `initialDeposit` come from whoever may submit tasks. Without a ceiling a single
request can hand the operator account's whole balance to the block proposer as a fee, or lock it up as a deposit.
So every signed transaction is checked against three operator settings before anything is signed or recorded:

- `NODETASK_MAX_GAS` (default 1,000,000): the largest gas limit. Sei's gov transactions need far less: a vote uses
  well under 100k gas (seid used 32,075 for one, recorded in `tests/fixtures/seid/rpc/`); a proposal's gas grows with
  its text (the SDK charges 10 gas per tx byte plus its store writes), a few hundred thousand at the params' 10 kB
  description limit. 1,000,000 covers the largest of them with room and caps the fee a ceiling price allows.
- `NODETASK_MAX_GAS_PRICE` (default `0.1usei`): the largest fee per unit of gas, per denom (`fees / gas`); a fee in a
  denom without a ceiling is refused. Sei's published minimum gas prices are 0.01usei (what `seid init` writes),
  0.02usei (pacific-1, arctic-1) and 0.08usei (atlantic-2); 0.1usei pays every one of them. With the default gas
  ceiling no transaction pays more than 100,000usei (0.1 SEI).
- `NODETASK_MAX_DEPOSIT` (default `3500000000usei`): the largest initial deposit of a proposal, per denom; a denom
  without a ceiling is refused. 3,500 SEI is pacific-1's minimum deposit, the most a proposal needs to enter its
  voting period (expedited proposals, which need twice that, are not sent by the agent).

A chain with another denom (stock `simd`'s `stake`) lists it: `NODETASK_MAX_GAS_PRICE=0.01stake`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from .errors import ParamsInvalid

_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)([a-zA-Z][a-zA-Z0-9/:._-]{2,127})$")


def _entries(text: str, what: str) -> dict[str, Decimal]:
    entries: dict[str, Decimal] = {}
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        match = _AMOUNT.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not {what} such as '0.1usei'")
        denom = match.group(2)
        if denom in entries:
            raise ValueError(f"denom {denom!r} appears twice")
        entries[denom] = Decimal(match.group(1))
    if not entries:
        raise ValueError(f"must list at least one {what}, such as '0.1usei'")
    return entries


def parse_prices(text: str) -> dict[str, Decimal]:
    """`0.1usei,0.01stake` -> {denom: price per gas}; `ValueError` naming the bad part."""
    return _entries(text, "a gas price")


def parse_amounts(text: str) -> dict[str, int]:
    """`3500000000usei` -> {denom: amount}; whole numbers only; `ValueError` naming the bad part."""
    entries = _entries(text, "an amount")
    for denom, amount in entries.items():
        if amount != amount.to_integral_value():
            raise ValueError(f"{amount}{denom}: an amount is a whole number")
    return {denom: int(amount) for denom, amount in entries.items()}


@dataclass(frozen=True)
class SpendingLimits:
    max_gas: int
    max_gas_price: dict[str, Decimal]
    max_deposit: dict[str, int]

    def check(self, *, gas: int, fees: Iterable[tuple[str, int]], deposit: Iterable[tuple[str, int]] = ()) -> None:
        """`ParamsInvalid` naming the field, the value and the setting it exceeds; nothing when all fit."""
        if gas > self.max_gas:
            raise ParamsInvalid(
                f"params.gas: {gas} is above the gas ceiling NODETASK_MAX_GAS={self.max_gas}; nothing was signed",
                hint="lower params.gas, or raise NODETASK_MAX_GAS on the agent if this transaction needs more",
            )
        for denom, amount in fees:
            price = self.max_gas_price.get(denom)
            if price is None:
                raise ParamsInvalid(
                    f"params.fees: denom {denom!r} has no ceiling in NODETASK_MAX_GAS_PRICE "
                    f"({_listing(self.max_gas_price)}); nothing was signed",
                    hint="pay the fee in a listed denom, or add the denom to NODETASK_MAX_GAS_PRICE on the agent",
                )
            ceiling = int(price * gas)
            if amount > ceiling:
                raise ParamsInvalid(
                    f"params.fees: {amount}{denom} is above the fee ceiling of {ceiling}{denom} for gas {gas} "
                    f"(NODETASK_MAX_GAS_PRICE {price}{denom} per gas); nothing was signed",
                    hint="lower params.fees (gas x the node's minimum gas price is enough), or raise "
                    "NODETASK_MAX_GAS_PRICE on the agent",
                )
        for denom, amount in deposit:
            limit = self.max_deposit.get(denom)
            if limit is None:
                raise ParamsInvalid(
                    f"params.initialDeposit: denom {denom!r} has no ceiling in NODETASK_MAX_DEPOSIT "
                    f"({_listing(self.max_deposit)}); nothing was signed",
                    hint="deposit in a listed denom, or add the denom to NODETASK_MAX_DEPOSIT on the agent",
                )
            if amount > limit:
                raise ParamsInvalid(
                    f"params.initialDeposit: {amount}{denom} is above the deposit ceiling NODETASK_MAX_DEPOSIT "
                    f"{limit}{denom}; nothing was signed",
                    hint="lower params.initialDeposit, or raise NODETASK_MAX_DEPOSIT on the agent",
                )


def _listing(entries: dict[str, Decimal] | dict[str, int]) -> str:
    return ",".join(f"{amount}{denom}" for denom, amount in entries.items())

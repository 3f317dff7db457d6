"""Field types for amounts in params models: Cosmos coin strings, decimal rates and positive integers.

Coin strings use the Cosmos form `<integer amount><denom>` (`1000000usei`, several joined by commas: `5usei,10uatom`).
They are parsed here, in the bottom layer, so a bad amount or denom is a `ParamsInvalid` naming the field and the value
before any handler runs, and `agent.chain` signs with the same `Coin`. Decimal amounts (`1.5usei`), zero or negative
amounts and repeated denoms are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BeforeValidator

DENOM_PATTERN = r"[a-zA-Z][a-zA-Z0-9/:._-]{2,127}"
"""The Cosmos SDK's denom rule: a letter, then 2 to 127 letters, digits or `/:._-`."""
_COIN = re.compile(rf"^(?P<amount>[0-9]+)(?P<denom>{DENOM_PATTERN})$")


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

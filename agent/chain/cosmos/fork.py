"""A fork's genesis from another chain's export, streamed: the agent's memory does not grow with the export's size.

An export of a real chain is many GB; parsed into Python objects it needs several times that (measured 6.7x). So
`assemble-genesis-fork` never parses the whole export. It reads the file twice with an incremental JSON parser
(ijson, C backend):

1. `scan_export` collects the few facts the fork needs: `initial_height`, the staking params, the number of
   accounts and the highest account number, the balances of the validators' accounts and of the staking pools and
   distribution module account, the sum of all balances, `bank.supply`, distribution's `fee_pool`, which modules
   exist, and which validator accounts already have an EVM association. Memory: a few small maps.
2. `write_fork` re-emits the document event by event into the new genesis, replacing or inserting only what the fork
   changes (`ForkEdits`): metadata, the stripped validator state, the pools and distribution balances, supply,
   `fee_pool`, `gen_txs`, `validators`; new accounts, balances and EVM associations are appended to their arrays.
   Only one array item (an account, a balance) is ever held as objects.

The edits: the source chain's validator state cleared (`genesis.STRIPPED_STATE`) and its stake settled
(`genesis.settle_stripped_stake`). The output is compact JSON (no indentation: the file is for machines and may be
GB). Array order is kept and new entries are appended: the SDK's InitGenesis sorts accounts by number and balances by
address itself. Throughput and memory against a whole-document parse: bench/fork.py, docs/benchmarks.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import ijson

from agent.chain.crypto import bech32

from . import coins as coin_lists
from .coins import CoinMap
from .genesis import (
    BONDED_POOL,
    DISTRIBUTION,
    NOT_BONDED_POOL,
    STRIPPED_STATE,
    GenesisInvalid,
    account_number_of,
    base_account,
    module_address_bytes,
)

ACCOUNTS = "app_state.auth.accounts"
BALANCES = "app_state.bank.balances"
ASSOCIATIONS = "app_state.evm.address_associations"
_WHOLE = {"app_state.bank.supply", "app_state.distribution.fee_pool"}
_SCALARS = {"initial_height", "app_state.staking.params.bond_denom", "app_state.staking.params.max_validators"}
_SETTLED = {module_address_bytes(name): name for name in (BONDED_POOL, NOT_BONDED_POOL, DISTRIBUTION)}


class _HasDecimal(Exception):
    pass


def _refuse_decimal(value: object) -> Any:
    raise _HasDecimal if isinstance(value, Decimal) else TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: object) -> str:
    """Compact JSON text, UTF-8 kept. A non-integer number read from the export (a `Decimal`) is written exactly as
    it was read, not through a float."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_refuse_decimal)
    except _HasDecimal:
        return _dumps_exact(value)


def _dumps_exact(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{dumps(str(key))}:{_dumps_exact(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps_exact(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _events(path: Path) -> Iterator[tuple[str, str, Any]]:
    with path.open("rb") as handle:
        try:
            yield from ijson.parse(handle, use_float=False)
        except ijson.JSONError as error:
            raise GenesisInvalid(f"not valid JSON: {error}") from None


def _items(path: Path, prefix: str) -> Iterator[Any]:
    """Every value at `prefix`, built by ijson's C backend (fast), one at a time."""
    with path.open("rb") as handle:
        try:
            yield from ijson.items(handle, prefix, use_float=False)
        except ijson.JSONError as error:
            raise GenesisInvalid(f"not valid JSON: {error}") from None


def address_bytes(address: object) -> bytes | None:
    """The bytes of a Bech32 address of any prefix, or None when it is not one."""
    try:
        return bech32.decode(str(address))[1]
    except bech32.Bech32Error:
        return None


class AddressMatcher:
    """Which of a few target addresses (by bytes) an address string is, without decoding every address.

    Decoding Bech32 in Python costs more than parsing a whole balance entry; instead the targets are encoded once per
    prefix seen, and each address is looked up as a string.
    """

    def __init__(self, targets: set[bytes]):
        self._targets = targets
        self._by_prefix: dict[str, dict[str, bytes]] = {}

    def match(self, address: object) -> bytes | None:
        if not isinstance(address, str):
            return None
        address = address.lower()
        prefix = address[: address.rfind("1")]
        table = self._by_prefix.get(prefix)
        if table is None:
            try:
                table = {bech32.encode(prefix, raw): raw for raw in self._targets}
            except (bech32.Bech32Error, ValueError):
                table = {}
            self._by_prefix[prefix] = table
        return table.get(address)


@dataclass
class ExportFacts:
    """What `scan_export` learned; everything else of the export is only ever streamed through."""

    top_level: set[str] = field(default_factory=set)
    initial_height: object = None
    bond_denom: str | None = None
    max_validators: int | None = None
    modules: set[str] = field(default_factory=set)
    account_count: int = 0
    max_account_number: int = -1
    account_numbers: dict[str, int] = field(default_factory=dict)
    """Account number of each watched address that has an account."""
    balances: dict[bytes, CoinMap] = field(default_factory=dict)
    """Balance of each watched address, the pools and distribution (by address bytes)."""
    total_balances: CoinMap = field(default_factory=dict)
    supply: CoinMap = field(default_factory=dict)
    fee_pool: dict[str, Any] | None = None
    associated: set[str] = field(default_factory=set)

    def rank(self, number: int, path: Path) -> int:
        """How many exported accounts have a smaller number: the position auth's InitGenesis gives `number`."""
        return sum(account_number_of(account) < number for account in _items(path, f"{ACCOUNTS}.item"))


def _never() -> None:
    pass


def scan_export(path: Path, watched: set[str], checkpoint: Callable[[], None] = _never) -> ExportFacts:
    """First pass: the facts of the export the fork needs, for the `watched` account addresses (the validators').

    A few passes of ijson's C backend (each as fast as tokenizing the file) plus one light event pass for the
    document's shape; nothing but the facts is kept. `checkpoint` is called every few thousand events (it raises to
    stop: the task was cancelled).
    """
    facts = ExportFacts()
    matcher = AddressMatcher({raw for raw in map(address_bytes, watched) if raw is not None} | set(_SETTLED))
    wanted = _SCALARS | _WHOLE
    builder: Any = None
    depth = 0
    start = ""
    for count, (prefix, event, value) in enumerate(_events(path)):
        if not count & 0xFFFF:
            checkpoint()
        if builder is not None:
            builder.event(event, value)
            if event == "start_map" or event == "start_array":
                depth += 1
            elif event == "end_map" or event == "end_array":
                depth -= 1
                if depth == 0:
                    _scan_value(facts, start, builder.value, watched, matcher)
                    builder = None
        elif event == "map_key":
            if prefix == "app_state":
                facts.modules.add(value)
            elif not prefix:
                facts.top_level.add(value)
        elif prefix in wanted:
            if event == "start_map" or event == "start_array":
                builder, depth, start = ijson.ObjectBuilder(), 1, prefix
                builder.event(event, value)
            elif event != "end_map" and event != "end_array":
                _scan_value(facts, prefix, value, watched, matcher)
    for item_prefix in (f"{ACCOUNTS}.item", f"{BALANCES}.item", f"{ASSOCIATIONS}.item"):
        if item_prefix.split(".")[1] in facts.modules:
            for count, item in enumerate(_items(path, item_prefix)):
                if not count & 0xFFF:
                    checkpoint()
                _scan_value(facts, item_prefix, item, watched, matcher)
    return facts


def _scan_value(facts: ExportFacts, prefix: str, value: Any, watched: set[str], matcher: AddressMatcher) -> None:
    if prefix == "initial_height":
        facts.initial_height = str(value) if isinstance(value, Decimal | int) else value
    elif prefix.endswith(".bond_denom"):
        facts.bond_denom = value if isinstance(value, str) and value else None
    elif prefix.endswith(".max_validators"):
        valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
        facts.max_validators = value if valid else None
    elif prefix == f"{ACCOUNTS}.item":
        number = account_number_of(value)
        facts.account_count += 1
        facts.max_account_number = max(facts.max_account_number, number)
        base = base_account(value)
        if base and base.get("address") in watched:
            facts.account_numbers[base["address"]] = number
    elif prefix == f"{BALANCES}.item":
        if not isinstance(value, dict):
            raise GenesisInvalid(f"{BALANCES}: an entry is not an object")
        coins = coin_lists.coins_from_json(value.get("coins", []), f"{BALANCES}[{value.get('address')}].coins")
        facts.total_balances = coin_lists.add(facts.total_balances, coins)
        raw = matcher.match(value.get("address"))
        if raw is not None:
            facts.balances[raw] = coin_lists.add(facts.balances.get(raw, {}), coins)
    elif prefix == f"{ASSOCIATIONS}.item":
        if isinstance(value, dict) and value.get("sei_address") in watched:
            facts.associated.add(value["sei_address"])
    elif prefix == "app_state.bank.supply":
        facts.supply = coin_lists.coins_from_json(value or [], "app_state.bank.supply")
    elif prefix == "app_state.distribution.fee_pool":
        if not isinstance(value, dict):
            raise GenesisInvalid("app_state.distribution.fee_pool is not an object")
        facts.fee_pool = value


KEEP = object()
"""Returned by an `item_by_address` function: write the item unchanged."""


@dataclass
class ForkEdits:
    """What `write_fork` changes. Paths are dotted (`app_state.bank.supply`).

    - `replace`: the value at the path becomes this JSON value; inserted at the end of its parent object when the
      parent exists and lacks the key.
    - `create`: inserted at the end of the parent object only when the key is missing.
    - `item_by_address`: array path -> function of an item's `address` (None when it has none) returning `KEEP`,
      None (drop the item) or a replacement item. Items are never parsed into objects, only their address is read.
    - `append_items`: array path -> items written after the existing ones.
    """

    replace: dict[str, object] = field(default_factory=dict)
    create: dict[str, object] = field(default_factory=dict)
    item_by_address: dict[str, Callable[[str | None], Any]] = field(default_factory=dict)
    append_items: dict[str, list[Any]] = field(default_factory=dict)

    def missing(self, parent: str, seen: set[str]) -> Iterator[tuple[str, object]]:
        for edits in (self.replace, self.create):
            for path, value in edits.items():
                head, _, key = path.rpartition(".")
                if head == parent and key not in seen:
                    yield key, value


_encode_string: Callable[[str], str] = json.encoder.c_encode_basestring or json.encoder.py_encode_basestring  # type: ignore[attr-defined]
_FLUSH_PIECES = 4096


def _scalar(event: str, value: Any) -> str:
    if event == "number":
        return str(value)
    if event == "boolean":
        return "true" if value else "false"
    return "null"


def write_fork(source: Path, sink: IO[bytes] | Any, edits: ForkEdits, checkpoint: Callable[[], None] = _never) -> None:
    """Second pass: stream `source` into `sink.write` with `edits` applied.

    One tight loop over the parser's events (this is the hot path of a multi-GB fork): output pieces are collected
    in a list and written in large blocks; an item of an `item_by_address` array is collected on its own and written,
    replaced or dropped when it ends.
    """
    main: list[str] = []
    out = main
    counts: list[int] = []  # items written so far in each open container
    after_key = False
    maps: list[tuple[str, set[str]]] = []
    skip = 0
    skip_next = False
    item_rules = {f"{path}.item": rule for path, rule in edits.item_by_address.items()}
    item_rule: Callable[[str | None], Any] | None = None
    item_depth = 0
    item_address: str | None = None
    address_next = False
    replace = edits.replace
    append = edits.append_items

    def separate() -> None:
        nonlocal after_key
        if after_key:
            after_key = False
        elif counts:
            if counts[-1]:
                out.append(",")
            counts[-1] += 1

    for prefix, event, value in _events(source):
        if skip_next:
            skip_next = False
            if event == "start_map" or event == "start_array":
                skip = 1
            continue
        if skip:
            if event == "start_map" or event == "start_array":
                skip += 1
            elif event == "end_map" or event == "end_array":
                skip -= 1
            continue
        if event == "string":
            separate()
            out.append(_encode_string(value))
            if address_next:
                item_address, address_next = value, False
        elif event == "map_key":
            maps[-1][1].add(value)
            separate()
            out.append(_encode_string(value))
            out.append(":")
            after_key = True
            if item_rule is not None and item_depth == 1 and value == "address":
                address_next = True
            path = f"{prefix}.{value}" if prefix else value
            if path in replace:
                out.append(dumps(replace[path]))
                after_key = False
                skip_next = True
        elif event == "start_map":
            if item_rule is None and prefix in item_rules:
                item_rule, item_depth, item_address = item_rules[prefix], 1, None
                out = []  # the item, held until its end decides its fate
            else:
                separate()
                if item_rule is not None:
                    item_depth += 1
            out.append("{")
            counts.append(0)
            maps.append((prefix, set()))
        elif event == "end_map":
            parent, seen = maps.pop()
            for key, inserted in edits.missing(parent, seen):
                separate()
                out.append(f"{_encode_string(key)}:{dumps(inserted)}")
            counts.pop()
            out.append("}")
            if item_rule is not None:
                item_depth -= 1
                if item_depth == 0:
                    decision = item_rule(item_address)
                    text = "".join(out) if decision is KEEP else None if decision is None else dumps(decision)
                    out, item_rule = main, None
                    if text is not None:
                        separate()
                        out.append(text)
        elif event == "start_array":
            separate()
            if item_rule is not None:
                item_depth += 1
            out.append("[")
            counts.append(0)
        elif event == "end_array":
            for item in append.get(prefix, ()):
                separate()
                out.append(dumps(item))
            counts.pop()
            out.append("]")
            if item_rule is not None:
                item_depth -= 1
        else:
            separate()
            out.append(_scalar(event, value))
        if len(main) > _FLUSH_PIECES:
            sink.write("".join(main).encode())
            main.clear()
            checkpoint()
    main.append("\n")
    sink.write("".join(main).encode())


def stripped_state_edits(modules: set[str]) -> dict[str, object]:
    """`replace` entries that clear the source chain's validator state, for the modules the export has."""
    return {
        f"app_state.{module}.{key}": value
        for module, cleared in STRIPPED_STATE.items()
        if module in modules
        for key, value in cleared.items()
    }


def settled_balance_rule(distribution_coins: CoinMap | None) -> Callable[[str | None], Any]:
    """Balance items: the staking pools dropped, distribution's replaced by `distribution_coins` (None: dropped too)."""
    pools = {module_address_bytes(BONDED_POOL), module_address_bytes(NOT_BONDED_POOL)}
    distribution = module_address_bytes(DISTRIBUTION)
    matcher = AddressMatcher(pools | {distribution})

    def decide(address: str | None) -> Any:
        raw = matcher.match(address)
        if raw in pools:
            return None
        if raw == distribution and distribution_coins is not None:
            return {"address": address, "coins": coin_lists.coins_to_json(distribution_coins)}
        return KEEP

    return decide

"""The streamed fork rewrite (agent.chain.cosmos.fork): exact re-emission, the edit kinds, and memory that does not
grow with the export (the whole-document parse it replaces needed about 6.7x the export's size)."""

from __future__ import annotations

import io
import json
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.chain.cosmos import fork
from agent.chain.cosmos.genesis import GenesisInvalid, module_address_bytes
from agent.chain.crypto import bech32

EXPORT = Path(__file__).parent / "data" / "simd-v0.45.16-export.json"


def rewrite(source: Path, edits: fork.ForkEdits) -> Any:
    sink = io.BytesIO()
    fork.write_fork(source, sink, edits)
    return json.loads(sink.getvalue(), parse_float=Decimal)


@pytest.mark.parametrize(
    "document",
    [
        json.loads(EXPORT.read_text()),
        {"a": [1, -2, 3.25, 1e400, 0.1000000000000000055511151231257827], "é": "ü\u2028<&>", "n": None, "t": True},
        {"nested": [[], {}, [{}], {"x": [[1]]}], "empty": ""},
    ],
    ids=["simd-export", "scalars", "nesting"],
)
def test_without_edits_the_document_comes_out_unchanged(tmp_path: Path, document: Any) -> None:
    source = tmp_path / "export.json"
    source.write_text(json.dumps(document, ensure_ascii=False) if "a" not in document else _raw_scalars())
    expected = json.loads(source.read_text(), parse_float=Decimal)
    assert rewrite(source, fork.ForkEdits()) == expected


def _raw_scalars() -> str:
    # Written by hand: numbers json.dumps could not produce (exponent overflow, more digits than a float holds).
    return '{"a":[1,-2,3.25,1e400,0.1000000000000000055511151231257827],"é":"ü\\u2028<&>","n":null,"t":true}'


def test_edits_replace_insert_create_rule_items_and_append(tmp_path: Path) -> None:
    source = tmp_path / "export.json"
    items = [{"address": "a", "n": [1]}, {"address": "b"}, {"n": {"address": "nested"}}, {"address": "c", "x": {}}]
    source.write_text(json.dumps({"chain_id": "old", "app_state": {"m": {"keep": 1, "drop": [1, 2]}, "l": items}}))
    rules = {"a": fork.KEEP, "b": None, None: fork.KEEP, "c": {"address": "c", "x": "replaced"}}
    seen: list[str | None] = []

    def rule(address: str | None) -> Any:
        seen.append(address)
        return rules[address]

    edits = fork.ForkEdits(
        replace={"chain_id": "new", "app_state.m.drop": [], "app_state.m.added": "x", "app_state.absent.key": 1},
        create={"app_state.m.keep": 99, "app_state.made": {"a": 1}},
        item_by_address={"app_state.l": rule},
        append_items={"app_state.l": [{"address": "d"}]},
    )
    assert rewrite(source, edits) == {
        "chain_id": "new",
        "app_state": {
            "m": {"keep": 1, "drop": [], "added": "x"},
            "l": [items[0], items[2], {"address": "c", "x": "replaced"}, {"address": "d"}],
            "made": {"a": 1},
        },
    }
    assert seen == ["a", "b", None, "c"]  # only an item's own top-level address counts


@pytest.mark.parametrize("text", ['{"app_state": {"a": [1, 2}', "{", '{"a": tru}'], ids=["bracket", "eof", "literal"])
def test_a_broken_export_is_genesis_invalid(tmp_path: Path, text: str) -> None:
    source = tmp_path / "export.json"
    source.write_text(text)
    with pytest.raises(GenesisInvalid, match="not valid JSON"):
        fork.scan_export(source, set())


def test_scan_collects_only_the_facts_the_fork_needs() -> None:
    document = json.loads(EXPORT.read_text())
    validator_account = next(
        entry["address"]
        for entry in document["app_state"]["bank"]["balances"]
        if entry["coins"][0]["amount"] == "50000000000"
    )
    facts = fork.scan_export(EXPORT, {validator_account})
    assert facts.initial_height == document["initial_height"]
    assert facts.bond_denom == "stake" and facts.max_validators == 100
    assert facts.account_count == len(document["app_state"]["auth"]["accounts"]) == facts.max_account_number + 1
    assert facts.supply == {"stake": int(document["app_state"]["bank"]["supply"][0]["amount"])}
    assert facts.total_balances == facts.supply
    assert set(facts.balances) >= {module_address_bytes("bonded_tokens_pool"), bech32.decode(validator_account)[1]}
    assert facts.fee_pool == document["app_state"]["distribution"]["fee_pool"]
    assert "evm" not in facts.modules and {"auth", "bank", "staking"} <= facts.modules


def _synthetic_export(path: Path, accounts: int) -> None:
    """A genesis with `accounts` accounts and balances (~300 bytes each), written without holding it in memory."""
    with path.open("w") as out:
        out.write('{"chain_id":"big-1","initial_height":"77","app_state":{"auth":{"accounts":[')
        for number in range(accounts):
            address = bech32.encode("cosmos", number.to_bytes(20, "big"))
            account = {"@type": "/cosmos.auth.v1beta1.BaseAccount", "address": address, "pub_key": None}
            account.update(account_number=str(number), sequence="5")
            out.write(("," if number else "") + json.dumps(account))
        out.write(']},"bank":{"balances":[')
        for number in range(accounts):
            address = bech32.encode("cosmos", number.to_bytes(20, "big"))
            coins = [{"denom": "stake", "amount": str(1000 + number)}, {"denom": "uatom", "amount": "7"}]
            out.write(("," if number else "") + json.dumps({"address": address, "coins": coins}))
        out.write('],"supply":[]},"staking":{"params":{"bond_denom":"stake"}}}}')


def _fork_peak_memory(tmp_path: Path, accounts: int) -> int:
    """Peak Python memory of scanning and rewriting a synthetic export of `accounts` accounts and balances."""
    source = tmp_path / f"export-{accounts}.json"
    _synthetic_export(source, accounts)
    edits = fork.ForkEdits(replace={"chain_id": "fork-1"}, append_items={fork.ACCOUNTS: [{"address": "new"}]})
    tracemalloc.start()
    try:
        facts = fork.scan_export(source, {bech32.encode("cosmos", (5).to_bytes(20, "big"))})
        with (tmp_path / "out.json").open("wb") as sink:
            fork.write_fork(source, sink, edits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert facts.account_count == accounts and facts.total_balances["uatom"] == 7 * accounts
    assert facts.balances == {(5).to_bytes(20, "big"): {"stake": 1005, "uatom": 7}}
    with (tmp_path / "out.json").open("rb") as result:
        assert result.read(64).startswith(b'{"chain_id":"fork-1","initial_height":"77"')
    return peak


@pytest.mark.slow
def test_memory_does_not_grow_with_the_export(tmp_path: Path) -> None:
    small = _fork_peak_memory(tmp_path, 2_000)  # ~0.6 MB of JSON
    large = _fork_peak_memory(tmp_path, 8_000)  # ~2.5 MB; a whole-document parse would hold some 15 MB
    # Fixed-size buffers (the parser's event batch, the output block) only: 4x the export, about the same peak.
    assert large < small * 1.25 + 256 * 1024, f"peak {small} bytes for 2000 accounts, {large} for 8000"
    assert large < 2 * 1024 * 1024

"""The keys seid reads (agent.chain.seiconfig.known): sei-config's placements plus every key of the stock seid homes;
anything else is named with the nearest known keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.chain.seiconfig.known import (
    SEID_KEYS_PATH,
    derive_seid_keys,
    is_known,
    nearest_keys,
    unknown_keys,
    unknown_keys_on_disk,
)
from agent.models import TaskType
from tests.fixtures.common import HandlerRunner

SEID_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "seid"
INIT_HOMES = sorted(SEID_FIXTURES.glob("*/init/*/config"))


def test_committed_seid_keys_equal_what_the_recorded_homes_hold() -> None:
    assert json.loads(SEID_KEYS_PATH.read_text()) == derive_seid_keys(SEID_FIXTURES), (
        "run scripts/seid-keys.py after recording new seid homes"
    )


@pytest.mark.parametrize("config", INIT_HOMES, ids=lambda path: path.parent.name)
def test_a_stock_seid_home_has_no_unknown_key(config: Path) -> None:
    assert unknown_keys_on_disk(config) == []


@pytest.mark.parametrize(
    ("file_name", "key", "loose", "known"),
    [
        ("config.toml", "p2p.persistent-peers", False, True),  # in the stock homes
        ("config.toml", "statesync.fetchers", False, True),  # placed by sei-config only (absent from seid init)
        ("app.toml", "sei.mode", False, True),  # sei-config's meta section
        ("app.toml", "evm.http_port", False, True),  # an underscore section
        ("client.toml", "chain-id", False, True),
        ("config.toml", "p2p.max-num-inbound-peers", False, False),  # CometBFT's, not seid's
        ("config.toml", "p2p.persistent_peers", False, False),  # the spelling seid does not read
        ("config.toml", "p2p.persistent_peers", True, True),  # matchKeySpelling rewrites it to the file's
        ("config.toml", "mempool.sise", False, False),  # a typo
        ("app.toml", "p2p.persistent-peers", False, False),  # a key of another file
        ("config.toml", "nosuch.table.key", False, False),
    ],
)
def test_a_key_is_known_when_seid_reads_it_from_that_file(file_name: str, key: str, loose: bool, known: bool) -> None:
    assert is_known(file_name, key, loose=loose) is known


@pytest.mark.parametrize(
    ("key", "nearest"),
    [
        ("p2p.persistent_peers", "p2p.persistent-peers"),  # a respelling is the one answer
        ("mempool.sise", "mempool.size"),
        ("p2p.max-num-inbound-peers", "p2p.blocksync-peers"),
        ("rpc.laddrr", "rpc.laddr"),
    ],
)
def test_an_unknown_key_names_the_nearest_known_key_first(key: str, nearest: str) -> None:
    assert nearest_keys("config.toml", key)[0] == nearest


def test_unknown_keys_of_a_patch_are_warnings_and_a_deletion_is_not_flagged() -> None:
    patch = {"p2p": {"max-num-inbound-peers": 40, "persistent-peers": "", "max_num_outbound_peers": None}}
    [diagnostic] = unknown_keys("config.toml", patch)
    assert diagnostic.severity == "WARNING"
    assert diagnostic.field == "config.toml:p2p.max-num-inbound-peers"
    assert "is not a key seid reads" in diagnostic.message and "nearest known: p2p." in diagnostic.message


def test_a_file_seid_does_not_read_is_not_judged() -> None:
    assert unknown_keys("custom.toml", {"anything": 1}) == []


async def test_config_validate_warns_about_a_key_seid_does_not_read(run_handler: HandlerRunner, home: Path) -> None:
    for name in ("config.toml", "app.toml", "client.toml"):
        shutil.copy(INIT_HOMES[0] / name, home / "config" / name)
    config = home / "config" / "config.toml"
    config.write_text(config.read_text().replace("[p2p]\n", "[p2p]\nmax-num-inbound-peers = 40\n", 1))
    result = await run_handler(TaskType.CONFIG_VALIDATE, {})
    assert result["valid"] is True
    [diagnostic] = [item for item in result["diagnostics"] if item["field"].startswith("config.toml:")]
    assert diagnostic["severity"] == "WARNING" and diagnostic["field"] == "config.toml:p2p.max-num-inbound-peers"
    assert "nearest known: p2p." in diagnostic["message"]

"""generate-identity through the handler runner: keys written once, config patched not rewritten, public result."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from agent.tasks.identity import (
    DEFAULT_CONFIG_TOML,
    DEFAULT_CONSENSUS_PARAMS,
    genesis_chain_id,
    go_rfc3339nano,
)
from tests.fixtures.common import HandlerRunner

PARAMS = {"chainId": "sei-test-1", "moniker": "validator-0"}
MARKER = ".sei-sidecar-identity-done"

EXISTING_CONFIG = """\
# Operator's config.toml
proxy-app = "tcp://127.0.0.1:26658"
moniker = "old-name"   # set by seid init

[p2p]
persistent-peers = "abc@10.0.0.1:26656" # from set-genesis-peers

[statesync]
enable = true
trust-height = 1234
"""


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under `root` with its bytes, inode and mode: equal snapshots mean nothing was written."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_ino, path.stat().st_mode)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def private_values(home: Path) -> list[str]:
    return [
        json.loads((home / "config" / name).read_text())["priv_key"]["value"]
        for name in ("node_key.json", "priv_validator_key.json")
    ]


async def test_fresh_home_gets_keys_config_genesis_and_marker(run_handler: HandlerRunner, home: Path) -> None:
    result = await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    node_key = json.loads((home / "config" / "node_key.json").read_text())
    validator_key = json.loads((home / "config" / "priv_validator_key.json").read_text())
    assert result == {
        "nodeId": node_key["id"],
        "validatorAddress": validator_key["address"],
        "consensusPubKey": validator_key["pub_key"]["value"],
    }
    assert (home / "data" / "priv_validator_state.json").read_text() == (
        '{\n  "height": "0",\n  "round": 0,\n  "step": 0\n}'
    )
    for name in ("config/node_key.json", "config/priv_validator_key.json", "data/priv_validator_state.json"):
        assert (home / name).stat().st_mode & 0o777 == 0o600
    assert (home / "config" / "config.toml").read_text() == DEFAULT_CONFIG_TOML.replace(
        'moniker = ""', 'moniker = "validator-0"'
    )
    genesis = json.loads((home / "config" / "genesis.json").read_text())
    assert list(genesis) == ["genesis_time", "chain_id", "initial_height", "consensus_params", "app_hash", "app_state"]
    assert genesis["chain_id"] == "sei-test-1"
    assert genesis["initial_height"] == "1"
    assert genesis["consensus_params"] == DEFAULT_CONSENSUS_PARAMS
    assert genesis["app_state"] == {} and genesis["app_hash"] == ""
    assert abs((datetime.fromisoformat(genesis["genesis_time"]) - datetime.now(UTC)).total_seconds()) < 3600
    assert (home / MARKER).exists()


async def test_default_config_is_valid_toml_with_sei_tendermint_keys(run_handler: HandlerRunner, home: Path) -> None:
    await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    config = tomlkit.parse((home / "config" / "config.toml").read_text()).unwrap()
    assert config["moniker"] == "validator-0"
    assert config["mode"] == "full"
    assert config["p2p"] == {"laddr": "tcp://0.0.0.0:26656", "persistent-peers": ""}
    assert config["statesync"]["trust-height"] == 0
    assert config["mempool"]["size"] == 5000


async def test_creates_config_and_data_when_the_home_is_empty(tmp_path: Path) -> None:
    home = tmp_path / "empty-home"
    runner = HandlerRunner(AgentSettings(home=home, chain_id="x", pod_name="p", pod_namespace="n"))
    result = await runner(TaskType.GENERATE_IDENTITY, PARAMS)
    assert result is not None and len(result["nodeId"]) == 40
    assert (home / "data" / "priv_validator_state.json").is_file()


async def test_second_run_changes_no_byte_and_returns_the_same_identity(run_handler: HandlerRunner, home: Path) -> None:
    first = await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    before = snapshot(home)
    second = await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    assert second == first
    assert snapshot(home) == before


async def test_result_and_logs_hold_no_private_key(
    run_handler: HandlerRunner, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    serialized = json.dumps(result)
    for secret in private_values(home):
        assert secret not in serialized
        assert secret[:44] not in serialized  # the base64 of the 32-byte seed alone
        assert secret[:44] not in caplog.text
    assert result is not None and result["nodeId"] in caplog.text


async def test_existing_config_keeps_everything_but_the_moniker(run_handler: HandlerRunner, home: Path) -> None:
    (home / "config" / "config.toml").write_text(EXISTING_CONFIG)
    await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    assert (home / "config" / "config.toml").read_text() == EXISTING_CONFIG.replace(
        'moniker = "old-name"', 'moniker = "validator-0"'
    )


async def test_existing_genesis_for_the_same_chain_is_kept_byte_for_byte(
    run_handler: HandlerRunner, home: Path
) -> None:
    genesis = '{"genesis_time":"2024-01-01T00:00:00Z","chain_id":"sei-test-1","app_state":{"bank":{}}}'
    (home / "config" / "genesis.json").write_text(genesis)
    await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    assert (home / "config" / "genesis.json").read_text() == genesis


async def test_existing_genesis_for_another_chain_fails_before_anything_is_written(
    run_handler: HandlerRunner, home: Path
) -> None:
    (home / "config" / "genesis.json").write_text('{"chain_id": "pacific-1", "app_state": {}}')
    before = snapshot(home)
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    assert "genesis.json is for chain 'pacific-1', not chainId 'sei-test-1'" in caught.value.message
    assert snapshot(home) == before


async def test_marker_present_still_refuses_a_different_chain(run_handler: HandlerRunner, home: Path) -> None:
    await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    with pytest.raises(TaskError, match="is for chain 'sei-test-1'"):
        await run_handler(TaskType.GENERATE_IDENTITY, {**PARAMS, "chainId": "other-chain"})


@pytest.mark.parametrize(
    ("name", "content", "complaint"),
    [
        ("config/node_key.json", '{"priv_key":{"type":"tendermint/PrivKeyEd25519","value":"AAAA"}}', "expected 64"),
        ("config/node_key.json", "", "not valid JSON"),
        ("config/priv_validator_key.json", '{"address":"00"}', "priv_key is missing"),
        ("data/priv_validator_state.json", '{"height":1}', "height must be a decimal string"),
    ],
    ids=["short-node-key", "empty-node-key", "validator-key-without-priv", "bad-state"],
)
async def test_corrupt_existing_file_fails_clearly_and_the_home_is_untouched(
    run_handler: HandlerRunner, home: Path, name: str, content: str, complaint: str
) -> None:
    (home / name).write_text(content)
    before = snapshot(home)
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    assert str(home / name) in caught.value.message
    assert complaint in caught.value.message
    assert snapshot(home) == before
    assert not (home / MARKER).exists()


async def test_validator_key_without_signing_state_is_refused(run_handler: HandlerRunner, home: Path) -> None:
    await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    (home / MARKER).unlink()
    (home / "data" / "priv_validator_state.json").unlink()
    (home / "config" / "node_key.json").unlink()
    before = snapshot(home)
    with pytest.raises(TaskError, match="double-sign"):
        await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    assert snapshot(home) == before


async def test_rerun_after_a_failure_midway_completes_with_the_keys_already_written(
    run_handler: HandlerRunner, home: Path
) -> None:
    (home / "config" / "config.toml").write_text("moniker = \n")
    with pytest.raises(TaskError, match=r"config\.toml is not valid TOML \(line 1"):
        await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    assert not (home / MARKER).exists()
    assert (home / "config" / "config.toml").read_text() == "moniker = \n"
    keys_after_failure = {
        name: (home / name).read_bytes()
        for name in ("config/node_key.json", "config/priv_validator_key.json", "data/priv_validator_state.json")
    }
    (home / "config" / "config.toml").write_text("moniker = 'fixed'\n")
    result = await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    for name, content in keys_after_failure.items():
        assert (home / name).read_bytes() == content
    assert result is not None
    assert result["nodeId"] == json.loads(keys_after_failure["config/node_key.json"])["id"]
    assert (home / "config" / "config.toml").read_text() == "moniker = 'validator-0'\n"
    assert (home / MARKER).exists()


async def test_existing_keys_are_adopted_not_replaced(run_handler: HandlerRunner, home: Path) -> None:
    first = await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    (home / MARKER).unlink()
    (home / "config" / "genesis.json").unlink()
    keys = {name: (home / "config" / name).read_bytes() for name in ("node_key.json", "priv_validator_key.json")}
    again = await run_handler(TaskType.GENERATE_IDENTITY, PARAMS)
    assert again == first
    assert {name: (home / "config" / name).read_bytes() for name in keys} == keys
    assert (home / "config" / "genesis.json").exists()


@pytest.mark.parametrize(
    ("params", "field", "complaint"),
    [
        ({"moniker": "m"}, "params.chainId", "required field is missing"),
        ({"chainId": "c"}, "params.moniker", "required field is missing"),
        ({"chainId": "", "moniker": "m"}, "params.chainId", "must not be empty"),
        ({"chainId": "sei test", "moniker": "m"}, "params.chainId", "may contain only"),
        ({"chainId": "sei/../1", "moniker": "m"}, "params.chainId", "may contain only"),
        ({"chainId": "c" * 51, "moniker": "m"}, "params.chainId", "at most 50"),
        ({"chainId": "c", "moniker": "   "}, "params.moniker", "must not be empty"),
        ({"chainId": "c", "moniker": " padded"}, "params.moniker", "leading or trailing whitespace"),
        ({"chainId": "c", "moniker": "m" * 71}, "params.moniker", "at most 70"),
        ({"chainId": "c", "moniker": "line\nbreak"}, "params.moniker", "control characters"),
        ({"chainId": "c", "moniker": "m", "extra": 1}, "params.extra", "unknown field"),
    ],
)
async def test_invalid_params_name_the_field_and_write_nothing(
    run_handler: HandlerRunner, home: Path, params: dict[str, Any], field: str, complaint: str
) -> None:
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.GENERATE_IDENTITY, params)
    assert field in caught.value.message
    assert complaint in caught.value.message
    assert snapshot(home) == {}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"genesis_time":"x","chain_id":"sei-1","app_state":{}}', "sei-1"),
        ('{"app_state":{"ibc":{"chain_id":"nested"}},"chain_id":"top"}', "top"),
        ('{"app_state":{"a":["chain_id",{"chain_id":"n"}]},\n "chain_id" : "spaced"}', "spaced"),
        ('{"note":"say \\"chain_id\\": \\"fake\\"","chain_id":"real"}', "real"),
        ('{"chain_id":"esc\\u0061ped"}', "escaped"),
    ],
    ids=["first", "nested-first", "arrays-and-spaces", "quoted-lookalike", "unicode-escape"],
)
def test_genesis_chain_id_reads_the_top_level_key_only(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "genesis.json"
    path.write_text(content)
    assert genesis_chain_id(path) == expected


def test_genesis_chain_id_finds_a_key_after_a_large_app_state(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    filler = json.dumps({"accounts": [{"address": f"sei1{i:060d}", "chain_id": "decoy"} for i in range(30000)]})
    path.write_text(f'{{"app_state":{filler},"chain_id":"late"}}')
    assert path.stat().st_size > 1 << 20
    assert genesis_chain_id(path) == "late"


@pytest.mark.parametrize(
    ("content", "complaint"), [("{", "not valid JSON"), ('{"app_state":{}}', "has no chain_id"), ("[]", "no chain_id")]
)
def test_genesis_chain_id_fails_naming_the_file(tmp_path: Path, content: str, complaint: str) -> None:
    path = tmp_path / "genesis.json"
    path.write_text(content)
    with pytest.raises(TaskError, match=complaint) as caught:
        genesis_chain_id(path)
    assert str(path) in caught.value.message


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 4, 1, 10, 20, 30, 500000, tzinfo=UTC), "2026-04-01T10:20:30.5Z"),
        (datetime(2026, 4, 1, 10, 20, 30, tzinfo=UTC), "2026-04-01T10:20:30Z"),
        (datetime(2026, 4, 1, 10, 20, 30, 123456, tzinfo=UTC), "2026-04-01T10:20:30.123456Z"),
    ],
)
def test_genesis_time_uses_gos_trimmed_rfc3339nano(moment: datetime, text: str) -> None:
    assert go_rfc3339nano(moment) == text

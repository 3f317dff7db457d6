"""The unified config model: override parsing, deprecated aliases, reading files, rules, rendering, migration.
(The model against sei-config's table, key by key and mode by mode: test_seiconfig_table.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from agent.chain.seiconfig import (
    Mode,
    SeiConfig,
    load_config,
    migrate,
    parse_overrides,
    registry,
    render_patches,
    validate,
    write_patches,
)
from agent.io.toml import read_toml
from agent.models import ParamsInvalid, TaskError
from tests.chain.sei_files import install_sample_config, snapshot

PEER = "ab" * 20 + "@10.0.0.1:26656"
HASH = "A" * 64


def config_with(mode: str, overrides: dict[str, Any]) -> SeiConfig:
    return SeiConfig.for_mode(mode).replace(parse_overrides(overrides, field="overrides"))


def test_modes_differ_where_sei_config_says() -> None:
    validator, full, archive, seed = (SeiConfig.for_mode(mode) for mode in ("validator", "full", "archive", "seed"))
    assert (validator.get("evm.http_enabled"), validator.get("storage.state_store.enable")) == (False, False)
    assert (validator.get("storage.pruning"), validator.get("api.grpc_web.enable")) == ("nothing", False)
    assert (full.get("storage.pruning"), full.get("storage.pruning_keep_recent")) == ("custom", "86400")
    assert full.get("chain.min_retain_blocks") == 100000
    assert (archive.get("storage.pruning"), archive.get("evm.max_trace_lookback_blocks")) == ("nothing", -1)
    assert (seed.get("network.p2p.allow_duplicate_ip"), seed.get("api.grpc.enable")) == (True, False)
    assert seed.get("network.p2p.listen_address") == "tcp://0.0.0.0:26656"  # a documented decision


@pytest.mark.parametrize(
    ("key", "given", "typed"),
    [
        ("mempool.size", "6000", 6000),
        ("mempool.size", 6000.0, 6000),
        ("mempool.size", "-1", -1),  # sei-config parses it; validation then says "must be >= 0"
        ("network.p2p.pex", "false", False),
        ("network.p2p.pex", "yes", True),
        ("network.p2p.persistent_peers", f"{PEER},{PEER}", f"{PEER},{PEER}"),  # a string in sei-config
        ("state_sync.rpc_servers", "a.example:26657, b.example:26657", ["a.example:26657", "b.example:26657"]),
        ("state_sync.rpc_servers", ["a.example:26657"], ["a.example:26657"]),
        ("state_sync.rpc_servers", "", []),
        ("consensus.unsafe_commit_timeout_override", "1500ms", "1500ms"),
        ("storage.pruning_keep_recent", 50000, "50000"),
        ("storage.snapshot_interval", "2000", 2000),
        ("mempool.drop_utilisation_threshold", "0.5", 0.5),
        ("evm.deny_list", ["debug_traceBlockByNumber"], ["debug_traceBlockByNumber"]),
        ("metrics.global_labels", [["chain", "pacific-1"]], [["chain", "pacific-1"]]),
    ],
)
def test_overrides_are_parsed_to_the_keys_type(key: str, given: Any, typed: Any) -> None:
    assert parse_overrides({key: given}, field="overrides") == {key: typed}


@pytest.mark.parametrize(
    ("old", "new", "value", "typed"),
    [
        ("network.p2p.laddr", "network.p2p.listen_address", "tcp://0.0.0.0:1", "tcp://0.0.0.0:1"),
        ("chain.minimum_gas_prices", "chain.min_gas_prices", "0.02usei", "0.02usei"),
        ("statesync.trust_height", "state_sync.trust_height", "9000", 9000),
        ("snapshot.interval", "storage.snapshot_interval", 2000, 2000),
        ("telemetry.prometheus", "metrics.enabled", "false", False),
    ],
)
def test_old_key_names_are_deprecated_aliases(old: str, new: str, value: Any, typed: Any) -> None:
    assert parse_overrides({old: value}, field="overrides") == {new: typed}


def test_a_key_and_its_alias_together_are_refused() -> None:
    with pytest.raises(ParamsInvalid, match=r"are the same key 'network\.p2p\.listen_address'"):
        parse_overrides({"network.p2p.laddr": "tcp://a:1", "network.p2p.listen_address": "tcp://b:1"}, field="o")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mempool.sise": "1"}, "overrides['mempool.sise']: unknown config key 'mempool.sise'"),
        ({"mempool.size": "lots"}, "overrides['mempool.size']: invalid value 'lots', expected integer"),
        ({"mempool.size": True}, "overrides['mempool.size']: invalid value True, expected integer"),
        ({"mempool.size": 30.5}, "invalid value 30.5, expected integer"),
        ({"storage.snapshot_interval": "-1"}, "invalid value '-1', expected non-negative integer"),
        ({"state_sync.rpc_servers": "a:1,,b:2"}, "empty entry"),
        ({"network.p2p.pex": "maybe"}, "expected boolean"),
        ({"consensus.unsafe_commit_timeout_override": "5 seconds"}, "expected Go duration"),
        ({"logging.level": ["debug"]}, "overrides['logging.level']: invalid value ['debug']"),
        ({"mode": "observer"}, "unknown mode 'observer'"),
    ],
)
def test_bad_overrides_are_refused_naming_key_and_value(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsInvalid) as caught:
        parse_overrides(overrides, field="overrides")
    assert message in caught.value.message


def test_an_unknown_key_suggests_the_closest_known_keys() -> None:
    with pytest.raises(ParamsInvalid) as caught:
        parse_overrides({"network.p2p.persistent_peer": PEER}, field="overrides")
    assert "network.p2p.persistent_peers" in caught.value.hint


@pytest.mark.parametrize("underscores", [False, True], ids=["hyphen-keys", "underscore-keys"])
def test_reading_the_files_under_either_spelling(home: Path, underscores: bool) -> None:
    install_sample_config(home, underscores=underscores)
    loaded = load_config(home)
    config = loaded.config
    assert loaded.diagnostics == []
    assert config.mode is Mode.FULL
    assert config.get("mempool.size") == 1000
    assert config.get("network.rpc.listen_address") == "tcp://127.0.0.1:26657"
    assert config.get("network.p2p.persistent_peers") == ""
    assert config.get("storage.pruning_keep_recent") == "0"
    assert config.get("state_sync.fetchers") == 4
    assert config.get("consensus.unsafe_commit_timeout_override") == "2s"
    assert config.get("evm.http_port") == 8545
    assert {"mempool.size", "storage.state_store.keep_recent", "evm.deny_list"} <= loaded.present


@pytest.mark.parametrize(
    ("sei", "tendermint", "mode"),
    [
        ({"mode": "archive", "version": 2}, "full", Mode.ARCHIVE),
        ({"mode": "full", "version": 1}, "full", Mode.FULL),  # pruning "nothing" no longer means archive
        ({}, "seed", Mode.SEED),
        ({"mode": "bogus"}, "validator", Mode.VALIDATOR),
    ],
)
def test_the_mode_is_sei_mode_then_config_toml_mode(
    home: Path, sei: dict[str, Any], tendermint: str, mode: Mode
) -> None:
    install_sample_config(home)
    patches: dict[str, dict[str, Any]] = {"app.toml": {"pruning": "nothing"}, "config.toml": {"mode": tendermint}}
    if sei:
        patches["app.toml"]["sei"] = sei
    write_patches(home, patches)
    loaded = load_config(home).config
    assert loaded.mode is mode
    assert loaded.version == sei.get("version", 2)


@pytest.mark.parametrize(
    ("file", "patch", "field", "text"),
    [
        ("config.toml", {"mempool": {"size": "many"}}, "mempool.size", "config.toml [mempool.size] = 'many'"),
        ("config.toml", {"mempool": {"size": ""}}, "mempool.size", "empty string for a int field"),
        ("app.toml", {"evm": {"http_port": 0}}, "evm.http_port", "must be > 0 when HTTP is enabled"),
        ("config.toml", {"log-format": "text2"}, "logging.format", 'unknown format "text2"'),
    ],
)
def test_a_bad_value_on_disk_is_an_error_diagnostic_naming_it(
    home: Path, file: str, patch: dict[str, Any], field: str, text: str
) -> None:
    install_sample_config(home)
    write_patches(home, {file: patch})
    loaded = load_config(home)
    errors = [item for item in validate(loaded.config, extra=loaded.diagnostics).errors if item.field == field]
    assert errors and text in errors[0].message


def test_reading_a_home_without_app_toml_names_the_missing_file(home: Path) -> None:
    install_sample_config(home)
    (home / "config" / "app.toml").unlink()
    with pytest.raises(TaskError) as caught:
        load_config(home)
    assert caught.value.reason == "ConfigMissing"
    assert "config/app.toml not found" in caught.value.message


@pytest.mark.parametrize(
    ("mode", "overrides", "severity", "field", "message"),
    [
        ("full", {"chain.min_gas_prices": ""}, "ERROR", "chain.min_gas_prices", "min_gas_prices must be set"),
        ("full", {"evm.ws_port": 8545}, "ERROR", "evm.ws_port", "port 8545 is already used by evm.http_port"),
        ("full", {"api.rest.address": "tcp://0.0.0.0:26657"}, "ERROR", "api.rest.address", "port 26657"),
        (
            "full",
            {"state_sync.enable": True, "state_sync.rpc_servers": "a:1"},
            "ERROR",
            "state_sync.rpc_servers",
            "at least two RPC servers are required when not using P2P",
        ),
        ("full", {"state_sync.enable": True}, "ERROR", "state_sync.trust_hash", "must be set when state sync"),
        (
            "full",
            {"state_sync.enable": True, "state_sync.trust_hash": "abc"},
            "ERROR",
            "state_sync.trust_hash",
            "invalid hex: encoding/hex: odd length hex string",
        ),
        ("seed", {"storage.snapshot_interval": 2000}, "ERROR", "storage", "cannot enable snapshots with 'everything'"),
        ("seed", {"network.p2p.pex": False}, "WARNING", "network.p2p.pex", "enable pex"),
        ("validator", {"network.rpc.unsafe": True}, "WARNING", "network.rpc.unsafe", "dial or drop peers"),
        ("validator", {"evm.http_enabled": True}, "WARNING", "evm", "EVM RPC is enabled on a validator node"),
        ("full", {"storage.state_store.backend": "leveldb"}, "WARNING", "storage.state_store.backend", "unusual"),
        ("full", {"chain.chain_id": "pacific-1"}, "WARNING", "chain.chain_id", "written to neither"),
        ("full", {"version": 3}, "ERROR", "version", "config version 3 is newer than supported version 2"),
    ],
)
def test_validation_rules(mode: str, overrides: dict[str, Any], severity: str, field: str, message: str) -> None:
    report = validate(config_with(mode, overrides))
    found = [item for item in report.diagnostics if (item.severity, item.field) == (severity, field)]
    assert found and message in found[0].message, report.diagnostics
    assert report.valid is (severity != "ERROR")


@pytest.mark.parametrize("value", ["plain", "text", "json"])
def test_every_log_format_seid_accepts_is_valid(value: str) -> None:
    assert validate(config_with("full", {"logging.format": value})).valid


def test_a_fully_configured_state_sync_validates() -> None:
    config = config_with(
        "full",
        {
            "state_sync.enable": True,
            "state_sync.rpc_servers": "a.example:26657,b.example:26657",
            "state_sync.trust_height": 9000,
            "state_sync.trust_hash": HASH,
        },
    )
    assert validate(config).valid


def test_diagnostics_render_as_the_json_array_the_controller_parses() -> None:
    report = validate(config_with("archive", {"storage.pruning": "sometimes"}))
    assert report.errors_json() == (
        '[{"severity":"ERROR","field":"storage.pruning","message":'
        '"unknown pruning strategy \\"sometimes\\"; valid: default, nothing, everything, custom"}]'
    )


def test_rendering_what_was_read_changes_no_byte(home: Path) -> None:
    install_sample_config(home)
    before = snapshot(home)
    loaded = load_config(home)
    assert render_patches(loaded.config, home, keys=loaded.present, include_meta=False) == {}
    assert write_patches(home, render_patches(loaded.config, home, keys=loaded.present, include_meta=False)) == {}
    assert snapshot(home) == before


def test_rendering_keeps_comments_unmodelled_keys_and_string_typed_numbers(home: Path) -> None:
    install_sample_config(home)
    config = load_config(home).config.replace(
        parse_overrides({"storage.pruning_interval": 50, "mempool.size": 7}, field="o")
    )
    changed = write_patches(home, render_patches(config, home, keys=["storage.pruning_interval", "mempool.size"]))
    assert changed == {"config.toml": True, "app.toml": True}
    app = (home / "config" / "app.toml").read_text()
    assert 'pruning-interval = "50"' in app
    assert "# default | nothing | everything | custom" in app
    assert 'pruning-keep-every = "0"' in app
    config_text = (home / "config" / "config.toml").read_text()
    assert "size = 7  # operator's own note" in config_text
    assert 'namespace = "tendermint"' in config_text


def test_new_keys_take_the_files_spelling(home: Path) -> None:
    install_sample_config(home, underscores=True)
    config = load_config(home).config.replace(parse_overrides({"network.p2p.persistent_peers": PEER}, field="o"))
    write_patches(home, render_patches(config, home))
    document = read_toml(home / "config" / "config.toml")
    assert document["p2p"]["persistent_peers"] == PEER
    assert "persistent-peers" not in document["p2p"]


def test_a_file_that_is_not_toml_stops_the_write_of_both(home: Path) -> None:
    install_sample_config(home)
    (home / "config" / "app.toml").write_text("pruning = [unclosed\n")
    before = snapshot(home)
    config = config_with("validator", {"network.p2p.persistent_peers": PEER})
    with pytest.raises(TaskError, match=r"config/app\.toml is not valid TOML"):
        write_patches(home, render_patches(config, home))
    assert snapshot(home) == before


def test_rendering_into_an_empty_home_creates_both_files(home: Path) -> None:
    config = config_with("seed", {"network.p2p.persistent_peers": PEER})
    assert write_patches(home, render_patches(config, home)) == {"config.toml": True, "app.toml": True}
    document = tomlkit.parse((home / "config" / "config.toml").read_text())
    assert document["mode"] == "seed"
    assert document["p2p"]["persistent-peers"] == PEER
    assert read_toml(home / "config" / "app.toml")["sei"] == {"mode": "seed", "version": 2}
    reread = load_config(home)
    assert reread.config == config


@pytest.mark.parametrize(
    ("before", "after"),
    [("cosmos_only", "memiavl_only"), ("dual_write", "migrate_evm"), ("split_write", "evm_migrated")],
)
def test_version_1_migrates_to_2_renaming_the_write_modes(before: str, after: str) -> None:
    old = SeiConfig.for_mode("full").replace(
        {"storage.state_commit.write_mode": before, "storage.state_store.write_mode": before}, version=1
    )
    migrated, steps = migrate(old, 2)
    assert (migrated.version, len(steps)) == (2, 1)
    assert migrated.get("storage.state_commit.write_mode") == migrated.get("storage.state_store.write_mode") == after
    assert migrate(migrated, 2) == (migrated, [])


def test_every_key_is_documented_with_its_file_and_toml_key() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "config-model.md").read_text()
    missing = [
        key
        for key, entry in registry().items()
        if f"| `{key}` |" not in text or any(f"`{placement.toml}`" not in text for placement in entry.placements)
    ]
    assert missing == []


def test_config_reload_docs_list_exactly_the_hot_keys() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "tasks" / "config-reload.md").read_text()
    listed = text.split("Hot-reloadable keys:", 1)[1].split("(the", 1)[0]
    assert sorted(re.findall(r"`([a-z0-9_.]+)`", listed)) == sorted(
        key for key, entry in registry().items() if entry.hot
    )

"""The unified config model: registry, per-mode defaults, override parsing, reading files, rules, rendering."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from agent.chain.seiconfig import (
    MODE_DEFAULTS,
    Mode,
    SeiConfig,
    load_config,
    parse_overrides,
    registry,
    render_patches,
    validate,
    with_overrides,
    write_patches,
)
from agent.io.toml import read_toml
from agent.models import ParamsInvalid, TaskError
from tests.chain.sei_files import install_sample_config, snapshot

PEER = "ab" * 20 + "@10.0.0.1:26656"
HASH = "A" * 64


def config_with(mode: str, overrides: dict[str, Any]) -> SeiConfig:
    return with_overrides(SeiConfig.for_mode(mode), parse_overrides(overrides, field="overrides"))


def test_every_key_maps_to_one_distinct_toml_key_of_a_known_file() -> None:
    locations = Counter((entry.file, entry.toml_key) for entry in registry().values())
    assert {file for file, _ in locations} == {"config.toml", "app.toml"}
    assert [location for location, count in locations.items() if count > 1] == []


def test_the_keys_operators_touch_are_in_the_registry() -> None:
    wanted = {
        "network.p2p.persistent_peers": ("config.toml", "p2p.persistent-peers"),
        "storage.pruning": ("app.toml", "pruning"),
        "evm.http_port": ("app.toml", "evm.http_port"),
        "logging.level": ("config.toml", "log-level"),
        "mempool.size": ("config.toml", "mempool.size"),
        "statesync.trust_hash": ("config.toml", "statesync.trust-hash"),
        "storage.state_store.keep_recent": ("app.toml", "state-store.ss-keep-recent"),
    }
    assert {key: (registry()[key].file, registry()[key].toml_key) for key in wanted} == wanted


@pytest.mark.parametrize(
    ("key", "hot"),
    [
        ("logging.level", True),
        ("mempool.size", True),
        ("network.rpc.cors_allowed_origins", True),
        ("evm.max_log_no_block", True),
        ("evm.http_port", False),
        ("storage.pruning", False),
        ("network.p2p.laddr", False),
    ],
)
def test_hot_reloadable_keys_are_marked(key: str, hot: bool) -> None:
    assert registry()[key].hot is hot


@pytest.mark.parametrize("mode", list(Mode))
def test_each_modes_defaults_pass_validation(mode: Mode) -> None:
    config = config_with(mode, {"network.p2p.persistent_peers": PEER, "chain.minimum_gas_prices": "0.02usei"})
    report = validate(config)
    assert report.valid, report.diagnostics
    assert report.mode == mode


@pytest.mark.parametrize("mode", list(Mode))
def test_each_mode_applies_its_own_defaults(mode: Mode) -> None:
    config = SeiConfig.for_mode(mode)
    for key, value in MODE_DEFAULTS[mode].items():
        current: Any = config
        for part in key.split("."):
            current = getattr(current, part)
        assert current == value, key


def test_modes_differ_where_it_matters() -> None:
    validator, archive, seed = (SeiConfig.for_mode(mode) for mode in ("validator", "archive", "seed"))
    assert (validator.evm.http_enabled, validator.storage.state_store.enable) == (False, False)
    assert (archive.storage.pruning, archive.storage.state_store.keep_recent) == ("nothing", 0)
    assert (seed.network.p2p.pex, seed.grpc.enable) == (True, False)


@pytest.mark.parametrize(
    ("key", "given", "typed"),
    [
        ("mempool.size", "6000", 6000),
        ("mempool.size", 6000.0, 6000),
        ("network.p2p.pex", "false", False),
        (
            "network.p2p.persistent_peers",
            f"{PEER}, {'CD' * 20}@node-1.sei:26656",
            [PEER, "cd" * 20 + "@node-1.sei:26656"],
        ),
        ("network.p2p.persistent_peers", "", []),
        (
            "statesync.rpc_servers",
            ["a.example:26657", "https://b.example:443"],
            ["a.example:26657", "https://b.example:443"],
        ),
        ("consensus.timeout_commit", "1500ms", "1500ms"),
        ("evm.deny_list", ["debug_traceBlockByNumber"], ["debug_traceBlockByNumber"]),
    ],
)
def test_overrides_are_parsed_to_the_keys_type(key: str, given: Any, typed: Any) -> None:
    assert parse_overrides({key: given}, field="overrides") == {key: typed}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mempool.sise": "1"}, "overrides['mempool.sise']: unknown config key 'mempool.sise'"),
        ({"mempool.size": "lots"}, "overrides['mempool.size']: invalid value 'lots', expected integer"),
        ({"mempool.size": True}, "overrides['mempool.size']: invalid value True, expected integer"),
        ({"mempool.size": 30.5}, "invalid value 30.5, expected integer"),
        ({"mempool.size": "-1"}, "invalid value '-1', expected integer"),
        ({"evm.http_port": 70000}, "overrides['evm.http_port']: invalid value 70000"),
        ({"network.p2p.persistent_peers": "10.0.0.1:26656"}, "is not <node id>@<host>:<port>"),
        ({"network.p2p.persistent_peers": "abc@10.0.0.1:26656"}, "node ID 'abc' is not 40 hexadecimal characters"),
        ({"network.p2p.persistent_peers": f"{'ab' * 20}@host:0"}, "port '0' is not a number in 1-65535"),
        ({"storage.pruning": "sometimes"}, "expected one of 'default', 'nothing', 'everything', 'custom'"),
        ({"consensus.timeout_commit": "5 seconds"}, "expected Go duration"),
        ({"logging.level": 3}, "overrides['logging.level']: invalid value 3"),
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
    assert config.mempool.size == 1000
    assert config.network.rpc.laddr == "tcp://127.0.0.1:26657"
    assert config.network.p2p.persistent_peers == []
    assert config.storage.pruning_keep_recent == 0  # written as the string "0" by the Cosmos template
    assert config.statesync.fetchers == 4
    assert config.consensus.timeout_commit == "2s"
    assert config.evm.http_port == 8545
    assert {"mempool.size", "storage.state_store.keep_recent", "evm.deny_list"} <= loaded.present


def test_a_full_node_that_prunes_nothing_reads_as_archive(home: Path) -> None:
    install_sample_config(home)
    write_patches(home, {"app.toml": {"pruning": "nothing"}})
    assert load_config(home).config.mode is Mode.ARCHIVE


@pytest.mark.parametrize(
    ("file", "patch", "field", "text"),
    [
        ("config.toml", {"mempool": {"size": "many"}}, "mempool.size", "config.toml [mempool.size] = 'many'"),
        ("config.toml", {"p2p": {"persistent-peers": "not-a-peer"}}, "network.p2p.persistent_peers", "not-a-peer"),
        ("app.toml", {"evm": {"http_port": 0}}, "evm.http_port", "app.toml [evm.http_port] = 0"),
        ("config.toml", {"mode": "observer"}, "mode", "'observer' is not validator/full/seed"),
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
    ("mode", "overrides", "severity", "field"),
    [
        ("archive", {"storage.pruning": "default"}, "ERROR", "storage.pruning"),
        ("archive", {"storage.state_store.keep_recent": 1000}, "ERROR", "storage.state_store.keep_recent"),
        ("full", {"evm.ws_port": 8545}, "ERROR", "evm.ws_port"),
        ("full", {"api.address": "tcp://0.0.0.0:26657"}, "ERROR", "api.address"),
        ("full", {"storage.pruning": "custom"}, "ERROR", "storage.pruning_keep_recent"),
        ("full", {"statesync.enable": True, "statesync.rpc_servers": "a:1"}, "ERROR", "statesync.rpc_servers"),
        ("full", {"statesync.enable": True}, "ERROR", "statesync.trust_hash"),
        ("seed", {"statesync.enable": True}, "ERROR", "statesync.enable"),
        ("seed", {"network.p2p.pex": False}, "ERROR", "network.p2p.pex"),
        ("validator", {"network.rpc.unsafe": True}, "ERROR", "network.rpc.unsafe"),
        ("validator", {"evm.http_enabled": True}, "WARNING", "evm.http_enabled"),
        ("full", {"network.p2p.persistent_peers": ""}, "WARNING", "network.p2p.persistent_peers"),
        ("full", {"network.p2p.persistent_peers": [PEER, PEER]}, "WARNING", "network.p2p.persistent_peers"),
        ("full", {"storage.state_commit.enable": False}, "WARNING", "storage.state_commit.enable"),
        ("archive", {}, "INFO", "mode"),
    ],
)
def test_validation_rules(mode: str, overrides: dict[str, Any], severity: str, field: str) -> None:
    config = config_with(mode, {"network.p2p.persistent_peers": PEER, **overrides})
    report = validate(config)
    assert (severity, field) in {(item.severity, item.field) for item in report.diagnostics}
    assert report.valid is (severity != "ERROR")


def test_a_fully_configured_state_sync_validates() -> None:
    config = config_with(
        "full",
        {
            "statesync.enable": True,
            "statesync.rpc_servers": "a.example:26657,b.example:26657",
            "statesync.trust_height": 9000,
            "statesync.trust_hash": HASH,
        },
    )
    assert validate(config).valid


def test_errors_render_as_the_json_array_the_controller_parses() -> None:
    report = validate(config_with("archive", {"storage.pruning": "default"}))
    assert report.errors_json().startswith('[{"severity":"ERROR","field":"storage.pruning","message":')


def test_rendering_what_was_read_changes_no_byte(home: Path) -> None:
    install_sample_config(home)
    before = snapshot(home)
    loaded = load_config(home)
    assert render_patches(loaded.config, home, keys=loaded.present) == {}
    assert write_patches(home, render_patches(loaded.config, home, keys=loaded.present)) == {}
    assert snapshot(home) == before


def test_rendering_keeps_comments_unmodelled_keys_and_string_typed_numbers(home: Path) -> None:
    install_sample_config(home)
    config = with_overrides(
        load_config(home).config, parse_overrides({"storage.pruning_interval": 50, "mempool.size": 7}, field="o")
    )
    changed = write_patches(home, render_patches(config, home))
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
    config = with_overrides(
        load_config(home).config, parse_overrides({"network.p2p.persistent_peers": PEER}, field="o")
    )
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
    reread = load_config(home)
    assert reread.config == config


def test_every_key_is_documented_with_its_file_and_toml_key() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "config-model.md").read_text()
    missing = [
        key for key, entry in registry().items() if f"| `{key}` |" not in text or f"`{entry.toml_key}`" not in text
    ]
    assert missing == []


def test_config_reload_docs_list_exactly_the_hot_keys() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "tasks" / "config-reload.md").read_text()
    listed = text.split("Hot-reloadable keys:", 1)[1].split("(the", 1)[0]
    assert sorted(re.findall(r"`([a-z_.]+)`", listed)) == sorted(key for key, entry in registry().items() if entry.hot)

"""config-apply, config-validate and config-reload through their handlers, on real files in a temp home."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.chain.seiconfig import Mode, read_key, registry
from agent.io.toml import read_toml
from agent.models import ParamsInvalid, TaskError, TaskType
from tests.chain.sei_files import install_sample_config, snapshot
from tests.fixtures.common import HandlerRunner

PEER = "ab" * 20 + "@10.0.0.1:26656"


@pytest.fixture
def sei_home(home: Path) -> Path:
    install_sample_config(home)
    return home


def files(home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return read_toml(home / "config" / "config.toml"), read_toml(home / "config" / "app.toml")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "tendermint_mode", "pruning", "evm_http"),
    [
        ("validator", "validator", "nothing", False),
        ("full", "full", "custom", True),
        ("seed", "seed", "everything", False),
        ("archive", "full", "nothing", True),
    ],
)
async def test_config_apply_writes_the_modes_defaults_and_the_overrides(
    sei_home: Path, run_handler: HandlerRunner, mode: str, tendermint_mode: str, pruning: str, evm_http: bool
) -> None:
    result = await run_handler(
        TaskType.CONFIG_APPLY,
        {"mode": mode, "overrides": {"network.p2p.persistent_peers": PEER, "chain.minimum_gas_prices": "0.02usei"}},
    )
    config, app = files(sei_home)
    assert config["mode"] == tendermint_mode
    assert config["p2p"]["persistent-peers"] == PEER
    assert app["pruning"] == pruning
    assert app["evm"]["http_enabled"] is evm_http
    assert result is not None
    assert result["mode"] == mode
    assert result["overrides"] == ["chain.minimum_gas_prices", "network.p2p.persistent_peers"]
    assert all(item["severity"] != "ERROR" for item in result["diagnostics"])


async def test_config_apply_keeps_comments_and_keys_outside_the_model(
    sei_home: Path, run_handler: HandlerRunner
) -> None:
    await run_handler(TaskType.CONFIG_APPLY, {"mode": "full", "overrides": {"mempool.size": 8000}})
    text = (sei_home / "config" / "config.toml").read_text()
    assert "size = 8000  # operator's own note" in text
    assert "# Comma separated list of nodes to keep persistent connections to" in text
    assert 'proxy-app = "tcp://127.0.0.1:26658"' in text
    assert 'wal-file = "data/cs.wal/wal"' in text


async def test_config_apply_into_a_fresh_home_creates_both_files(home: Path, run_handler: HandlerRunner) -> None:
    result = await run_handler(TaskType.CONFIG_APPLY, {"mode": "full", "overrides": {"evm.http_port": "8645"}})
    config, app = files(home)
    assert config["rpc"]["laddr"] == "tcp://0.0.0.0:26657"
    assert app["evm"]["http_port"] == 8645
    assert result is not None and result["changed"] == {"config.toml": True, "app.toml": True}


async def test_config_apply_twice_changes_nothing_the_second_time(sei_home: Path, run_handler: HandlerRunner) -> None:
    params = {"mode": "validator", "overrides": {"network.p2p.persistent_peers": PEER}}
    await run_handler(TaskType.CONFIG_APPLY, params)
    before = snapshot(sei_home)
    result = await run_handler(TaskType.CONFIG_APPLY, params)
    assert result is not None and result["changed"] == {}
    assert snapshot(sei_home) == before


async def test_incremental_apply_changes_only_the_overrides(sei_home: Path, run_handler: HandlerRunner) -> None:
    before_config, before_app = files(sei_home)
    result = await run_handler(
        TaskType.CONFIG_APPLY, {"incremental": True, "overrides": {"storage.pruning_interval": 20}}
    )
    config, app = files(sei_home)
    assert app.pop("pruning-interval") == "20"  # the file wrote it as a string, so it stays one
    assert before_app.pop("pruning-interval") == "10"
    assert (config, app) == (before_config, before_app)
    assert result is not None and result["changed"] == {"app.toml": True}


async def test_incremental_apply_can_switch_the_mode(sei_home: Path, run_handler: HandlerRunner) -> None:
    await run_handler(TaskType.CONFIG_APPLY, {"incremental": True, "mode": "validator", "overrides": {}})
    config, app = files(sei_home)
    assert config["mode"] == "validator"
    assert app["evm"]["http_enabled"] is True  # incremental: the file's value wins over the new mode's default


async def test_incremental_apply_needs_both_files(home: Path, run_handler: HandlerRunner) -> None:
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.CONFIG_APPLY, {"incremental": True, "overrides": {"mempool.size": 1}})
    assert caught.value.reason == "ConfigMissing"
    assert snapshot(home) == {"config.toml": None, "app.toml": None}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "full", "overrides": {"mempool.sise": 1}}, "unknown config key 'mempool.sise'"),
        ({"mode": "full", "overrides": {"mempool.size": "big"}}, "overrides['mempool.size']: invalid value 'big'"),
        ({"mode": "full", "overrides": {"evm.http_port": True}}, "overrides['evm.http_port']: invalid value True"),
        ({"mode": "full", "overrides": {"mode": "observer"}}, "overrides['mode']: unknown mode 'observer'"),
        (
            {"mode": "full", "overrides": {"network.p2p.laddr": "a", "network.p2p.listen_address": "b"}},
            "are the same key 'network.p2p.listen_address'",
        ),
        ({"mode": "observer"}, "params.mode"),
        ({"overrides": {"mempool.size": 1}}, "mode is required unless incremental is true"),
        ({"mode": "full", "overrides": {"Mempool.Size": 1}}, "'Mempool.Size' is not a dotted key"),
        ({"mode": "full", "overides": {}}, "params.overides: unknown field"),
    ],
)
async def test_config_apply_refuses_bad_input_by_name_and_touches_nothing(
    sei_home: Path, run_handler: HandlerRunner, params: dict[str, Any], message: str
) -> None:
    before = snapshot(sei_home)
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.CONFIG_APPLY, params)
    assert message in caught.value.message
    assert snapshot(sei_home) == before


async def test_config_apply_refuses_an_invalid_config_and_writes_nothing(
    sei_home: Path, run_handler: HandlerRunner
) -> None:
    before = snapshot(sei_home)
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.CONFIG_APPLY, {"mode": "archive", "overrides": {"storage.pruning": "sometimes"}})
    assert caught.value.reason == "ConfigInvalid"
    prefix = "config validation failed: "
    assert caught.value.message.startswith(prefix)
    errors = json.loads(caught.value.message.removeprefix(prefix))
    assert {"severity": "ERROR", "field": "storage.pruning"}.items() <= errors[0].items()
    assert snapshot(sei_home) == before


async def test_config_validate_returns_the_diagnostics(sei_home: Path, run_handler: HandlerRunner) -> None:
    result = await run_handler(TaskType.CONFIG_VALIDATE)
    assert result is not None
    assert (result["valid"], result["mode"], result["version"], result["diagnostics"]) == (True, "full", 2, [])


@pytest.mark.parametrize(
    ("file", "broken", "field"),
    [
        ("config.toml", ("size = 1000  # operator", 'size = "x"  # operator'), "mempool.size"),
        ("app.toml", ("http_port = 8545", "http_port = 26656"), "evm.http_port"),
        ("config.toml", ("enable = false\nuse-p2p", "enable = true\nuse-p2p"), "state_sync.rpc_servers"),
    ],
)
async def test_config_validate_fails_on_an_error_and_names_the_field(
    sei_home: Path, run_handler: HandlerRunner, file: str, broken: tuple[str, str], field: str
) -> None:
    path = sei_home / "config" / file
    path.write_text(path.read_text().replace(*broken))
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.CONFIG_VALIDATE)
    assert caught.value.reason == "ConfigInvalid"
    errors = json.loads(caught.value.message.removeprefix("config validation failed: "))
    assert field in {item["field"] for item in errors}


async def test_config_validate_names_a_missing_file(home: Path, run_handler: HandlerRunner) -> None:
    with pytest.raises(TaskError, match=r"config/config.toml not found"):
        await run_handler(TaskType.CONFIG_VALIDATE)


async def test_config_reload_changes_only_the_hot_keys_given(sei_home: Path, run_handler: HandlerRunner) -> None:
    before = (sei_home / "config" / "config.toml").read_text()
    result = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"logging.level": "error", "mempool.size": "2000"}})
    after = (sei_home / "config" / "config.toml").read_text()
    expected = before.replace('log-level = "info"', 'log-level = "error"').replace("size = 1000 ", "size = 2000 ")
    assert after == expected
    assert result is not None
    assert (result["fields"], result["changed"]) == (["logging.level", "mempool.size"], {"config.toml": True})
    assert result["restartRequired"] is True  # nothing makes a running seid re-read these keys
    assert result["appliedLive"] == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"evm.http_port": 9000, "storage.pruning": "nothing", "mempool.size": 1},
            "['evm.http_port', 'storage.pruning']",
        ),
        ({"logging.levle": "error"}, "unknown config key 'logging.levle'"),
        ({"mempool.size": "lots"}, "fields['mempool.size']: invalid value 'lots'"),
        ({}, "params.fields"),
    ],
)
async def test_config_reload_refuses_by_name_and_touches_nothing(
    sei_home: Path, run_handler: HandlerRunner, fields: dict[str, Any], message: str
) -> None:
    before = snapshot(sei_home)
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.CONFIG_RELOAD, {"fields": fields})
    assert message in caught.value.message
    assert snapshot(sei_home) == before


async def test_config_reload_of_a_non_hot_key_says_a_restart_is_needed(
    sei_home: Path, run_handler: HandlerRunner
) -> None:
    with pytest.raises(ParamsInvalid, match="not hot-reloadable and require a restart"):
        await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"network.p2p.laddr": "tcp://0.0.0.0:1"}})


ALL_KEYS = sorted(registry())


@pytest.mark.parametrize("key", ALL_KEYS)
async def test_config_reload_refuses_exactly_the_keys_that_need_a_restart(
    sei_home: Path, run_handler: HandlerRunner, key: str
) -> None:
    entry = registry()[key]
    value = entry.default(Mode.FULL)
    if value is None:
        value = {"string": "x", "[]string": [], "other": []}.get(entry.spec.type, 1)
    if not entry.hot:
        before = snapshot(sei_home)
        with pytest.raises(ParamsInvalid, match="not hot-reloadable and require a restart"):
            await run_handler(TaskType.CONFIG_RELOAD, {"fields": {key: value}})
        assert snapshot(sei_home) == before
        return
    result = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {key: value}})
    assert result is not None
    assert (result["fields"], result["restartRequired"]) == ([key], True)
    assert read_key(sei_home, key) == value


def test_the_hot_keys_are_sei_configs_nine() -> None:
    assert sorted(key for key, entry in registry().items() if entry.hot) == [
        "evm.cors_origins",
        "evm.deny_list",
        "logging.level",
        "mempool.size",
        "network.p2p.persistent_peers",
        "network.rpc.cors_allowed_origins",
        "network.rpc.lag_threshold",
        "network.rpc.listen_address",
        "network.rpc.max_open_connections",
    ]

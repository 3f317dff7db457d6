"""config-patch through the handler runner: params validated first, files patched in place or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomlkit

from agent.models import ParamsInvalid, TaskError, TaskType
from tests.fixtures.common import HandlerRunner

CONFIG_TOML = """\
# This is a TOML config file.
moniker = "node-0" # name

[p2p]
# Comma separated list of nodes to keep persistent connections to
persistent-peers = ""
max-connections = 64

[mempool]
size = 5000
"""

APP_TOML = """\
# Cosmos app.toml
minimum-gas-prices = "0.01usei"

[api]
enable = false # REST
"""


@pytest.fixture
def config_dir(home: Path) -> Path:
    (home / "config" / "config.toml").write_text(CONFIG_TOML)
    (home / "config" / "app.toml").write_text(APP_TOML)
    return home / "config"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()}


async def test_patches_several_files_changing_only_the_patched_lines(
    run_handler: HandlerRunner, config_dir: Path
) -> None:
    result = await run_handler(
        TaskType.CONFIG_PATCH,
        {
            "files": {
                "config.toml": {"p2p": {"persistent-peers": "abc@10.0.0.1:26656"}, "mempool": {"size": 10000}},
                "app.toml": {"api": {"enable": True}},
            }
        },
    )
    assert result == {"changed": ["config.toml", "app.toml"], "unchanged": [], "diagnostics": []}
    assert (config_dir / "config.toml").read_text() == CONFIG_TOML.replace(
        'persistent-peers = ""', 'persistent-peers = "abc@10.0.0.1:26656"'
    ).replace("size = 5000", "size = 10000")
    assert (config_dir / "app.toml").read_text() == APP_TOML.replace("enable = false # REST", "enable = true # REST")


async def test_integers_from_params_stay_toml_integers(run_handler: HandlerRunner, config_dir: Path) -> None:
    await run_handler(TaskType.CONFIG_PATCH, {"files": {"config.toml": {"mempool": {"size": 7, "ttl": 0}}}})
    mempool = tomlkit.parse((config_dir / "config.toml").read_text()).unwrap()["mempool"]
    assert mempool == {"size": 7, "ttl": 0}
    assert all(type(value) is int for value in mempool.values())
    assert "7.0" not in (config_dir / "config.toml").read_text()


async def test_null_deletes_and_new_nested_tables_are_created(run_handler: HandlerRunner, config_dir: Path) -> None:
    await run_handler(
        TaskType.CONFIG_PATCH,
        {"files": {"config.toml": {"p2p": {"max-connections": None}, "statesync": {"enable": True, "rpc": {"a": 1}}}}},
    )
    parsed = tomlkit.parse((config_dir / "config.toml").read_text()).unwrap()
    assert "max-connections" not in parsed["p2p"]
    assert parsed["statesync"] == {"enable": True, "rpc": {"a": 1}}


async def test_second_identical_run_reports_unchanged_and_writes_nothing(
    run_handler: HandlerRunner, config_dir: Path
) -> None:
    params = {"files": {"config.toml": {"mempool": {"size": 1}}}}
    await run_handler(TaskType.CONFIG_PATCH, params)
    inode = (config_dir / "config.toml").stat().st_ino
    assert await run_handler(TaskType.CONFIG_PATCH, params) == {
        "changed": [],
        "unchanged": ["config.toml"],
        "diagnostics": [],
    }
    assert (config_dir / "config.toml").stat().st_ino == inode


async def test_missing_file_is_created_with_mode_0644(run_handler: HandlerRunner, config_dir: Path) -> None:
    result = await run_handler(TaskType.CONFIG_PATCH, {"files": {"client.toml": {"chain-id": "sei-test"}}})
    assert result == {"changed": ["client.toml"], "unchanged": [], "diagnostics": []}
    assert (config_dir / "client.toml").read_text() == 'chain-id = "sei-test"\n'
    assert (config_dir / "client.toml").stat().st_mode & 0o777 == 0o644


async def test_existing_mode_is_kept(run_handler: HandlerRunner, config_dir: Path) -> None:
    (config_dir / "app.toml").chmod(0o600)
    await run_handler(TaskType.CONFIG_PATCH, {"files": {"app.toml": {"api": {"enable": True}}}})
    assert (config_dir / "app.toml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        ({}, "at least one file is required"),
        ({"genesis.json": {"a": 1}}, "only .toml files"),
        ({"node_key.json": {"priv_key": None}}, "only .toml files"),
        ({".toml": {"a": 1}}, "only .toml files"),
        ({"config.toml": "not a map"}, "params.files.config.toml"),
        ({"config.toml": {"a": 1}, "extra": {}}, "only .toml files"),
    ],
    ids=["no-files", "json", "key-file", "bare-suffix", "patch-not-object", "one-bad-name"],
)
async def test_params_are_refused_before_the_handler_runs(
    run_handler: HandlerRunner, config_dir: Path, files: Any, complaint: str
) -> None:
    before = snapshot(config_dir)
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.CONFIG_PATCH, {"files": files})
    assert complaint in caught.value.message
    assert snapshot(config_dir) == before


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("../x.toml", "escapes config/"),
        ("../../etc/x.toml", "escapes config/"),
        ("/etc/x.toml", "escapes config/"),
        ("outside/x.toml", "through a symlink"),
        ("linked.toml", "through a symlink"),
    ],
)
async def test_names_escaping_config_are_refused_and_nothing_is_written(
    run_handler: HandlerRunner, config_dir: Path, name: str, complaint: str
) -> None:
    home = config_dir.parent
    outside = home.parent / "outside"
    outside.mkdir()
    (outside / "x.toml").write_text("a = 1\n")
    (config_dir / "outside").symlink_to(outside)
    (config_dir / "linked.toml").symlink_to(outside / "x.toml")
    before_config, before_outside = snapshot(config_dir), snapshot(outside)
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.CONFIG_PATCH, {"files": {"config.toml": {"mempool": {"size": 1}}, name: {"a": 2}}})
    assert f'params.files."{name}"' in caught.value.message
    assert complaint in caught.value.message
    assert snapshot(config_dir) == before_config
    assert snapshot(outside) == before_outside
    assert not (home.parent / "x.toml").exists()


async def test_bad_second_file_leaves_the_first_untouched(run_handler: HandlerRunner, config_dir: Path) -> None:
    (config_dir / "app.toml").write_text("broken = \n")
    before = snapshot(config_dir)
    with pytest.raises(TaskError) as caught:
        await run_handler(
            TaskType.CONFIG_PATCH,
            {"files": {"config.toml": {"mempool": {"size": 1}}, "app.toml": {"api": {"enable": True}}}},
        )
    assert "app.toml is not valid TOML (line 1" in caught.value.message
    assert snapshot(config_dir) == before


async def test_unrepresentable_value_in_second_file_names_file_and_key(
    run_handler: HandlerRunner, config_dir: Path
) -> None:
    before = snapshot(config_dir)
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(
            TaskType.CONFIG_PATCH,
            {"files": {"config.toml": {"mempool": {"size": 1}}, "app.toml": {"api": {"list": ["a", None]}}}},
        )
    assert caught.value.message == (
        'params.files."app.toml": api.list[1]: null inside a list cannot be written to TOML'
    )
    assert snapshot(config_dir) == before


async def test_two_names_for_one_file_are_refused(run_handler: HandlerRunner, config_dir: Path) -> None:
    before = snapshot(config_dir)
    with pytest.raises(ParamsInvalid, match=r"names the same file as 'config\.toml'"):
        await run_handler(
            TaskType.CONFIG_PATCH,
            {"files": {"config.toml": {"mempool": {"size": 1}}, "./config.toml": {"mempool": {"size": 2}}}},
        )
    assert snapshot(config_dir) == before


async def test_no_temporary_files_are_left_behind(run_handler: HandlerRunner, config_dir: Path) -> None:
    await run_handler(TaskType.CONFIG_PATCH, {"files": {"config.toml": {"mempool": {"size": 1}}, "new.toml": {"a": 1}}})
    assert sorted(entry.name for entry in config_dir.iterdir()) == ["app.toml", "config.toml", "new.toml"]


async def test_key_spelling_is_matched_when_asked(run_handler: HandlerRunner, config_dir: Path) -> None:
    await run_handler(
        TaskType.CONFIG_PATCH,
        {"files": {"config.toml": {"p2p": {"persistent_peers": "id@host:26656"}}}, "matchKeySpelling": True},
    )
    expected = CONFIG_TOML.replace('persistent-peers = ""', 'persistent-peers = "id@host:26656"')
    assert (config_dir / "config.toml").read_text() == expected


@pytest.mark.parametrize(
    "patch",
    [
        {"p2p": {"persistent_peers": "id@host:26656"}},
        {"p2p": {"persistent_peers": None}},  # deleting the other spelling would silently delete nothing
        {"mempool": {"size": 5}, "p2p": {"max_connections": 10}},
    ],
    ids=["set", "delete", "second-key-of-two"],
)
async def test_a_key_the_file_spells_differently_is_refused_by_default(
    run_handler: HandlerRunner, config_dir: Path, patch: dict[str, Any]
) -> None:
    before = snapshot(config_dir)
    with pytest.raises(ParamsInvalid, match=r"the file spells this key p2p\.(persistent|max)-") as raised:
        await run_handler(TaskType.CONFIG_PATCH, {"files": {"config.toml": patch}})
    assert "matchKeySpelling" in raised.value.hint
    assert snapshot(config_dir) == before


async def test_a_new_key_is_written_exactly_as_given_by_default(run_handler: HandlerRunner, config_dir: Path) -> None:
    await run_handler(TaskType.CONFIG_PATCH, {"files": {"config.toml": {"p2p": {"brand_new_key": 1}}}})
    assert "brand_new_key = 1" in (config_dir / "config.toml").read_text()


async def test_a_key_seid_does_not_read_is_written_with_a_warning_naming_the_nearest_key(
    run_handler: HandlerRunner, config_dir: Path
) -> None:
    result = await run_handler(
        TaskType.CONFIG_PATCH, {"files": {"config.toml": {"p2p": {"max-num-inbound-peers": 40}}}}
    )
    assert result["changed"] == ["config.toml"]
    [diagnostic] = result["diagnostics"]
    assert diagnostic["severity"] == "WARNING" and diagnostic["field"] == "config.toml:p2p.max-num-inbound-peers"
    assert "nearest known: p2p." in diagnostic["message"]
    assert "max-num-inbound-peers = 40" in (config_dir / "config.toml").read_text()


async def test_strict_refuses_a_key_seid_does_not_read_before_writing_any_file(
    run_handler: HandlerRunner, config_dir: Path
) -> None:
    before = snapshot(config_dir)
    params = {
        "strict": True,
        "files": {"app.toml": {"api": {"enable": True}}, "config.toml": {"mempool": {"sise": 1}}},
    }
    with pytest.raises(ParamsInvalid, match=r"config\.toml: mempool\.sise is not a key seid reads.*mempool\.size"):
        await run_handler(TaskType.CONFIG_PATCH, params)
    assert snapshot(config_dir) == before


@pytest.mark.parametrize("match", [True, False])
async def test_strict_accepts_known_keys_and_other_spellings_only_when_they_are_matched(
    run_handler: HandlerRunner, config_dir: Path, match: bool
) -> None:
    params = {"strict": True, "matchKeySpelling": match, "files": {"config.toml": {"mempool": {"cache_size": 7}}}}
    if match:
        assert (await run_handler(TaskType.CONFIG_PATCH, params))["diagnostics"] == []
        assert "cache-size = 7" in (config_dir / "config.toml").read_text()
    else:
        with pytest.raises(ParamsInvalid, match=r"mempool\.cache_size.*nearest known: mempool\.cache-size"):
            await run_handler(TaskType.CONFIG_PATCH, params)

"""config-validate and config-apply on the homes a real `seid init` writes (tests/fixtures/seid/, recorded from a seid
built from sei-chain's public source; the README there names the version and commit).

- config-validate accepts every stock home, in every mode seid init supports.
- config-apply with no overrides changes nothing seid init wrote unless sei-config's defaults for the mode (or one
  of the project's documented decisions) say so, keeps every key outside the registry and every comment, and a second
  run changes nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.chain.seiconfig import SeiConfig, registry
from agent.chain.seiconfig.model import META_KEYS, TENDERMINT_MODE, Mode
from agent.io.toml import read_toml
from agent.models import TaskType
from tests.fixtures.common import HandlerRunner

SEID_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "seid"
INIT_HOMES = sorted(path.parent.parent for path in SEID_FIXTURES.glob("*/init/*/config/config.toml"))


def install(home: Path, recorded: Path) -> None:
    for name in ("config.toml", "app.toml", "client.toml"):
        shutil.copy(recorded / "config" / name, home / "config" / name)


def flat(home: Path) -> dict[tuple[str, str], Any]:
    values: dict[tuple[str, str], Any] = {}

    def walk(name: str, document: dict[str, Any], prefix: str) -> None:
        for part, value in document.items():
            if isinstance(value, dict):
                walk(name, value, f"{prefix}{part}.")
            else:
                values[(name, f"{prefix}{part}".replace("_", "-"))] = value

    for name in ("config.toml", "app.toml", "client.toml"):
        walk(name, read_toml(home / "config" / name), "")
    return values


def test_homes_for_every_mode_were_recorded() -> None:
    assert {path.name for path in INIT_HOMES} >= {"validator", "full", "seed", "archive"}


@pytest.mark.parametrize("recorded", INIT_HOMES, ids=lambda path: path.name)
async def test_config_validate_accepts_a_stock_seid_init_home(
    home: Path, run_handler: HandlerRunner, recorded: Path
) -> None:
    install(home, recorded)
    result = await run_handler(TaskType.CONFIG_VALIDATE)
    assert result is not None
    assert result["valid"] is True
    assert [item for item in result["diagnostics"] if item["severity"] == "ERROR"] == []


def expected_values(mode: Mode) -> dict[tuple[str, str], Any]:
    """Where config-apply may write and what, for `mode`: every placement of every key with a value."""
    config = SeiConfig.for_mode(mode)
    expected: dict[tuple[str, str], Any] = {
        ("config.toml", "mode"): TENDERMINT_MODE[mode],
        ("app.toml", "sei.mode"): mode.value,
        ("app.toml", "sei.version"): config.version,
    }
    for key, entry in registry().items():
        if key in META_KEYS or config.get(key) is None:
            continue
        for placement in entry.placements:
            expected[(placement.file, placement.toml.replace("_", "-"))] = config.get(key)
    return expected


def same(written: Any, wanted: Any) -> bool:
    if isinstance(wanted, list) and isinstance(written, str):
        return written == ",".join(wanted)
    if isinstance(written, str) and isinstance(wanted, int | bool) and not isinstance(written, bool):
        return written == str(wanted).lower()
    return bool(written == wanted)


@pytest.mark.parametrize("recorded", INIT_HOMES, ids=lambda path: path.name)
async def test_config_apply_with_no_overrides_changes_only_what_sei_configs_defaults_say(
    home: Path, run_handler: HandlerRunner, recorded: Path
) -> None:
    install(home, recorded)
    mode = Mode(recorded.name)
    before = flat(home)
    comments = [line for line in (home / "config" / "app.toml").read_text().splitlines() if line.startswith("#")]
    result = await run_handler(TaskType.CONFIG_APPLY, {"mode": mode.value})
    assert result is not None
    after = flat(home)
    expected = expected_values(mode)
    changed = {location for location in set(before) | set(after) if before.get(location) != after.get(location)}
    unexplained = {
        location: (before.get(location), after.get(location))
        for location in changed
        if location not in expected or not same(after.get(location), expected[location])
    }
    assert unexplained == {}
    assert {location for location in before if location not in after} == set()  # nothing seid wrote is dropped
    app_text = (home / "config" / "app.toml").read_text()
    assert all(line in app_text for line in comments)
    again = await run_handler(TaskType.CONFIG_APPLY, {"mode": mode.value})
    assert again is not None and not any(again["changed"].values())


SEI_CONFIG_V009 = Path(__file__).resolve().parents[1] / "fixtures" / "sei-config" / "v0.0.9"


@pytest.mark.parametrize("mode", ["validator", "full", "seed", "archive"])
async def test_files_of_the_go_sidecars_sei_config_v0_0_9_read_as_their_mode_and_validate(
    home: Path, run_handler: HandlerRunner, mode: str
) -> None:
    for name in ("config.toml", "app.toml"):
        shutil.copy(SEI_CONFIG_V009 / mode / "config" / name, home / "config" / name)
    result = await run_handler(TaskType.CONFIG_VALIDATE)
    assert result is not None
    assert (result["valid"], result["mode"], result["version"], result["diagnostics"]) == (True, mode, 1, [])
    reload = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"mempool.size": 6000}})
    assert reload is not None and reload["changed"] == {"config.toml": True}


async def test_an_incremental_apply_keeps_version_1_unless_a_migration_is_asked_for(
    home: Path, run_handler: HandlerRunner
) -> None:
    for name in ("config.toml", "app.toml"):
        shutil.copy(SEI_CONFIG_V009 / "full" / "config" / name, home / "config" / name)
    kept = await run_handler(TaskType.CONFIG_APPLY, {"incremental": True, "overrides": {"mempool.size": 6000}})
    assert kept is not None and (kept["version"], kept["migrations"]) == (1, [])
    assert read_toml(home / "config" / "app.toml")["sei"] == {"mode": "full", "version": 1}
    result = await run_handler(TaskType.CONFIG_APPLY, {"incremental": True, "targetVersion": 2})
    assert result is not None
    assert (result["version"], len(result["migrations"])) == (2, 1)
    app = read_toml(home / "config" / "app.toml")
    assert app["sei"] == {"mode": "full", "version": 2}
    assert app["state-commit"]["sc-write-mode"] == app["state-store"]["ss-write-mode"] == "memiavl_only"

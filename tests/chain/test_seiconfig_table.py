"""The model against sei-config's registry table (agent/chain/seiconfig/sei-config-table.json), key by key and mode by
mode, and against the files sei-config itself writes (tests/fixtures/sei-config/). A divergence fails here unless
it is one of the documented decisions (model.DEFAULT_DECISIONS, the machine-dependent keys, validate.EXTRA_RULES)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.chain.seiconfig import (
    CURRENT_VERSION,
    DEFAULT_DECISIONS,
    DEPRECATED_ALIASES,
    EXTRA_RULES,
    Mode,
    SeiConfig,
    key_specs,
    load_config,
    registry,
    render_patches,
    table,
    validate,
    write_patches,
)
from agent.chain.seiconfig.model import (
    LATER_VERSION_KEYS,
    MACHINE_DEPENDENT_UNDETECTED,
    META_KEYS,
    UNMANAGED_DECISIONS,
)
from agent.io.toml import read_toml

ROOT = Path(__file__).resolve().parents[2]
SEI_CONFIG_FILES = ROOT / "tests" / "fixtures" / "sei-config" / "v0.0.21"
DOC = (ROOT / "docs" / "config-model.md").read_text()
ROWS = {row["key"]: row for row in table()["keys"]}


def machine_dependent(key: str, mode: Mode) -> bool:
    """Machine-dependent upstream default, or a key the project decided not to default (both: not written)."""
    modes = ROWS.get(key, {}).get("machine_dependent_modes", [])
    return mode.value in modes or (key, mode) in MACHINE_DEPENDENT_UNDETECTED or key in UNMANAGED_DECISIONS


def test_the_table_names_its_source_and_has_every_key() -> None:
    source = table()["source"]
    assert (source["version"], source["commit"]) == ("v0.0.21", "3fd5c81fe8c2b307e0e757e52f62d1eb0ee372e4")
    assert source["current_schema_version"] == CURRENT_VERSION == 2
    assert len(ROWS) == 224
    assert set(registry()) == set(ROWS) | set(LATER_VERSION_KEYS)


@pytest.mark.parametrize("key", sorted(LATER_VERSION_KEYS))
def test_later_version_keys_are_accepted_written_when_set_and_never_defaulted(tmp_path: Path, key: str) -> None:
    spec = key_specs()[key]
    assert key not in ROWS
    assert (spec.hot, set(spec.defaults.values())) == (False, {None})
    assert f"`{key}`" in DOC
    home = tmp_path / "home"
    value = True if spec.type == "bool" else 7
    write_patches(home, render_patches(SeiConfig.for_mode(Mode.FULL).replace({key: value}), home, keys=[key]))
    placement = spec.placements[0]
    assert written_values(home).get((placement.file, placement.toml)) == value


@pytest.mark.parametrize(
    ("values", "valid"),
    [
        ({"chain.freeze_height": 100}, True),
        ({"chain.freeze_height": 100, "chain.halt_height": 200}, False),
        ({"chain.freeze_height": 100, "chain.halt_time": 200}, False),
        ({"chain.freeze_height": 2**63}, False),
    ],
)
def test_freeze_height_follows_seids_rules(values: dict[str, Any], valid: bool) -> None:
    assert validate(SeiConfig.for_mode(Mode.FULL).replace(values)).valid is valid


@pytest.mark.parametrize("key", sorted(ROWS))
def test_each_key_matches_the_table(key: str) -> None:
    row, spec = ROWS[key], key_specs()[key]
    assert spec.type == row["type"]
    assert spec.env == row["env"] == "SEI_" + key.upper().replace(".", "_")
    assert spec.hot is row["hot"]
    assert [(item.file, item.toml) for item in spec.placements] == [
        (item["file"], item["toml"]) for item in row["files"]
    ]
    for mode in Mode:
        upstream = row["defaults"][mode.value]
        if spec.comma and upstream is None:
            upstream = []  # written as "" either way
        if (key, mode) in DEFAULT_DECISIONS:
            assert spec.defaults[mode] == DEFAULT_DECISIONS[(key, mode)] != upstream
        elif machine_dependent(key, mode):
            assert spec.defaults[mode] is None
        else:
            assert spec.defaults[mode] == upstream, f"{key} in {mode}"


def test_the_hot_set_is_exactly_sei_configs() -> None:
    hot = {key for key, entry in registry().items() if entry.hot}
    assert hot == {key for key, row in ROWS.items() if row["hot"]}
    assert len(hot) == 9


def test_every_decision_and_alias_is_documented() -> None:
    for key, _mode in DEFAULT_DECISIONS:
        assert f"`{key}`" in DOC
    for key in [*EXTRA_RULES, *UNMANAGED_DECISIONS, *(key for key, _ in MACHINE_DEPENDENT_UNDETECTED)]:
        assert f"`{key}`" in DOC
    for old, new in DEPRECATED_ALIASES.items():
        assert f"`{old}` | `{new}`" in DOC
        assert new in registry()


def upstream_config(mode: str, extra: dict[str, Any]) -> SeiConfig:
    """sei-config's own default for `mode` (no project decisions), with `extra` set."""
    chosen = Mode(mode)
    values = {key: spec.upstream_defaults[chosen] for key, spec in key_specs().items() if key not in META_KEYS}
    return SeiConfig(mode=chosen, version=CURRENT_VERSION, values=values).replace(extra)


def signatures(config: SeiConfig) -> set[tuple[str, str, str]]:
    return {(item.severity, item.field, item.message) for item in validate(config).diagnostics}


CONTEXTS = [(mode.value, {}) for mode in Mode] + [(mode.value, {"state_sync.enable": True}) for mode in Mode]


def context_name(mode: str, extra: dict[str, Any]) -> str:
    return mode + (" + state_sync.enable=true" if extra else "")


@pytest.mark.parametrize(("mode", "extra"), CONTEXTS, ids=[context_name(*context) for context in CONTEXTS])
def test_sei_configs_baseline_diagnostics_are_ours(mode: str, extra: dict[str, Any]) -> None:
    name = mode + (" + state_sync" if extra else "")
    expected = {(item["severity"], item["field"], item["message"]) for item in table()["baseline_diagnostics"][name]}
    assert signatures(upstream_config(mode, extra)) == expected


def test_every_observed_sei_config_check_fires_with_its_field_and_message() -> None:
    missing = []
    for rule in table()["rules"]:
        for context in rule["contexts"]:
            mode, _, rest = context.partition(" + ")
            extra = {"state_sync.enable": True} if rest else {}
            config = upstream_config(mode, {**extra, rule["key"]: rule["probe"]})
            if (rule["severity"], rule["field"], rule["message"]) not in signatures(config):
                missing.append((rule["key"], rule["probe"], context, rule["message"]))
    assert missing == []


def test_we_report_nothing_sei_config_does_not_except_our_documented_checks() -> None:
    observed: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}
    for rule in table()["rules"]:
        for context in rule["contexts"]:
            signature = (rule["severity"], rule["field"], rule["message"])
            observed.setdefault((rule["key"], json.dumps(rule["probe"]), context), set()).add(signature)
    probes = {**table()["source"]["probe_values"], "key:version": [0, 1, 99]}
    extra_findings = []
    for mode, extra in CONTEXTS:
        baseline = signatures(upstream_config(mode, extra))
        for key, row in ROWS.items():
            for probe in probes.get(f"key:{key}", probes[row["type"]]):
                if row["type"] == "uint" and isinstance(probe, int) and probe < 0:
                    continue
                found = signatures(upstream_config(mode, {**extra, key: probe})) - baseline
                allowed = observed.get((key, json.dumps(probe), context_name(mode, extra)), set())
                for signature in found - allowed:
                    if signature[1] not in EXTRA_RULES:
                        extra_findings.append((key, probe, context_name(mode, extra), signature))
    assert extra_findings == []


@pytest.mark.parametrize("mode", list(Mode))
def test_our_defaults_validate_clean_in_every_mode(mode: Mode) -> None:
    report = validate(SeiConfig.for_mode(mode))
    assert (report.valid, report.diagnostics, report.version) == (True, [], 2)


@pytest.mark.parametrize("mode", list(Mode))
def test_files_written_by_sei_config_read_back_as_its_defaults(tmp_path: Path, mode: Mode) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    for name in ("config.toml", "app.toml"):
        (home / "config" / name).write_bytes((SEI_CONFIG_FILES / mode.value / "config" / name).read_bytes())
    loaded = load_config(home)
    assert (loaded.config.mode, loaded.config.version, loaded.diagnostics) == (mode, 2, [])
    report = validate(loaded.config, extra=loaded.diagnostics)
    assert (report.valid, report.diagnostics) == (True, [])
    differing = {
        key: (loaded.config.get(key), spec.upstream_defaults[mode])
        for key, spec in key_specs().items()
        if key not in META_KEYS and spec.placements and loaded.config.get(key) != spec.upstream_defaults[mode]
    }
    # sei-config omits a nil list from the file; reading it back gives our default for the mode, which is nil too.
    assert differing == {}


def written_values(home: Path) -> dict[tuple[str, str], Any]:
    flat: dict[tuple[str, str], Any] = {}

    def walk(name: str, document: dict[str, Any], prefix: str) -> None:
        for part, value in document.items():
            if isinstance(value, dict):
                walk(name, value, f"{prefix}{part}.")
            else:
                flat[(name, f"{prefix}{part}")] = value

    for name in ("config.toml", "app.toml"):
        walk(name, read_toml(home / "config" / name), "")
    return flat


@pytest.mark.parametrize("mode", list(Mode))
def test_files_we_write_hold_what_sei_config_writes(tmp_path: Path, mode: Mode) -> None:
    home = tmp_path / "home"
    config = SeiConfig.for_mode(mode)
    write_patches(home, render_patches(config, home))
    ours = written_values(home)
    theirs = written_values(SEI_CONFIG_FILES / mode.value)
    decided = {
        (placement.file, placement.toml)
        for key, spec in key_specs().items()
        for placement in spec.placements
        if (key, mode) in DEFAULT_DECISIONS or machine_dependent(key, mode)
    }
    constants = {(item["file"], item["toml"]) for item in table()["constant_keys"]}
    differing = {
        location: (ours.get(location), theirs.get(location))
        for location in set(ours) | set(theirs)
        if location not in decided | constants and ours.get(location) != theirs.get(location)
    }
    assert differing == {}
    assert {location for location in decided if location in ours} == {
        (placement.file, placement.toml)
        for key, spec in key_specs().items()
        for placement in spec.placements
        if (key, mode) in DEFAULT_DECISIONS
    }


OURS = SEI_CONFIG_FILES / "ours"


@pytest.mark.parametrize("mode", list(Mode))
def test_sei_config_reads_what_we_write_as_its_mode_with_no_diagnostics(tmp_path: Path, mode: Mode) -> None:
    verdict = json.loads((SEI_CONFIG_FILES / "ours-read-by-sei-config.json").read_text())[mode.value]
    assert (verdict["mode"], verdict["version"], verdict["diagnostics"]) == (mode.value, 2, [])
    # The verdict holds for what we write today only if we still write exactly these files.
    home = tmp_path / "home"
    write_patches(home, render_patches(SeiConfig.for_mode(mode), home))
    for name in ("config.toml", "app.toml"):
        assert (home / "config" / name).read_bytes() == (OURS / mode.value / "config" / name).read_bytes(), name

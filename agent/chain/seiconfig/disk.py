"""Reading the unified config from config.toml / app.toml, and rendering it back into them keeping comments.

Reading (`load_config`): the mode is app.toml `[sei] mode`, else config.toml `mode`, else `full`; the version is
`[sei] version`, else the current version (both as sei-config reads them). Every key found in the files (under either
spelling, `persistent-peers` or `persistent_peers`) is parsed by its type, weakly as sei-config does (`"86400"` for a
number, `5000` for a string); a value that does not parse becomes an ERROR diagnostic naming the key, the file and the
value, and the mode's default stands in. A key absent from the files takes the mode's default (sei-config takes Go's
zero value; see docs/config-model.md).

Rendering (`render_patches` + `write_patches`): the chosen keys become one merge patch per file, applied with
`agent.io.toml` so that every comment, every key outside the registry and the file's layout stay as they were. Keys
take the spelling the file already uses, and a value the file holds as a string stays a string. Both files are
prepared before either is written, so a file that is not valid TOML leaves both untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.io.toml import TomlEdit, prepare_toml_patch, read_toml, spelling_in
from agent.models import TaskError

from .model import APP_TOML, CONFIG_TOML, CURRENT_VERSION, META_KEYS, TENDERMINT_MODE, Mode, SeiConfig, canonical_key
from .registry import _BadValue, parse_value, registry
from .validate import Diagnostic

FILES = (CONFIG_TOML, APP_TOML)


def config_path(home: Path, name: str) -> Path:
    return home / "config" / name


@dataclass
class LoadedConfig:
    """A config read from disk, with what reading it found wrong."""

    config: SeiConfig
    diagnostics: list[Diagnostic] = field(default_factory=list)
    present: set[str] = field(default_factory=set)
    """Unified keys that have a value in the files."""


def _find(document: Mapping[str, Any], toml_key: str) -> tuple[bool, Any]:
    current: Any = document
    for part in toml_key.split("."):
        if not isinstance(current, Mapping):
            return False, None
        spelled = spelling_in(current, part)
        if spelled is None:
            return False, None
        current = current[spelled]
    return True, current


def read_documents(home: Path) -> dict[str, dict[str, Any]]:
    """Both files as plain values; a missing or invalid file is a `TaskError` naming it."""
    documents = {}
    for name in FILES:
        path = config_path(home, name)
        if not path.exists():
            raise TaskError(
                f"config/{name} not found in {home}",
                reason="ConfigMissing",
                hint="run config-apply without `incremental` (or generate-identity) first",
            )
        documents[name] = read_toml(path)
    return documents


def _weak(type_name: str, raw: Any) -> Any:
    """A file value as sei-config's decoder takes it: numbers and booleans may be strings, strings may be numbers,
    but an empty string is never a number or a boolean."""
    if raw == "" and type_name in ("int", "uint", "float", "bool"):
        raise _BadValue(f"empty string for a {type_name} field")
    if type_name == "string" and isinstance(raw, bool):
        return "true" if raw else "false"
    if type_name == "string" and isinstance(raw, float):
        return repr(raw)
    return parse_value(type_name, raw)


def _detect_mode(documents: Mapping[str, Mapping[str, Any]], diagnostics: list[Diagnostic]) -> Mode:
    found, value = _find(documents[APP_TOML], "sei.mode")
    if found and value in Mode.__members__.values():
        return Mode(value)
    found, value = _find(documents[CONFIG_TOML], "mode")
    if found and value in ("validator", "full", "seed"):
        return Mode(value)
    diagnostics.append(
        Diagnostic(
            severity="WARNING",
            field="mode",
            message="neither app.toml [sei] mode nor config.toml mode is a known mode; using full",
        )
    )
    return Mode.FULL


def _detect_version(documents: Mapping[str, Mapping[str, Any]]) -> int:
    found, value = _find(documents[APP_TOML], "sei.version")
    if found and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return CURRENT_VERSION


def load_config(home: Path, *, mode: Mode | None = None) -> LoadedConfig:
    """The unified config in `home`'s files; `mode` replaces the detected mode (the files' values still win over
    the new mode's defaults)."""
    documents = read_documents(home)
    diagnostics: list[Diagnostic] = []
    detected = _detect_mode(documents, diagnostics)
    config = SeiConfig.for_mode(mode or detected)
    config.version = _detect_version(documents)
    present = set()
    for key, entry in registry().items():
        if key in META_KEYS:
            continue
        for placement in entry.placements:
            found, raw = _find(documents[placement.file], placement.toml)
            if not found:
                continue
            try:
                config.values[key] = _weak(entry.spec.type, raw)
                present.add(key)
            except _BadValue as error:
                diagnostics.append(
                    Diagnostic(
                        severity="ERROR",
                        field=key,
                        message=f"{placement.file} [{placement.toml}] = {raw!r} is not a valid {entry.type_name}: "
                        f"{error}",
                    )
                )
            break
    return LoadedConfig(config, diagnostics, present)


def _encode(value: Any, comma: bool, existing: Any) -> Any:
    if comma or (isinstance(existing, str) and isinstance(value, list)):  # keep a file's "a,b" string a string
        return ",".join(value)
    if isinstance(existing, str) and isinstance(value, bool | int) and not isinstance(existing, bool):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return value


def _read_documents(home: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {name: read_toml(config_path(home, name), missing_ok=True) for name in names}


def _set_patch(
    patches: dict[str, dict[str, Any]], documents: Mapping[str, Mapping[str, Any]], file: str, toml: str, value: Any
) -> None:
    found, existing = _find(documents.get(file, {}), toml)
    if found and existing == value and type(existing) is type(value):
        return
    nested = patches.setdefault(file, {})
    *tables, leaf = toml.split(".")
    for table in tables:
        nested = nested.setdefault(table, {})
    nested[leaf] = value


def _patches_for(values: Mapping[str, Any], documents: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge patches per file setting each unified key in `values` (typed; None = leave alone), skipping keys the
    files already hold with that exact value so their lines keep every byte."""
    patches: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        entry = registry()[canonical_key(key)]
        if value is None:
            continue
        for placement in entry.placements:
            existing = _find(documents.get(placement.file, {}), placement.toml)[1]
            # A list given for a string key (persistent peers, peer IDs) is sei-config's comma-separated string.
            comma = entry.spec.comma or (entry.spec.type == "string" and isinstance(value, list))
            encoded = _encode(value, comma, existing)
            _set_patch(patches, documents, placement.file, placement.toml, encoded)
    return patches


def render_patches(
    config: SeiConfig, home: Path, *, keys: Iterable[str] | None = None, include_meta: bool = True
) -> dict[str, dict[str, Any]]:
    """One merge patch per file for `keys` (default: every key with a value), plus, with `include_meta`, the mode
    (config.toml `mode`, app.toml `[sei] mode`) and the schema version (`[sei] version`)."""
    documents = _read_documents(home, FILES)
    chosen = [key for key in (registry().keys() if keys is None else keys) if key not in META_KEYS]
    patches = _patches_for({key: config.get(key) for key in chosen}, documents)
    if include_meta:
        mode = Mode(config.mode)
        _set_patch(patches, documents, CONFIG_TOML, "mode", TENDERMINT_MODE[mode])
        _set_patch(patches, documents, APP_TOML, "sei.mode", mode.value)
        _set_patch(patches, documents, APP_TOML, "sei.version", config.version)
    return patches


def read_key(home: Path, key: str) -> Any:
    """The typed value of one unified key (or deprecated alias) from its file, or None when the file does not set
    it. A missing file is a `TaskError` naming it; so is a value that does not parse (naming file, key and value)."""
    entry = registry()[canonical_key(key)]
    for placement in entry.placements:
        path = config_path(home, placement.file)
        if not path.exists():
            raise TaskError(f"config/{placement.file} not found in {home}", reason="ConfigMissing")
        found, raw = _find(read_toml(path), placement.toml)
        if not found:
            continue
        try:
            return _weak(entry.spec.type, raw)
        except _BadValue as error:
            raise TaskError(f"config/{placement.file} [{placement.toml}] = {raw!r}: {error}") from None
    return None


def write_keys(home: Path, values: Mapping[str, Any]) -> dict[str, bool]:
    """Set unified keys (typed values, None = leave alone) in their files, keeping comments and the files' spelling;
    returns file name -> whether it changed. The files' other keys are not read, validated or touched."""
    files = {placement.file for key in values for placement in registry()[canonical_key(key)].placements}
    return write_patches(home, _patches_for(values, _read_documents(home, files)))


def write_patches(home: Path, patches: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
    """Apply the patches keeping comments; returns file name -> whether its content changed.

    Every edit is computed before any file is written, so an unreadable file stops the whole change.
    """
    edits: list[TomlEdit] = [
        prepare_toml_patch(config_path(home, name), patch, label=f"config/{name}", match_spelling=True)
        for name, patch in patches.items()
    ]
    return {edit.path.name: edit.write() for edit in edits}

"""Reading the unified config from config.toml / app.toml, and rendering it back into them keeping comments.

Reading (`load_config`): every modelled key found in the files (under either spelling, `persistent-peers` or
`persistent_peers`) is parsed by its type; a value that does not parse becomes an ERROR diagnostic naming the key,
the file and the value, and the mode's default stands in. The mode is config.toml's `mode` (`validator`, `full`,
`seed`); a `full` node whose app.toml has `pruning = "nothing"` reads as `archive`.

Rendering (`render_patches` + `write_patches`): the chosen keys become one merge patch per file, applied with
`agent.io.toml` so that every comment, every key outside the model and the file's layout stay as they were. Keys
take the spelling the file already uses, and a value the file holds as a string (`pruning-keep-recent = "0"`, as
the Cosmos template writes it) stays a string. Both files are prepared before either is written, so a file that is
not valid TOML leaves both untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.io.toml import TomlEdit, prepare_toml_patch, read_toml, spelling_in
from agent.models import TaskError

from .model import APP_TOML, CONFIG_TOML, TENDERMINT_MODE, Mode, SeiConfig, get_dotted_value, set_dotted
from .registry import registry
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


def _detect_mode(documents: Mapping[str, Mapping[str, Any]], diagnostics: list[Diagnostic]) -> Mode:
    found, value = _find(documents[CONFIG_TOML], "mode")
    if not found:
        diagnostics.append(Diagnostic(severity="WARNING", field="mode", message="config.toml has no mode; using full"))
        return Mode.FULL
    if value not in ("validator", "full", "seed"):
        diagnostics.append(
            Diagnostic(severity="ERROR", field="mode", message=f"config.toml mode {value!r} is not validator/full/seed")
        )
        return Mode.FULL
    if value == "full" and _find(documents[APP_TOML], "pruning") == (True, "nothing"):
        return Mode.ARCHIVE
    return Mode(value)


def load_config(home: Path, *, mode: Mode | None = None) -> LoadedConfig:
    """The unified config in `home`'s files; `mode` replaces the detected mode (the files' values still win over
    the new mode's defaults)."""
    documents = read_documents(home)
    diagnostics: list[Diagnostic] = []
    detected = _detect_mode(documents, diagnostics)
    values = SeiConfig.for_mode(mode or detected).model_dump()
    present = set()
    for key, entry in registry().items():
        found, raw = _find(documents[entry.file], entry.toml_key)
        if not found:
            continue
        try:
            set_dotted(values, key, entry.adapter.validate_python(raw))
            present.add(key)
        except ValidationError as error:
            reason = "; ".join(str(problem["msg"]).removeprefix("Value error, ") for problem in error.errors())
            diagnostics.append(
                Diagnostic(
                    severity="ERROR",
                    field=key,
                    message=f"{entry.file} [{entry.toml_key}] = {raw!r} is not a valid {entry.type_name}: {reason}",
                )
            )
    return LoadedConfig(SeiConfig.model_validate(values), diagnostics, present)


def with_overrides(config: SeiConfig, typed: Mapping[str, Any], *, mode: Mode | None = None) -> SeiConfig:
    """A copy of `config` with already-parsed overrides (`registry.parse_overrides`) and optionally a new mode."""
    values = config.model_dump()
    for key, value in typed.items():
        set_dotted(values, key, value)
    if mode is not None:
        values["mode"] = mode
    return SeiConfig.model_validate(values)


def _encode(value: Any, comma: bool, existing: Any) -> Any:
    if comma or (isinstance(existing, str) and isinstance(value, list)):  # keep a file's "a,b" string a string
        return ",".join(value)
    if isinstance(existing, str) and isinstance(value, bool | int):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return value


def _read_documents(home: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {name: read_toml(config_path(home, name), missing_ok=True) for name in names}


def _patches_for(values: Mapping[str, Any], documents: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge patches per file setting each unified key in `values` (typed; None = leave alone), skipping keys the
    files already hold with that exact value so their lines keep every byte."""
    patches: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        entry = registry()[key]
        if value is None:
            continue
        found, existing = _find(documents.get(entry.file, {}), entry.toml_key)
        encoded = _encode(value, entry.toml.comma, existing)
        if found and existing == encoded and type(existing) is type(encoded):
            continue
        nested = patches.setdefault(entry.file, {})
        *tables, leaf = entry.toml_key.split(".")
        for table in tables:
            nested = nested.setdefault(table, {})
        nested[leaf] = encoded
    return patches


def render_patches(
    config: SeiConfig, home: Path, *, keys: Iterable[str] | None = None, include_mode: bool = True
) -> dict[str, dict[str, Any]]:
    """One merge patch per file for `keys` (default: every key with a value), plus config.toml's `mode`."""
    documents = _read_documents(home, FILES)
    chosen = registry().keys() if keys is None else keys
    patches = _patches_for({key: get_dotted_value(config, key) for key in chosen}, documents)
    if include_mode and _find(documents[CONFIG_TOML], "mode") != (True, TENDERMINT_MODE[config.mode]):
        patches.setdefault(CONFIG_TOML, {})["mode"] = TENDERMINT_MODE[config.mode]
    return patches


def read_key(home: Path, key: str) -> Any:
    """The typed value of one unified key from its file, or None when the file does not set it.

    A missing file is a `TaskError` naming it; so is a value that does not parse (naming file, key and value).
    """
    entry = registry()[key]
    path = config_path(home, entry.file)
    if not path.exists():
        raise TaskError(f"config/{entry.file} not found in {home}", reason="ConfigMissing")
    found, raw = _find(read_toml(path), entry.toml_key)
    if not found:
        return None
    try:
        return entry.adapter.validate_python(raw)
    except ValidationError as error:
        reason = "; ".join(str(problem["msg"]).removeprefix("Value error, ") for problem in error.errors())
        raise TaskError(f"config/{entry.file} [{entry.toml_key}] = {raw!r}: {reason}") from None


def write_keys(home: Path, values: Mapping[str, Any]) -> dict[str, bool]:
    """Set unified keys (typed values, None = leave alone) in their files, keeping comments and the files' spelling;
    returns file name -> whether it changed. The files' other keys are not read, validated or touched."""
    files = {registry()[key].file for key in values}
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

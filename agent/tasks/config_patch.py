"""`config-patch`: merge-patch TOML files under `<home>/config/`, keeping their comments and layout.

Each file is edited in place (`agent.io.toml`), so comments, layout and value types survive, and:
- every file name must stay inside `config/` (no `..`, absolute path or symlink out) and end in `.toml`;
- all names are checked and all patches computed in memory before the first file is written, so a bad second file
  leaves the first untouched; two names for the same file are refused;
- each file is replaced atomically and keeps its mode; an unchanged file is not written at all;
- keys are written exactly as given, unless `matchKeySpelling` asks to reuse the file's hyphen/underscore spelling
  (sei-tendermint writes `persistent-peers`, CometBFT `persistent_peers`; a key in the other spelling would be a
  second, ignored key);
- a key seid does not read from config.toml, app.toml or client.toml (`agent.chain.seiconfig.known`) is a WARNING
  diagnostic naming the nearest known keys, or with `strict` a `ParamsInvalid` before anything is written.

Writes to several files are not one transaction: if the disk fails between two files, the first stays patched.
Merge patches are idempotent, so running the task again finishes the job. No done-marker: the task is naturally
idempotent and re-applies its patch on every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from agent.chain.seiconfig.known import JUDGED_FILES, unknown_keys
from agent.chain.seiconfig.validate import Diagnostic
from agent.io.files import contained_path
from agent.io.toml import TomlEdit, prepare_toml_patch
from agent.models import ParamsInvalid, TaskType
from agent.models.params.base import TaskParams

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


class ConfigPatchParams(TaskParams):
    """`config-patch`: RFC 7386 merge patches for TOML files in `<home>/config/`.

    Only `.toml` files: the JSON files of `config/` are the node and validator keys and genesis, which no patch may
    touch (genesis has its own tasks). Whether a name escapes `config/` (`..`, absolute, through a symlink) needs the
    disk and is checked by the handler, still before anything is written.
    """

    files: dict[str, dict[str, Any]] = Field(
        description='File name under config/ -> merge patch, e.g. {"config.toml": {"p2p": {"persistent-peers": ""}}}.'
    )
    match_key_spelling: bool = Field(
        default=False,
        description="Write each key with the '-' or '_' spelling the file already uses (persistent_peers lands on an "
        "existing persistent-peers); off by default, so keys are written exactly as given.",
    )
    strict: bool = Field(
        default=False,
        description="Refuse (ParamsInvalid, nothing written) a key seid does not read from config.toml, app.toml or "
        "client.toml; by default such a key is written and reported as a WARNING diagnostic.",
    )

    @field_validator("files")
    @classmethod
    def _toml_files_only(cls, files: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not files:
            raise ValueError("at least one file is required")
        for name in files:
            if not name.endswith(".toml") or name.rsplit("/", 1)[-1] == ".toml":
                raise ValueError(f"{name!r}: only .toml files under config/ can be patched")
        return files


def _prepare(config_dir: Path, files: Mapping[str, Mapping[str, Any]], match_spelling: bool) -> list[TomlEdit]:
    edits: list[TomlEdit] = []
    owners: dict[Path, str] = {}
    for name, patch in files.items():
        field = f'params.files."{name}"'
        path = contained_path(config_dir, name, field=field)
        edit = prepare_toml_patch(path, patch, label=field, match_spelling=match_spelling)
        if edit.target in owners:
            raise ParamsInvalid(f"{field}: names the same file as {owners[edit.target]!r}")
        owners[edit.target] = name
        edits.append(edit)
    return edits


def _unknown_keys(
    config_dir: Path, files: Mapping[str, Mapping[str, Any]], edits: list[TomlEdit], match_spelling: bool
) -> list[Diagnostic]:
    """A WARNING per patched key seid does not read (only config.toml, app.toml and client.toml are judged)."""
    found: list[Diagnostic] = []
    top = config_dir.resolve()
    for patch, edit in zip(files.values(), edits, strict=True):
        if edit.target.parent == top and edit.target.name in JUDGED_FILES:
            found.extend(unknown_keys(edit.target.name, patch, loose=match_spelling))
    return found


def apply_config_patches(
    config_dir: Path, files: Mapping[str, Mapping[str, Any]], *, match_spelling: bool = False, strict: bool = False
) -> dict[str, Any]:
    """Validate and compute every patch, then write the files that change. Returns the names changed/unchanged and
    the diagnostics (keys seid does not read); with `strict` such a key is a `ParamsInvalid` and nothing is written."""
    edits = _prepare(config_dir, files, match_spelling)
    diagnostics = _unknown_keys(config_dir, files, edits, match_spelling)
    if strict and diagnostics:
        raise ParamsInvalid(
            "params.files: " + "; ".join(item.message for item in diagnostics),
            hint="nothing was written; spell the keys as seid does, or drop strict to write them anyway",
        )
    result: dict[str, Any] = {"changed": [], "unchanged": []}
    for name, edit in zip(files, edits, strict=True):
        result["changed" if edit.write() else "unchanged"].append(name)
    result["diagnostics"] = [item.model_dump() for item in diagnostics]
    return result


@handler(TaskType.CONFIG_PATCH, ConfigPatchParams)
async def config_patch(params: ConfigPatchParams, ctx: TaskContext) -> dict[str, Any]:
    """Merge-patch TOML files in config/ (RFC 7386), preserving comments, layout and value types."""
    result = await asyncio.to_thread(
        apply_config_patches,
        ctx.home / "config",
        params.files,
        match_spelling=params.match_key_spelling,
        strict=params.strict,
    )
    for item in result["diagnostics"]:
        ctx.log.warning("config-patch: %s", item["message"])
    ctx.log.info("config-patch: changed %s, unchanged %s", result["changed"], result["unchanged"])
    return result


HANDLERS = [config_patch]

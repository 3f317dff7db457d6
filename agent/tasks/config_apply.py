"""`config-apply`, `config-validate` and `config-reload`: the node's config through the unified model.

All three work on `agent.chain.seiconfig` (see docs/config-model.md):

- config-apply resolves a config (the mode's defaults, or with `incremental` the files on disk, plus overrides),
  validates it, and merges it into config.toml and app.toml keeping their comments and every key outside the
  model. Without `incremental` every modelled key with a value is written; with it, only the overrides, the mode
  and version (when given or migrated) and the values a migration changes: every other line keeps its bytes (a key
  the model reads from one file is not written back to another) and a key the files do not have stays absent.
  The files are never regenerated, so comments and hand-added keys survive.
- config-validate reads both files and returns the diagnostics; it fails when there is an ERROR.
- config-reload changes hot-reloadable keys only, and refuses every other key by name. It writes the files and sends
  seid no signal: the keys marked hot-reloadable are those seid re-reads while running.

Bad input fails before any file is read or written: an unknown key, a value of the wrong type, or (reload) a key
that needs a restart is a `ParamsInvalid` naming it. A config with an ERROR diagnostic fails with reason
`ConfigInvalid` and the message `config validation failed: [<errors as JSON>]` (the form the controller parses),
again with nothing written.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.chain.admin import AdminError, admin_address, dial_address, set_log_level
from agent.chain.seiconfig import (
    CURRENT_VERSION,
    Diagnostic,
    Mode,
    SeiConfig,
    ValidationReport,
    deprecated_keys,
    load_config,
    lookup,
    migrate,
    parse_overrides,
    render_patches,
    validate,
    write_patches,
)
from agent.chain.seiconfig.known import unknown_keys_on_disk
from agent.io.toml import load_toml_document, spelling_duplicates
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.params.base import TaskParams

from .base import TaskContext, handler
from .prechecks import hot_keys_only

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---

OverrideValue = str | bool | int | float | list[str]
"""An override as sent: a string (sei-config's wire form, parsed by the key's type) or a JSON scalar or list."""


def _check_override_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    for key in overrides:
        parts = key.split(".")
        if not key or not all(re.fullmatch(r"[a-z][a-z0-9_]*", part) for part in parts):
            raise ValueError(f"{key!r} is not a dotted key such as 'network.p2p.persistent_peers'")
    return overrides


class ConfigApplyParams(TaskParams):
    """`config-apply`: sei-config's ConfigIntent. Keys and value types are checked against the config model by the
    handler before any file is touched (an unknown key or a value of the wrong type is a ParamsInvalid naming it)."""

    mode: Literal["validator", "full", "seed", "archive"] | None = Field(
        default=None, description="Node mode; required unless `incremental`."
    )
    overrides: dict[str, OverrideValue] = Field(default_factory=dict, description="Dotted unified key -> value.")
    incremental: bool = Field(
        default=False,
        description="false: the mode's defaults plus overrides are written over every modelled key. true: the "
        "files on disk are the base; only the overrides (and a changed mode) are written.",
    )
    target_version: int = Field(
        default=0, ge=0, le=2, description="Config schema version (app.toml [sei] version); 0 means current (2)."
    )

    @field_validator("overrides")
    @classmethod
    def _dotted_keys(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        return _check_override_keys(overrides)

    @model_validator(mode="after")
    def _mode_unless_incremental(self) -> ConfigApplyParams:
        if not self.incremental and self.mode is None:
            raise ValueError("mode is required unless incremental is true (validator, full, seed or archive)")
        return self


class ConfigValidateParams(TaskParams):
    """`config-validate` takes no params: it validates config.toml and app.toml as they are on disk."""


class ConfigReloadParams(TaskParams):
    """`config-reload`: hot-reloadable keys to change in place (anything else is refused by name)."""

    fields: dict[str, OverrideValue] = Field(min_length=1, description="Dotted unified key -> value.")

    @field_validator("fields")
    @classmethod
    def _dotted_keys(cls, fields: dict[str, Any]) -> dict[str, Any]:
        return _check_override_keys(fields)


CONFIG_FILES = ("config.toml", "app.toml")


def _refuse_invalid(report: ValidationReport) -> None:
    if not report.valid:
        raise TaskError(
            "config validation failed: " + report.errors_json(),
            reason="ConfigInvalid",
            hint="nothing was written; fix the listed fields (overrides, or the files on disk)",
        )


def _still_relevant(diagnostics: list[Diagnostic], replaced: set[str]) -> list[Diagnostic]:
    """Findings about values on disk, minus those for keys (or the mode) this task replaces anyway."""
    return [item for item in diagnostics if item.field not in replaced]


def _apply(home: Path, params: ConfigApplyParams) -> dict[str, Any]:
    typed = parse_overrides(params.overrides, field="overrides")
    target = params.target_version or CURRENT_VERSION
    mode = Mode(params.mode) if params.mode else None
    if "mode" in typed:
        mode = Mode(typed.pop("mode"))
    version = typed.pop("version", None)
    keys: set[str] | None = None  # every key
    migrations: list[str] = []
    if params.incremental:
        loaded = load_config(home, mode=mode)
        config = loaded.config
        keys = set(typed)
        if params.target_version:  # as sei-config, the files' version stays unless a migration is asked for
            config, migrations = migrate(config, target)
            keys |= {key for key in loaded.present if config.get(key) != loaded.config.get(key)}
        config = config.replace(typed, mode=mode, version=version)
        findings = _still_relevant(loaded.diagnostics, set(typed) | ({"mode"} if mode else set()))
    else:
        assert mode is not None  # the params model requires a mode unless incremental
        config = SeiConfig.for_mode(mode).replace(typed, version=target if version is None else version)
        findings = []
    report = validate(config, extra=findings, max_version=target)
    _refuse_invalid(report)
    # [sei] mode/version are written with the whole config, or when the mode or the version changes.
    include_meta = not params.incremental or mode is not None or version is not None or bool(migrations)
    written = write_patches(home, render_patches(config, home, keys=keys, include_meta=include_meta))
    return {
        "mode": str(config.mode),
        "version": config.version,
        "incremental": params.incremental,
        "overrides": sorted(params.overrides),
        "deprecatedKeys": deprecated_keys(params.overrides),
        "migrations": migrations,
        "changed": written,
        "diagnostics": [item.model_dump() for item in report.diagnostics],
    }


@handler(TaskType.CONFIG_APPLY, ConfigApplyParams)
async def config_apply(params: ConfigApplyParams, ctx: TaskContext) -> dict[str, Any]:
    """Resolve the node's config from a mode and overrides and merge it into config.toml and app.toml."""
    return await asyncio.to_thread(_apply, ctx.home, params)


def _spelling_duplicates(home: Path) -> list[Diagnostic]:
    """An ERROR for every key present in both spellings (`max_num_inbound_peers` and `max-num-inbound-peers`) in
    config.toml or app.toml: the node reads one and silently ignores the other, so the file says two things."""
    found: list[Diagnostic] = []
    for name in CONFIG_FILES:
        document = load_toml_document(home / "config" / name)
        for first, second in spelling_duplicates(document):
            found.append(
                Diagnostic(
                    severity="ERROR",
                    field=f"{name}:{second}",
                    message=f"{name} has both {first} and {second}: the node reads one spelling and ignores the "
                    "other; delete the one the node does not use",
                )
            )
    return found


def _validate(home: Path) -> dict[str, Any]:
    loaded = load_config(home)
    unknown = unknown_keys_on_disk(home / "config")
    report = validate(loaded.config, extra=[*loaded.diagnostics, *_spelling_duplicates(home), *unknown])
    _refuse_invalid(report)
    return report.result()


@handler(TaskType.CONFIG_VALIDATE, ConfigValidateParams)
async def config_validate(params: ConfigValidateParams, ctx: TaskContext) -> dict[str, Any]:
    """Validate config.toml and app.toml as they are; the diagnostics are the result, an ERROR fails the task."""
    return await asyncio.to_thread(_validate, ctx.home)


RESTART_REQUIRED = (
    "seid reads config.toml and app.toml only at start (it has no config-file watcher and no reload signal or RPC "
    "for these keys); the new values take effect when seid restarts"
)
ADMIN_OFF = (
    "logging.level is applied live only through seid's admin gRPC server, which this node does not run (it needs "
    "app.toml [admin_server] admin_enabled = true, and [api] enable or [grpc] enable)"
)


def _reload(home: Path, params: ConfigReloadParams) -> tuple[dict[str, Any], dict[str, Any]]:
    entries = {key: lookup(key, label=f"fields[{key!r}]") for key in params.fields}
    needs_restart = sorted(key for key, entry in entries.items() if not entry.hot)
    if needs_restart:
        raise ParamsInvalid(
            f"fields {needs_restart} are not hot-reloadable and require a restart",
            hint="change them with config-apply and restart seid",
        )
    typed = parse_overrides(params.fields, field="fields")
    loaded = load_config(home)
    config = loaded.config.replace(typed)
    report = validate(config, extra=_still_relevant(loaded.diagnostics, set(typed)))
    _refuse_invalid(report)
    written = write_patches(home, render_patches(config, home, keys=list(typed), include_meta=False))
    return {
        "fields": sorted(typed),
        "deprecatedKeys": deprecated_keys(params.fields),
        "changed": written,
        "diagnostics": [item.model_dump() for item in report.diagnostics],
    }, typed


async def _apply_live(home: Path, typed: dict[str, Any], allowed: str) -> tuple[list[str], list[str]]:
    """Make the running seid take what it can without a restart: only `logging.level`, through the admin gRPC
    server when app.toml enables it, at app.toml's admin address if that is loopback, pod-local or exactly `allowed`
    (`SEI_ADMIN_ADDRESS`). Returns (keys applied live, notes)."""
    if "logging.level" not in typed:
        return [], []
    address = await asyncio.to_thread(admin_address, home)
    if address is None:
        return [], [ADMIN_OFF]
    try:
        dial = await asyncio.to_thread(dial_address, address, allowed=allowed)
        await set_log_level(dial, str(typed["logging.level"]))
    except AdminError as error:
        return [], [f"logging.level was not applied live: {error}"]
    return ["logging.level"], []


@handler(TaskType.CONFIG_RELOAD, ConfigReloadParams, precheck=hot_keys_only)
async def config_reload(params: ConfigReloadParams, ctx: TaskContext) -> dict[str, Any]:
    """Change hot-reloadable keys in config.toml / app.toml; any other key is refused by name. `logging.level` is
    applied to the running seid through its admin gRPC server when that is enabled; the result says which keys still
    need a restart (see docs/tasks/config-reload.md). It never reports a reload seid did not take."""
    result, typed = await asyncio.to_thread(_reload, ctx.home, params)
    applied, notes = await _apply_live(ctx.home, typed, ctx.settings.admin_address)
    pending = sorted(set(typed) - set(applied))
    if pending:
        notes.append(RESTART_REQUIRED)
    return {
        **result,
        "appliedLive": applied,
        "restartRequired": bool(pending),
        "pendingRestart": pending,
        "notes": notes,
    }


HANDLERS = [config_apply, config_validate, config_reload]

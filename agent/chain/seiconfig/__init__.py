"""The unified Sei node config, key for key sei-config's (see docs/config-model.md).

- `model`: sei-config's registry table (`sei-config-table.json`, produced by scripts/seiconfig-table.py) read into
  `KeySpec`s, the project's documented decisions over it, `Mode`, `SeiConfig`, schema migrations.
- `registry`: `ConfigKey` per key; `parse_overrides` refuses unknown keys and wrong types by name and resolves the
  project's old key names (deprecated aliases).
- `validate`: sei-config's checks with its fields and messages, plus the project's few, as diagnostics.
- `disk`: reading the files into a config, and rendering it back keeping comments (through `agent.io.toml`).
"""

from .disk import (
    LoadedConfig,
    config_path,
    load_config,
    read_key,
    render_patches,
    write_keys,
    write_patches,
)
from .model import (
    CURRENT_VERSION,
    DEFAULT_DECISIONS,
    DEPRECATED_ALIASES,
    Mode,
    SeiConfig,
    canonical_key,
    key_specs,
    migrate,
    table,
)
from .registry import ConfigKey, deprecated_keys, lookup, parse_overrides, registry
from .validate import EXTRA_RULES, Diagnostic, ValidationReport, validate

__all__ = [
    "CURRENT_VERSION",
    "DEFAULT_DECISIONS",
    "DEPRECATED_ALIASES",
    "EXTRA_RULES",
    "ConfigKey",
    "Diagnostic",
    "LoadedConfig",
    "Mode",
    "SeiConfig",
    "ValidationReport",
    "canonical_key",
    "config_path",
    "deprecated_keys",
    "key_specs",
    "load_config",
    "lookup",
    "migrate",
    "parse_overrides",
    "read_key",
    "registry",
    "render_patches",
    "table",
    "validate",
    "write_keys",
    "write_patches",
]

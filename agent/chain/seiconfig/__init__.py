"""The unified Sei node config: one typed model over config.toml and app.toml (see docs/config-model.md).

- `model`: `SeiConfig` and its sections, `Mode`, per-mode defaults; each leaf field knows its file and TOML key,
  whether it is hot-reloadable and which modes require it.
- `registry`: the dotted keys derived from the model; `parse_overrides` refuses unknown keys and wrong types by name.
- `validate`: structured diagnostics `{severity, field, message}`.
- `disk`: reading the files into the model, and rendering it back keeping comments (through `agent.io.toml`).
"""

from .disk import (
    LoadedConfig,
    config_path,
    load_config,
    read_key,
    render_patches,
    with_overrides,
    write_keys,
    write_patches,
)
from .model import CURRENT_VERSION, MODE_DEFAULTS, Mode, SeiConfig
from .registry import ConfigKey, lookup, parse_overrides, registry
from .validate import Diagnostic, ValidationReport, validate

__all__ = [
    "CURRENT_VERSION",
    "MODE_DEFAULTS",
    "ConfigKey",
    "Diagnostic",
    "LoadedConfig",
    "Mode",
    "SeiConfig",
    "ValidationReport",
    "config_path",
    "load_config",
    "lookup",
    "parse_overrides",
    "read_key",
    "registry",
    "render_patches",
    "validate",
    "with_overrides",
    "write_keys",
    "write_patches",
]

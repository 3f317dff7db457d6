"""The registry of unified keys: one `ConfigKey` per key of sei-config's table (model.key_specs).

Each entry knows its dotted key (`network.p2p.persistent_peers`), its sei-config type, where it is written, its
defaults per mode and whether it is hot-reloadable, and parses a value of its type from the string wire form
sei-config's overrides use (`"5000"`, `"true"`, `"a,b"`, `"10s"`) or from the JSON value itself. `parse_overrides`
turns a params dict into typed values keyed by sei-config's names, or raises `ParamsInvalid` naming the key and the
value: an unknown key (with the closest known keys as a hint) or a value of the wrong type. The project's old names
(`network.p2p.laddr`...) are accepted as deprecated aliases.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from agent.models import ParamsInvalid

from .model import DEPRECATED_ALIASES, META_KEYS, KeySpec, Mode, Placement, canonical_key, key_specs

TYPE_NAMES = {
    "string": "string",
    "int": "integer",
    "uint": "non-negative integer",
    "float": "number",
    "bool": "boolean",
    "duration": "Go duration such as '30s' or '168h0m0s'",
    "[]string": "list of strings (a list or a comma-separated string)",
    "other": "list of [name, value] pairs",
}

_GO_DURATION = re.compile(r"[-+]?(?:0|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)")
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)


class _BadValue(ValueError):
    pass


def _integer(value: Any, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool):
        raise _BadValue("a boolean is not a number")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[-+]?\d+", text):
            raise _BadValue("not an integer")
        value = int(text)
    if isinstance(value, float):
        if not value.is_integer():
            raise _BadValue("not an integer")
        value = int(value)
    if not isinstance(value, int):
        raise _BadValue("not an integer")
    if not bounds[0] <= value <= bounds[1]:
        raise _BadValue("out of range" if value >= 0 else "must be >= 0")
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise _BadValue("not a boolean (true/false)")


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        if value == "":
            return []
        parts = [part.strip() for part in value.split(",")]
        if any(not part for part in parts):
            raise _BadValue(f"empty entry in {value!r}")
        return parts
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _BadValue("not a list of strings")


def _pairs(value: Any) -> list[list[str]]:
    if isinstance(value, list) and all(
        isinstance(pair, list) and all(isinstance(item, str) for item in pair) for pair in value
    ):
        return [list(pair) for pair in value]
    raise _BadValue("not a list of [name, value] pairs")


def parse_value(type_name: str, value: Any) -> Any:
    """`value` as a value of sei-config type `type_name` (from its string wire form or a JSON value)."""
    if type_name == "string":
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _BadValue("not a string")
        return str(value)
    if type_name == "int":
        return _integer(value, _INT64)
    if type_name == "uint":
        return _integer(value, _UINT64)
    if type_name == "float":
        if isinstance(value, bool):
            raise _BadValue("a boolean is not a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _BadValue("not a number") from None
    if type_name == "bool":
        return _boolean(value)
    if type_name == "duration":
        if not isinstance(value, str) or not _GO_DURATION.fullmatch(value.strip()):
            raise _BadValue("not a Go duration")
        return value.strip()
    if type_name == "[]string":
        return _string_list(value)
    return _pairs(value)


@dataclass(frozen=True)
class ConfigKey:
    """One unified key."""

    spec: KeySpec

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.spec.type]

    @property
    def hot(self) -> bool:
        return self.spec.hot

    @property
    def placements(self) -> tuple[Placement, ...]:
        return self.spec.placements

    @property
    def file(self) -> str | None:
        """The file of the first placement; None for a key written to neither file (`chain.chain_id`)."""
        return self.spec.placements[0].file if self.spec.placements else None

    @property
    def toml_key(self) -> str | None:
        return self.spec.placements[0].toml if self.spec.placements else None

    def default(self, mode: Mode) -> Any:
        return self.spec.defaults[mode]

    def parse(self, value: Any, *, label: str) -> Any:
        """`value` as this key's type; `ParamsInvalid` naming `label`, the value and the expected type otherwise."""
        try:
            return parse_value(self.spec.type, value)
        except _BadValue as error:
            raise ParamsInvalid(f"{label}: invalid value {value!r}, expected {self.type_name}: {error}") from None


@cache
def registry() -> dict[str, ConfigKey]:
    """Every unified key by sei-config's name, `mode` and `version` included."""
    return {key: ConfigKey(spec) for key, spec in key_specs().items()}


def lookup(key: str, *, label: str) -> ConfigKey:
    """The entry for `key` (or its deprecated alias), or `ParamsInvalid` naming it with the closest known keys."""
    entry = registry().get(canonical_key(key))
    if entry is None:
        close = difflib.get_close_matches(key, [*registry(), *DEPRECATED_ALIASES], n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see docs/config-model.md for the known keys"
        raise ParamsInvalid(f"{label}: unknown config key {key!r}", hint=hint)
    return entry


def parse_overrides(overrides: Mapping[str, Any], *, field: str) -> dict[str, Any]:
    """Typed values by sei-config's key name for a dict of dotted key -> value; `ParamsInvalid` naming
    `field[key]` on the first bad one. Every key is checked before any value, so a typo is reported even when
    another value is also wrong; a key given both under its name and a deprecated alias is refused."""
    entries = {key: lookup(key, label=f"{field}[{key!r}]") for key in overrides}
    seen: dict[str, str] = {}
    for given, entry in entries.items():
        if entry.key in seen:
            raise ParamsInvalid(f"{field}: {seen[entry.key]!r} and {given!r} are the same key {entry.key!r}")
        seen[entry.key] = given
    typed = {entry.key: entry.parse(overrides[given], label=f"{field}[{given!r}]") for given, entry in entries.items()}
    if "mode" in typed and typed["mode"] not in {mode.value for mode in Mode}:
        raise ParamsInvalid(
            f"{field}['mode']: unknown mode {typed['mode']!r}; valid modes: validator, full, seed, archive"
        )
    return typed


def deprecated_keys(keys: Mapping[str, Any]) -> list[str]:
    """The keys of `keys` that are deprecated aliases."""
    return sorted(key for key in keys if key in DEPRECATED_ALIASES)


__all__ = ["META_KEYS", "ConfigKey", "deprecated_keys", "lookup", "parse_overrides", "parse_value", "registry"]

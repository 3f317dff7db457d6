"""The registry of unified keys, derived from the model: one `ConfigKey` per leaf field of `SeiConfig`.

Each entry knows its dotted key (`network.p2p.persistent_peers`), its type (and parses a value of it from a string,
the wire form sei-config uses, or from a JSON value), its file and TOML key, whether it is hot-reloadable, and which
modes require it. `parse_overrides` turns a params dict into typed values or raises `ParamsInvalid` naming the key
and the value: an unknown key (with the closest known keys as a hint) or a value of the wrong type.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Union

from pydantic import BaseModel, TypeAdapter, ValidationError

from agent.models import ParamsInvalid
from agent.models.params.node import GoDuration, PeerAddress, RpcAddress

from .model import ListenAddress, SeiConfig, Toml


@dataclass(frozen=True)
class ConfigKey:
    """One unified key."""

    key: str
    toml: Toml
    type_name: str
    adapter: TypeAdapter[Any]
    default: Any

    @property
    def file(self) -> str:
        return self.toml.file

    @property
    def toml_key(self) -> str:
        return self.toml.key

    @property
    def hot(self) -> bool:
        return self.toml.hot

    def parse(self, value: Any, *, label: str) -> Any:
        """`value` as this key's type; `ParamsInvalid` naming `label`, the value and the expected type otherwise."""
        try:
            return self.adapter.validate_python(value)
        except ValidationError as error:
            reasons = "; ".join(dict.fromkeys(_reason(problem) for problem in error.errors()))
            raise ParamsInvalid(f"{label}: invalid value {value!r}, expected {self.type_name}: {reasons}") from None


def _reason(problem: Mapping[str, Any]) -> str:
    message = str(problem["msg"])
    return message.removeprefix("Value error, ")


_NAMED_TYPES: list[tuple[Any, str]] = [
    (GoDuration, "Go duration such as '30s' or '168h0m0s'"),
    (PeerAddress, "peer address <node id>@<host>:<port>"),
    (RpcAddress, "RPC address host:port"),
    (ListenAddress, "listen address such as tcp://0.0.0.0:26656"),
]


def _describe(annotation: Any, metadata: Iterable[Any] = ()) -> str:
    """A reader's name for a field type. pydantic flattens a top-level `Annotated` alias into the field's metadata,
    so a named alias is recognised either as a whole (inside a union or list) or by its metadata."""
    present = list(metadata)
    for named, name in _NAMED_TYPES:
        if annotation == named or (present and all(item in present for item in named.__metadata__)):
            return name
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _describe(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return " or ".join(_describe(member) for member in members)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin is list:
        return f"list of {_describe(typing.get_args(annotation)[0])}"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _leaf_keys(model: type[BaseModel], prefix: str) -> Iterable[ConfigKey]:
    defaults = model()
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _leaf_keys(field.annotation, f"{dotted}.")
            continue
        markers = [item for item in field.metadata if isinstance(item, Toml)]
        if not markers:
            continue  # version and mode are not override keys
        constraints = [item for item in field.metadata if not isinstance(item, Toml)]
        annotation: Any = field.annotation
        annotated: Any = typing.Annotated[(annotation, *constraints)] if constraints else annotation
        type_name = _describe(field.annotation, constraints)
        if markers[0].comma:
            type_name += " (a list or a comma-separated string)"
        yield ConfigKey(dotted, markers[0], type_name, TypeAdapter(annotated), getattr(defaults, name))


@cache
def registry() -> dict[str, ConfigKey]:
    """Every unified key, in model order."""
    return {entry.key: entry for entry in _leaf_keys(SeiConfig, "")}


def lookup(key: str, *, label: str) -> ConfigKey:
    """The entry for `key`, or `ParamsInvalid` naming it (with the closest known keys as a hint)."""
    entry = registry().get(key)
    if entry is None:
        close = difflib.get_close_matches(key, list(registry()), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see docs/config-model.md for the known keys"
        raise ParamsInvalid(f"{label}: unknown config key {key!r}", hint=hint)
    return entry


def parse_overrides(overrides: Mapping[str, Any], *, field: str) -> dict[str, Any]:
    """Typed values for a dict of dotted key -> value; `ParamsInvalid` naming `field[key]` on the first bad one.

    Every key is checked before any value, so a typo is reported even when another value is also wrong.
    """
    entries = {key: lookup(key, label=f"{field}[{key!r}]") for key in overrides}
    return {key: entries[key].parse(value, label=f"{field}[{key!r}]") for key, value in overrides.items()}

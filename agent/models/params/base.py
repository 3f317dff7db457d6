"""The base of every params model (the seed's TypedHandler decoding, made strict and explicit)."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

CHAIN_ID_MAX_LENGTH = 50
"""CometBFT's `MaxChainIDLen`: a longer chain ID is refused by the node when it loads genesis."""
_CHAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


_log = logging.getLogger("agent.params")


def wire_name(field_name: str) -> str:
    """The camelCase wire name of a field: `p2p_port` -> `p2pPort`, `s3_key` -> `s3Key`.

    Each `_`-separated word after the first gets an upper-case first letter and nothing else changes; pydantic's
    `to_camel` also upper-cases a letter that follows a digit (`p2PPort`), which no user would type.
    """
    first, *rest = field_name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


class TaskParams(BaseModel):
    """Params of one task type: camelCase on the wire, unknown keys refused, immutable once validated.

    Unlike the seed (case-insensitive names, unknown keys ignored, zero values for missing keys), a typo in a params
    key is an error that names the key, so a misspelt option can never silently fall back to a default.

    `deprecated_names` maps an old wire name to its current one. While the API is `v1alpha1`, a renamed field keeps
    accepting its old spelling (logged as deprecated; giving both spellings is an error); the old spelling goes away
    with the next API version.
    """

    model_config = ConfigDict(alias_generator=wire_name, populate_by_name=True, extra="forbid", frozen=True)

    deprecated_names: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _accept_deprecated_names(cls, data: Any) -> Any:
        if not cls.deprecated_names or not isinstance(data, dict):
            return data
        renamed = dict(data)
        for old, new in cls.deprecated_names.items():
            if old not in renamed:
                continue
            if new in renamed:
                raise ValueError(f"{old!r} is the deprecated spelling of {new!r}: give only {new!r}")
            renamed[new] = renamed.pop(old)
            _log.warning("params field %r is deprecated, spell it %r (accepted until the next API version)", old, new)
        return renamed


def check_chain_id(value: str) -> str:
    """The one chain-ID rule of every params model. `""` passes: where a chain ID is optional it means the agent's
    default (`SEI_CHAIN_ID`); a model whose chain ID is required checks emptiness itself."""
    if not value:
        return value
    if len(value) > CHAIN_ID_MAX_LENGTH:
        raise ValueError(f"{value!r} is {len(value)} characters, at most {CHAIN_ID_MAX_LENGTH} allowed")
    if not _CHAIN_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} may contain only letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    return value


ChainId = Annotated[str, AfterValidator(check_chain_id)]
"""A chain ID, or `""` for the agent's default chain."""


def format_validation_error(error: ValidationError, prefix: str = "params") -> str:
    """One line per problem, each naming the field by its wire path: `params.files."../x.toml": escapes config/`."""
    lines = []
    for problem in error.errors():
        path = prefix
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        elif problem["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{path}: {message}")
    return "; ".join(lines)

"""The base of every params model (the seed's TypedHandler decoding, made strict and explicit)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

CHAIN_ID_MAX_LENGTH = 50
"""CometBFT's `MaxChainIDLen`: a longer chain ID is refused by the node when it loads genesis."""
_CHAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class TaskParams(BaseModel):
    """Params of one task type: camelCase on the wire, unknown keys refused, immutable once validated.

    Unlike the seed (case-insensitive names, unknown keys ignored, zero values for missing keys), a typo in a params
    key is an error that names the key, so a misspelt option can never silently fall back to a default.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


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

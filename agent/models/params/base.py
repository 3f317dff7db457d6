"""The base of every params model (the seed's TypedHandler decoding, made strict and explicit)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class TaskParams(BaseModel):
    """Params of one task type: camelCase on the wire, unknown keys refused, immutable once validated.

    Unlike the seed (case-insensitive names, unknown keys ignored, zero values for missing keys), a typo in a params
    key is an error that names the key, so a misspelt option can never silently fall back to a default.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


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

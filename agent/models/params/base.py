"""The base of every params model (the seed's TypedHandler decoding, made strict and explicit)."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, ClassVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from ..errors import did_you_mean

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


def format_validation_error(
    error: ValidationError, prefix: str = "params", model: type[BaseModel] | None = None
) -> str:
    """One line per problem, each naming the field by its wire path: `params.files."../x.toml": escapes config/`.

    Given the `model` that was validated, an unknown field also gets the closest known one: `params.p2pPrt: unknown
    field (did you mean 'p2pPort'?)`.
    """
    lines = []
    for problem in error.errors():
        path = prefix
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
            if model is not None and problem["loc"]:
                message += did_you_mean(str(problem["loc"][-1]), field_names_at(model, problem["loc"][:-1]))
        elif problem["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


def field_names_at(model: type[BaseModel], location: tuple[int | str, ...]) -> set[str]:
    """The wire names of the fields of the object at `location` (a pydantic error location) inside `model`.

    List indexes are skipped, and a part naming a `type`-tagged variant (pydantic puts the tag in the location of a
    discriminated union's error) selects that variant; an unresolvable location gives no names.
    """
    models = [model]
    for part in location:
        if isinstance(part, int):
            continue
        following: list[type[BaseModel]] = []
        for current in models:
            field = next(
                (info for name, info in current.model_fields.items() if part in (name, info.alias)),
                None,
            )
            if field is not None:
                following += _models_in(field.annotation)
            elif "type" in current.model_fields and part in get_args(current.model_fields["type"].annotation):
                following.append(current)
        models = following
    return {info.alias or name for current in models for name, info in current.model_fields.items()}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for argument in get_args(annotation) for found in _models_in(argument)]

"""The base of every params model: strict, explicit decoding of a task's params."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, ClassVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

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

    Names are exact and unknown keys are refused: a typo in a params key is an error that names the key, so a
    misspelt option can never silently fall back to a default.

    `deprecated_names` maps an old wire name to its current one. While the API is `v1alpha1`, a renamed field keeps
    accepting its old spelling (logged as deprecated; giving both spellings is an error); the old spelling goes away
    with the next API version. Params from the wire (validated with `WIRE_CONTEXT`: the engine, hence the NodeTask,
    HTTP and local paths) are treated the same way when they use a field's Python name (`p2p_port` for `p2pPort`):
    accepted, logged as deprecated, and refused beside the wire name, so no field has a silent second spelling.
    """

    model_config = ConfigDict(alias_generator=wire_name, populate_by_name=True, extra="forbid", frozen=True)

    deprecated_names: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _accept_deprecated_names(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        old_names = dict(cls.deprecated_names)
        if isinstance(info.context, dict) and info.context.get("wire"):
            old_names.update(cls._python_names())
        if not old_names:
            return data
        renamed = dict(data)
        for old, new in old_names.items():
            if old not in renamed:
                continue
            if new in renamed:
                raise ValueError(f"{old!r} is the deprecated spelling of {new!r}: give only {new!r}")
            renamed[new] = renamed.pop(old)
            _log.warning("params field %r is deprecated, spell it %r (accepted until the next API version)", old, new)
        return renamed

    @classmethod
    def _python_names(cls) -> dict[str, str]:
        """Python field name -> wire name, for the fields whose two names differ (`p2p_port` -> `p2pPort`)."""
        return {name: info.alias for name, info in cls.model_fields.items() if info.alias and info.alias != name}


WIRE_CONTEXT = {"wire": True}
"""Validation context of params that came from outside (a NodeTask, the HTTP API, a manifest): see `TaskParams`."""


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
        elif problem["type"] in ("union_tag_not_found", "union_tag_invalid"):
            message = _union_tag_message(problem, model)
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


def _union_tag_message(problem: Any, model: type[BaseModel] | None) -> str:
    """A discriminated union's missing or unknown `type`, with the valid types (not pydantic's "Unable to extract
    tag using discriminator")."""
    tags = union_tags_at(model, problem["loc"]) if model is not None else []
    if not tags:  # the location did not resolve: pydantic's own list
        tags = [tag.strip().strip("'") for tag in str(problem.get("ctx", {}).get("expected_tags", "")).split(",")]
        tags = [tag for tag in tags if tag]
    valid = f"one of {', '.join(tags)}" if tags else "see the task's docs"
    if problem["type"] == "union_tag_not_found":
        return f"'type' is missing: {valid}"
    given = problem.get("ctx", {}).get("tag", "")
    return f"unknown type {given!r}{did_you_mean(str(given), set(tags))}: {valid}"


def union_tags_at(model: type[BaseModel], location: tuple[int | str, ...]) -> list[str]:
    """The `type` values of the variants of the discriminated union at `location` inside `model`, in order."""
    tags: list[str] = []
    for variant in models_at(model, location):
        field = variant.model_fields.get("type")
        if field is not None:
            tags += [tag for tag in get_args(field.annotation) if isinstance(tag, str) and tag not in tags]
    return tags


def field_names_at(model: type[BaseModel], location: tuple[int | str, ...]) -> set[str]:
    """The wire names of the fields of the object at `location` (a pydantic error location) inside `model`.

    List indexes are skipped, and a part naming a `type`-tagged variant (pydantic puts the tag in the location of a
    discriminated union's error) selects that variant; an unresolvable location gives no names.
    """
    return {info.alias or name for current in models_at(model, location) for name, info in current.model_fields.items()}


def models_at(model: type[BaseModel], location: tuple[int | str, ...]) -> list[type[BaseModel]]:
    """The models the object at `location` inside `model` may be (several for a union); see `field_names_at`."""
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
    return models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for argument in get_args(annotation) for found in _models_in(argument)]

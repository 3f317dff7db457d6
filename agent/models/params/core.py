"""Params of the node-setup tasks: config-patch and generate-identity."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from .base import CHAIN_ID_MAX_LENGTH, ChainId, TaskParams

MONIKER_MAX_LENGTH = 70
"""The Cosmos SDK's `MaxMonikerLength` for a validator description; a longer moniker cannot go into a gentx."""


class ConfigPatchParams(TaskParams):
    """`config-patch`: RFC 7386 merge patches for TOML files in `<home>/config/`.

    Only `.toml` files: the JSON files of `config/` are the node and validator keys and genesis, which no patch may
    touch (genesis has its own tasks). Whether a name escapes `config/` (`..`, absolute, through a symlink) needs the
    disk and is checked by the handler, still before anything is written.
    """

    files: dict[str, dict[str, Any]] = Field(
        description='File name under config/ -> merge patch, e.g. {"config.toml": {"p2p": {"persistent-peers": ""}}}.'
    )
    match_key_spelling: bool = Field(
        default=False,
        description="Write each key with the '-' or '_' spelling the file already uses (persistent_peers lands on an "
        "existing persistent-peers); off by default, so keys are written exactly as given.",
    )
    strict: bool = Field(
        default=False,
        description="Refuse (ParamsInvalid, nothing written) a key seid does not read from config.toml, app.toml or "
        "client.toml; by default such a key is written and reported as a WARNING diagnostic.",
    )

    @field_validator("files")
    @classmethod
    def _toml_files_only(cls, files: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not files:
            raise ValueError("at least one file is required")
        for name in files:
            if not name.endswith(".toml") or name.rsplit("/", 1)[-1] == ".toml":
                raise ValueError(f"{name!r}: only .toml files under config/ can be patched")
        return files


class GenerateIdentityParams(TaskParams):
    """`generate-identity`: the chain this node's minimal genesis is for, and the node's moniker."""

    chain_id: ChainId = Field(description=f"Chain ID: 1-{CHAIN_ID_MAX_LENGTH} characters of A-Z a-z 0-9 _ . -")
    moniker: str = Field(description="Human-readable node name written to config.toml (1-70 printable characters).")

    @field_validator("chain_id")
    @classmethod
    def _chain_id_required(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("moniker")
    @classmethod
    def _moniker_printable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if value != value.strip():
            raise ValueError(f"{value!r} has leading or trailing whitespace")
        if len(value) > MONIKER_MAX_LENGTH:
            raise ValueError(f"is {len(value)} characters, at most {MONIKER_MAX_LENGTH} allowed")
        if not value.isprintable():
            raise ValueError(f"{value!r} contains control characters")
        return value

"""Params of the node lifecycle tasks: stop-seid, restart-seid and reset-data."""

from __future__ import annotations

from pydantic import Field

from .base import TaskParams
from .node import RpcAddress

DEFAULT_GRACE_SECONDS = 90.0
"""How long seid gets to exit after SIGTERM (the original's 90 s): a validator flushing its databases at a large
height can take a minute."""


class _NodeRpc(TaskParams):
    rpc_endpoint: RpcAddress | None = Field(
        default=None,
        description="Deprecated: accepted only when it names the agent's own SEI_RPC_ENDPOINT (a no-op); any other "
        "value is refused by the handler (ParamsInvalid). Whether the node runs is judged from the agent's settings "
        "and /proc, never from a param.",
    )


class StopSeidParams(_NodeRpc):
    """`stop-seid`: SIGTERM the node process and wait for it to exit; never SIGKILL."""

    grace_seconds: float = Field(
        default=DEFAULT_GRACE_SECONDS, ge=1, le=3600, description="Seconds to wait for the exit after SIGTERM."
    )


class RestartSeidParams(StopSeidParams):
    """`restart-seid`: stop-seid, then wait until the node's RPC answers again."""

    ready_timeout_seconds: float = Field(
        default=300, ge=1, le=86_400, description="Seconds to wait for the RPC to answer after the stop."
    )


class ResetDataParams(_NodeRpc):
    """`reset-data`: wipe `data/` of a stopped (held) node."""

    keep_signing_state: bool = Field(
        default=True,
        description="Carry the last signed height/round/step into the fresh priv_validator_state.json, so the "
        "validator can never sign a height it signed before the reset. false: start at height 0 (only for a key "
        "that joins a new chain whose heights start again below the old ones).",
    )

"""The rules a task's params must meet that need more than its params model: its handler's registry (config keys)
or the agent's settings (a default the params fall back on). They are checked before a task runs, in one place:
`check_task` (the engine before every run and on submit, the HTTP API's check, `local --check` with `--env-file`).

Each precheck is `fn(params, settings)` raising `ParamsInvalid` in the params models' shape: `params.<field>: <why>`,
with a hint. A family attaches one to its handler (`@handler(TaskType.X, XParams, precheck=...)`); the checks here are
the ones several families share. The handlers keep their own checks, which then never fire for a task that passed.
"""

from __future__ import annotations

from typing import Any

from agent.chain.seiconfig import lookup
from agent.models import ParamsInvalid
from agent.models.settings import AgentSettings


def hot_keys_only(params: Any, settings: AgentSettings) -> None:
    """config-reload: every field is a known key that seid re-reads while running."""
    entries = {key: lookup(key, label=f"params.fields[{key!r}]") for key in params.fields}
    needs_restart = sorted(key for key, entry in entries.items() if not entry.hot)
    if needs_restart:
        raise ParamsInvalid(
            f"params.fields: {needs_restart} are not hot-reloadable and require a restart (seid reads them only at "
            "start)",
            hint="change them with config-apply and restart seid",
        )


def genesis_bucket_known(params: Any, settings: AgentSettings) -> None:
    """Tasks that always use the genesis bucket: `bucket` given, or SEI_GENESIS_BUCKET set on the agent."""
    if not (params.bucket or settings.genesis_bucket):
        raise ParamsInvalid(
            "params.bucket: not given, and SEI_GENESIS_BUCKET is not set",
            hint="pass params.bucket or set SEI_GENESIS_BUCKET on the agent",
        )


def snapshot_layout_known(params: Any, settings: AgentSettings) -> None:
    """snapshot-upload(-once), which always use their bucket and prefix: `bucket` or SEI_SNAPSHOT_BUCKET, and
    `prefix` or a chain ID for the default `<chainId>/state-sync/`. (snapshot-restore is left to its handler: with
    its done-marker present it uses neither.)"""
    params.bucket_or(settings.snapshot_bucket, "SEI_SNAPSHOT_BUCKET")  # the handler's own resolution
    if params.prefix is None and not (params.chain_id or settings.chain_id):
        raise ParamsInvalid(
            "params.prefix: not given, and the default <chainId>/state-sync/ needs params.chainId or SEI_CHAIN_ID"
        )


def genesis_peers_bucket_known(params: Any, settings: AgentSettings) -> None:
    """set-genesis-peers: `bucket` or SEI_GENESIS_BUCKET, resolved as its handler does."""
    params.bucket_or(settings.genesis_bucket, "SEI_GENESIS_BUCKET")

"""Agent settings: where the node's home is, who the agent is, and the defaults tasks fall back on.

Read from the environment by `AgentSettings.from_env`; the CLI overrides individual fields from flags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class AgentSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path = Path("/sei")
    """The node's home directory (`SEI_HOME`), shared with seid: `config/`, `data/`, markers."""
    db_path: Path | None = None
    """The SQLite store (`NODETASK_DB`); default `<home>/nodetask-agent.db`. Must be on block storage, not NFS."""
    http_port: int = 7777
    pod_name: str = ""
    pod_namespace: str = ""
    pod_uid: str = ""
    chain_id: str = ""
    """Default chain ID for tasks that need one and are not given it in params (`SEI_CHAIN_ID`)."""
    genesis_bucket: str = ""
    genesis_region: str = ""
    snapshot_bucket: str = ""
    snapshot_region: str = ""
    s3_endpoint_url: str = ""
    """S3-compatible endpoint (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`); empty means AWS."""
    rpc_endpoint: str = "http://localhost:26657"
    """The local node's CometBFT RPC (`SEI_RPC_ENDPOINT`)."""
    seid_binary: str = "seid"
    """The node binary (`SEI_BINARY`): what export-state runs, and the name stop-seid, restart-seid and reset-data look
    for in /proc (`<name> start`; a path counts by its last component). `simd` in the real chain tier's tests."""
    retention: timedelta = Field(default=timedelta(days=30))
    """Terminal store rows older than this are pruned (`NODETASK_RETENTION_HOURS`)."""

    @property
    def store_path(self) -> Path:
        return self.db_path or self.home / "nodetask-agent.db"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> AgentSettings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        mapping = {
            "home": "SEI_HOME",
            "db_path": "NODETASK_DB",
            "http_port": "NODETASK_HTTP_PORT",
            "pod_name": "POD_NAME",
            "pod_namespace": "POD_NAMESPACE",
            "pod_uid": "POD_UID",
            "chain_id": "SEI_CHAIN_ID",
            "genesis_bucket": "SEI_GENESIS_BUCKET",
            "genesis_region": "SEI_GENESIS_REGION",
            "snapshot_bucket": "SEI_SNAPSHOT_BUCKET",
            "snapshot_region": "SEI_SNAPSHOT_REGION",
            "rpc_endpoint": "SEI_RPC_ENDPOINT",
            "seid_binary": "SEI_BINARY",
        }
        for field, variable in mapping.items():
            value = env.get(variable, "").strip()
            if value:
                values[field] = value
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if endpoint:
            values["s3_endpoint_url"] = endpoint
        if env.get("NODETASK_RETENTION_HOURS"):
            values["retention"] = timedelta(hours=float(env["NODETASK_RETENTION_HOURS"]))
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(values)

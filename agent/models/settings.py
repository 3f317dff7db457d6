"""Agent settings: where the node's home is, who the agent is, and the defaults tasks fall back on.

Read from the environment by `AgentSettings.from_env`; the CLI overrides individual fields from flags.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_BECH32_PREFIX = re.compile(r"[a-z0-9]{1,83}")
_DENOM = re.compile(r"[a-zA-Z][a-zA-Z0-9/:._-]{2,127}")


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
    # Chain identity: what the agent writes into keys, gentxs and genesis. Sei's by default; stock Cosmos SDK
    # `simd` is `cosmos` / `stake` (coin type 118 and secp256k1 account keys are the same on both).
    bech32_prefix: str = "sei"
    """Account address prefix (`SEI_BECH32_PREFIX`); the SDK derives `<p>pub`, `<p>valoper`, `<p>valcons`..."""
    bech32_validator_prefix: str = ""
    """Operator address prefix (`SEI_BECH32_VALIDATOR_PREFIX`); empty means `<bech32_prefix>valoper`."""
    bech32_consensus_prefix: str = ""
    """Consensus address prefix (`SEI_BECH32_CONSENSUS_PREFIX`); empty means `<bech32_prefix>valcons`."""
    bond_denom: str = "usei"
    """Staking denom when genesis has no `staking.params.bond_denom` (`SEI_BOND_DENOM`); genesis's wins."""
    coin_type: int = Field(default=118, ge=0, lt=2**31)
    """BIP44 coin type of new account keys, `m/44'/<coin_type>'/0'/0/0` (`SEI_COIN_TYPE`)."""
    gentx_account_numbers: Literal["zero", "initial-height"] = "zero"
    """Account number genesis transactions are signed with (`SEI_GENTX_ACCOUNT_NUMBERS`): `zero` always (Sei's node
    treats genesis by context), or `initial-height` (stock Cosmos SDK: 0 when the chain starts at height 1, the
    account's own number when genesis's `initial_height` is above 1, as in a fork)."""

    @field_validator("bech32_prefix", "bech32_validator_prefix", "bech32_consensus_prefix")
    @classmethod
    def _bech32_prefix(cls, value: str, info: ValidationInfo) -> str:
        if value and not _BECH32_PREFIX.fullmatch(value):
            raise ValueError(f"{info.field_name}: {value!r} is not a Bech32 prefix (1-83 of a-z and 0-9)")
        if info.field_name == "bech32_prefix" and not value:
            raise ValueError("bech32_prefix: must not be empty")
        return value

    @field_validator("bond_denom")
    @classmethod
    def _denom(cls, value: str) -> str:
        if not _DENOM.fullmatch(value):
            raise ValueError(f"bond_denom: {value!r} is not a denom (a letter, then 2-127 of a-z A-Z 0-9 /:._-)")
        return value

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
            "bech32_prefix": "SEI_BECH32_PREFIX",
            "bech32_validator_prefix": "SEI_BECH32_VALIDATOR_PREFIX",
            "bech32_consensus_prefix": "SEI_BECH32_CONSENSUS_PREFIX",
            "bond_denom": "SEI_BOND_DENOM",
            "coin_type": "SEI_COIN_TYPE",
            "gentx_account_numbers": "SEI_GENTX_ACCOUNT_NUMBERS",
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

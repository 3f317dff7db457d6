"""Params of the data tasks that move bytes through S3: snapshot-restore, snapshot-upload, configure-genesis,
result-export and set-genesis-peers.

Wire names follow the seed (`bucket`, `region`, `prefix`, `chainId`, `targetHeight`, `expectedGenesisHash`...).
Bucket and region may be left out: the handler then uses the agent's settings (`SEI_SNAPSHOT_BUCKET` /
`SEI_SNAPSHOT_REGION` for snapshots, `SEI_GENESIS_BUCKET` / `SEI_GENESIS_REGION` for genesis and peers) and fails
with `ParamsInvalid` naming both the param and the variable when neither is set. A prefix is normalised to end with
`/` (the seed's upload did this, its restore did not, so the two could disagree); an empty prefix is the bucket root.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from ..errors import ParamsInvalid
from .base import ChainId, TaskParams
from .node import RpcAddress

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def check_bucket_name(name: str) -> str:
    """S3's bucket naming rules (3-63 lowercase letters, digits, `.` and `-`, no `..`, not an IP address)."""
    if not name:
        return name
    if not _BUCKET.match(name) or ".." in name or ".-" in name or "-." in name:
        raise ValueError(
            f"{name!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit)"
        )
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name
    raise ValueError(f"{name!r} is not a valid S3 bucket name (it looks like an IP address)")


def _check_region(region: str) -> str:
    if region and not _REGION.match(region):
        raise ValueError(f"{region!r} is not a region name such as 'us-east-1'")
    return region


def normalize_prefix(prefix: str) -> str:
    """A key prefix ending with `/` (or empty for the bucket root); refuses a leading `/`, `//`, `..` and controls."""
    if not prefix:
        return prefix
    if prefix.startswith("/"):
        raise ValueError(f"prefix {prefix!r} must not start with '/' (S3 keys are relative to the bucket)")
    if any(ord(character) < 32 or ord(character) == 127 for character in prefix):
        raise ValueError(f"prefix {prefix!r} contains control characters")
    normalized = prefix if prefix.endswith("/") else prefix + "/"
    if "//" in normalized or ".." in normalized.split("/"):
        raise ValueError(f"prefix {prefix!r} contains an empty or '..' path segment")
    return normalized


def _check_sha256(value: str) -> str:
    if not _SHA256.match(value):
        raise ValueError(f"{value!r} is not a SHA-256 digest (64 hexadecimal characters)")
    return value.lower()


def _check_https_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(f"{url!r} is not an https:// URL (plain http and other schemes are refused)")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if parts.username or parts.password:
        raise ValueError("the URL must not carry credentials (they would be stored in the task's params)")
    return url


SnapshotCompression = Literal["gz", "lz4", "zst"]
BucketName = Annotated[str, AfterValidator(check_bucket_name)]
Region = Annotated[str, AfterValidator(_check_region)]
KeyPrefix = Annotated[str, AfterValidator(normalize_prefix)]
Sha256Hex = Annotated[str, AfterValidator(_check_sha256)]
HttpsUrl = Annotated[str, AfterValidator(_check_https_url)]


class S3Params(TaskParams):
    """A bucket and its region; empty means "the agent's setting" (see `bucket_or`)."""

    bucket: BucketName = ""
    region: Region = ""

    def bucket_or(self, default: str, variable: str) -> str:
        """The bucket from params, else `default` (a setting); ParamsInvalid naming both when neither is set."""
        bucket = self.bucket or default
        if not bucket:
            raise ParamsInvalid(
                f"params.bucket: no bucket given and {variable} is not set",
                hint=f"pass params.bucket or set {variable} on the agent",
            )
        try:
            return check_bucket_name(bucket)
        except ValueError as error:
            raise ParamsInvalid(f"{variable}: {error}") from None


class SnapshotLayoutParams(S3Params):
    """Where snapshots live: `s3://<bucket>/<prefix><height>.tar.<gz|lz4|zst>` plus `<prefix>latest.txt`.

    `prefix` defaults to `<chainId>/state-sync/` (the layout the original settled on), with `chainId` defaulting to
    `SEI_CHAIN_ID`; an explicit `""` means the bucket root.
    """

    prefix: KeyPrefix | None = None
    chain_id: ChainId = ""


class SnapshotRestoreParams(SnapshotLayoutParams):
    """`snapshot-restore`: the latest snapshot, or the one at `targetHeight`, into `data/snapshots/`."""

    target_height: int | None = Field(default=None, gt=0, description="Restore this height instead of the latest.")
    sha256: Sha256Hex | None = Field(default=None, description="SHA-256 of the archive object, verified.")
    disk_safety_factor: float = Field(
        default=2.0,
        ge=1.0,
        le=100.0,
        description="Free space needed before starting, as a multiple of the archive's size.",
    )


class SnapshotUploadParams(SnapshotLayoutParams):
    """`snapshot-upload`: the newest complete snapshot (second-highest height) to S3, once or every interval."""

    compression: SnapshotCompression = "zst"
    compression_level: int | None = Field(default=None, description="zstd -7..22, gzip 0..9; lz4 has no levels.")
    interval_seconds: int | None = Field(
        default=None, ge=1, description="Keep running, uploading every N seconds (the seed's loop)."
    )

    @model_validator(mode="after")
    def _level_fits_the_codec(self) -> SnapshotUploadParams:
        if self.compression_level is None:
            return self
        allowed = {"zst": range(-7, 23), "gz": range(10)}.get(self.compression)
        if allowed is None:
            raise ValueError("compressionLevel: lz4 has no compression levels here; leave it out")
        if self.compression_level not in allowed:
            raise ValueError(
                f"compressionLevel {self.compression_level} is out of range for {self.compression} "
                f"({allowed.start}..{allowed.stop - 1})"
            )
        return self


class SnapshotUploadOnceParams(SnapshotUploadParams):
    """`snapshot-upload-once`: one snapshot-upload run under a deadline (the current original's one-shot type)."""

    timeout_seconds: int = Field(
        default=7200, ge=1, le=7 * 24 * 3600, description="Deadline of the upload (the original's default 2 h)."
    )

    @model_validator(mode="after")
    def _no_interval(self) -> SnapshotUploadOnceParams:
        if self.interval_seconds is not None:
            raise ValueError("intervalSeconds: snapshot-upload-once uploads once; use snapshot-upload for the loop")
        return self


class ConfigureGenesisParams(S3Params):
    """`configure-genesis`: `config/genesis.json` from `url` (https) or `s3://<bucket>/<chainId>/genesis.json`."""

    chain_id: ChainId = ""
    url: HttpsUrl | None = None
    expected_sha256: Sha256Hex | None = None
    expected_genesis_hash: Sha256Hex | None = Field(default=None, description="The original's name for the pin.")

    @model_validator(mode="after")
    def _one_source_one_pin(self) -> ConfigureGenesisParams:
        if self.url and self.bucket:
            raise ValueError("give either url or bucket, not both")
        pins = {pin for pin in (self.expected_sha256, self.expected_genesis_hash) if pin}
        if len(pins) > 1:
            raise ValueError("expectedSha256 and expectedGenesisHash are both set and differ")
        return self

    @property
    def pinned_sha256(self) -> str | None:
        return self.expected_sha256 or self.expected_genesis_hash


class ResultExportParams(S3Params):
    """`result-export`: full pages of `block_results` as gzip NDJSON at `s3://<bucket>/<prefix><start>-<end>...`."""

    prefix: KeyPrefix = ""
    rpc_endpoint: RpcAddress = ""
    page_size: int = Field(default=1000, ge=1, le=10_000, description="Blocks per object (the seed used 1000).")
    max_pages: int | None = Field(default=None, ge=1, description="Stop after this many pages in one run.")
    canonical_rpc: RpcAddress | None = Field(
        default=None, description="Comparison mode: compare with this canonical node's blocks (pageSize default 100)."
    )
    migration_mode: bool = Field(default=False, description="Comparison: an app-hash mismatch is expected.")
    continue_on_divergence: bool = Field(default=False, description="Comparison: record divergences and go on.")
    shadow_evm_rpc: RpcAddress | None = Field(
        default=None, description="Comparison Layer 2: this (shadow) node's EVM JSON-RPC (with canonicalEvmRpc)."
    )
    canonical_evm_rpc: RpcAddress | None = Field(
        default=None, description="Comparison Layer 2: the canonical node's EVM JSON-RPC (with shadowEvmRpc)."
    )
    trace_rpc: RpcAddress | None = Field(
        default=None, description="Comparison Layer 2: where debug_traceBlockByNumber runs (default canonicalEvmRpc)."
    )
    layer2_max_keys: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Layer 2: keys read per block at most (the cap is reported)."
    )
    layer2_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Layer 2: deadline per block (the original's 30 s)."
    )

    @property
    def layer2(self) -> bool:
        """Whether comparison Layer 2 (EVM state) runs."""
        return bool(self.shadow_evm_rpc and self.canonical_evm_rpc)

    @model_validator(mode="after")
    def _comparison_fields_need_canonical_rpc(self) -> ResultExportParams:
        layer2 = [name for name in ("shadowEvmRpc", "canonicalEvmRpc", "traceRpc") if getattr(self, _snake(name))]
        if layer2 and not self.canonical_rpc:
            raise ValueError(f"{', '.join(layer2)}: comparison Layer 2 needs canonicalRpc (comparison mode)")
        if layer2 and not self.layer2:
            missing = "canonicalEvmRpc" if self.shadow_evm_rpc else "shadowEvmRpc"
            raise ValueError(f"{missing}: comparison Layer 2 needs both shadowEvmRpc and canonicalEvmRpc")
        if not self.canonical_rpc and (self.migration_mode or self.continue_on_divergence):
            raise ValueError("migrationMode and continueOnDivergence need canonicalRpc (comparison mode)")
        return self


DigestNormalization = Literal["semantic", "translator"]
DEFAULT_NORMALIZATIONS: tuple[DigestNormalization, ...] = ("semantic", "translator")


class EvmLogicalDigestParams(S3Params):
    """`evm-logical-digest`: `seidb evm-logical-digest` on a flatKV clone and a memIAVL snapshot at one height, one
    gzip JSON verdict per normalization at `s3://<bucket>/<prefix>endpoint-digest-<height>-<normalization>.json.gz`.

    The directories are resolved against the node's home when relative. The program run is agent configuration
    (`SEI_SEIDB_BINARY`); the original's `seidbPath` param is refused."""

    prefix: KeyPrefix = ""
    height: int = Field(gt=0, description="The block height both stores must be opened at.")
    flatkv_dir: str = Field(min_length=1, description="The flatKV data directory (`-d` of the flatkv run).")
    memiavl_dir: str = Field(min_length=1, description="The memIAVL root directory (holds current/, snapshot-*).")
    normalizations: list[DigestNormalization] = Field(
        default_factory=lambda: list(DEFAULT_NORMALIZATIONS),
        max_length=2,
        description="memIAVL normalizations to compare, one object each (empty means both).",
    )
    memiavl_open_mode: Literal["snapshot", "replay"] | None = Field(
        default=None,
        description="seidb's --memiavl-open-mode; unset leaves seidb's default (snapshot: needs snapshot-<height>).",
    )
    seidb_path: Any = Field(
        default=None,
        exclude=True,
        description="Refused: the seidb program is agent configuration (SEI_SEIDB_BINARY), never task input.",
    )

    @field_validator("seidb_path")
    @classmethod
    def _no_program_from_params(cls, value: Any) -> None:
        # A param naming a program to execute would let anyone who can create a NodeTask run a file of their choice
        # inside the agent's container.
        if value is not None:
            raise ValueError(
                "not accepted: the seidb program is agent configuration (SEI_SEIDB_BINARY / "
                "AgentSettings.seidb_binary), never a task param; remove seidbPath from the manifest"
            )
        return None

    @field_validator("flatkv_dir", "memiavl_dir")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if any(ord(character) < 32 for character in value) or value.startswith("-"):
            raise ValueError(f"{value!r} is not a directory path (control characters or a leading '-')")
        return value

    @field_validator("normalizations")
    @classmethod
    def _distinct(cls, value: list[DigestNormalization]) -> list[DigestNormalization]:
        unique = list(dict.fromkeys(value))
        return unique or list(DEFAULT_NORMALIZATIONS)


def _snake(name: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in name)


class SetGenesisPeersParams(S3Params):
    """`set-genesis-peers`: `s3://<bucket>/<chainId>/peers.json` into config.toml's persistent peers."""

    chain_id: ChainId = ""

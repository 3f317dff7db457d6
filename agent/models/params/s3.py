"""Field types and the base model for params that name S3 objects: bucket, region, key prefix, SHA-256 pins, HTTPS URLs,
and `S3Params` (`bucket` / `region` with the agent's settings as the fallback).

Wire names are the Go sidecar's (`bucket`, `region`, `prefix`, `chainId`...). Bucket and region may be left out: the
handler then uses the agent's settings (`SEI_SNAPSHOT_BUCKET` / `SEI_SNAPSHOT_REGION` for snapshots,
`SEI_GENESIS_BUCKET` / `SEI_GENESIS_REGION` for genesis and peers) and fails with `ParamsInvalid` naming both the param
and the variable when neither is set. A prefix is normalised to end with `/`, on upload and restore alike, so the two
always name the same objects; an empty prefix is the bucket root. `GenesisBucketParams` is the base of the genesis
ceremony's and export-state's params: where the ceremony's artifacts live.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, field_validator

from ..errors import ParamsInvalid
from .base import TaskParams, check_chain_id

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


class GenesisBucketParams(TaskParams):
    """Where the ceremony's artifacts live: `s3://<bucket>/<chainId>/...` (defaults from the agent's settings).

    `bucket` and `region` are spelt as in every other task that reads or writes S3; the ceremony's earlier
    `s3Bucket` / `s3Region` are accepted as deprecated spellings while the API is v1alpha1.
    """

    deprecated_names: ClassVar[dict[str, str]] = {"s3Bucket": "bucket", "s3Region": "region"}

    chain_id: str = ""
    bucket: str = ""
    region: str = ""

    _chain_id = field_validator("chain_id")(check_chain_id)

    @property
    def s3_bucket(self) -> str:
        """The former name of `bucket`, for code written before the rename."""
        return self.bucket

    @property
    def s3_region(self) -> str:
        """The former name of `region`, for code written before the rename."""
        return self.region

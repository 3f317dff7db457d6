"""configure-genesis: fetch `config/genesis.json` from S3 or an https URL, verified and written atomically.

Source: `url` (https only; redirects to anything but https are refused) or `s3://<bucket>/<chainId>/genesis.json`,
with bucket, region and chain ID defaulting to `SEI_GENESIS_BUCKET`, `SEI_GENESIS_REGION` and `SEI_CHAIN_ID`. The
original also shipped the genesis files of pacific-1, atlantic-2 and arctic-1 inside its binary (from sei-config);
those files are not vendored here (they were not available to this project), so for those chains a `url` or a bucket
is needed too, and the error says so.

The body is streamed into a temporary file next to `config/genesis.json` while its SHA-256 is computed; the file
replaces the old genesis only when the download is complete, starts like a JSON object, and matches the pin
(`expectedSha256`, or the original's name `expectedGenesisHash`) when one is given. A mismatch fails with reason
`ChecksumMismatch` naming both digests and leaves the old genesis untouched. The marker `.sei-sidecar-genesis-done`
is written last; a genesis not (yet) in the bucket fails as retryable, because in a genesis ceremony it appears only
once the assembler has uploaded it. Custom CAs for the URL: set `SSL_CERT_FILE`; proxies: `HTTPS_PROXY`.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import Field, model_validator

from agent.io.files import atomic_writer, has_marker, write_marker
from agent.io.s3 import READ_CHUNK, S3_NOT_FOUND, S3Client, S3Failure, check_cancel, run_blocking, s3_url
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.params.base import ChainId
from agent.models.params.s3 import HttpsUrl, S3Params, Sha256Hex
from agent.models.redaction import scrub_output

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


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


MARKER = "genesis"
CHECKSUM_MISMATCH = "ChecksumMismatch"
DOWNLOAD_FAILED = "DownloadFailed"
GENESIS_INVALID = "GenesisInvalid"
SEED_EMBEDDED_CHAINS = ("pacific-1", "atlantic-2", "arctic-1")
HTTP_TIMEOUT = 30.0


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if not newurl.lower().startswith("https://"):
            raise urllib.error.HTTPError(newurl, code, f"refusing a redirect to a non-https URL: {newurl}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _https_chunks(url: str, cancel: threading.Event) -> Iterator[bytes]:
    """The body of `url`, in chunks; every failure is a `DownloadFailed` TaskError naming the URL."""
    opener = urllib.request.build_opener(_HttpsOnlyRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "nodetask-agent", "Accept": "application/json"})
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:
            while chunk := response.read(READ_CHUNK):
                check_cancel(cancel)
                yield chunk
    except urllib.error.HTTPError as error:
        raise TaskError(
            f"downloading {url}: HTTP {error.code} {scrub_output(str(error.reason), 60, keep='head')}",
            reason=DOWNLOAD_FAILED,
            hint="check the URL; the task can be retried if the server is temporarily failing",
            retryable=error.code >= 500 or error.code in (404, 408, 429),
        ) from error
    except urllib.error.URLError as error:
        raise TaskError(
            f"downloading {url}: {error.reason}",
            reason=DOWNLOAD_FAILED,
            hint="check DNS, network policy and the server's certificate (custom CAs: SSL_CERT_FILE)",
            retryable=True,
        ) from error
    except (http.client.HTTPException, OSError) as error:
        raise TaskError(
            f"downloading {url}: the transfer broke off ({type(error).__name__}: {error})",
            reason=DOWNLOAD_FAILED,
            hint="the task can be retried",
            retryable=True,
        ) from error


def _s3_chunks(s3: S3Client, bucket: str, key: str, cancel: threading.Event) -> Iterator[bytes]:
    with s3.open_reader(bucket, key, cancel=cancel) as reader:
        while chunk := reader.read(READ_CHUNK):
            yield chunk


def _write_verified(chunks: Iterator[bytes], target: Path, source: str, pin: str | None) -> tuple[str, int]:
    """Stream `chunks` into `target` atomically; raise (leaving `target` as it was) unless the result is right."""
    hasher = hashlib.sha256()
    size = 0
    looked_at_start = False
    with atomic_writer(target, mode=0o644) as handle:
        for chunk in chunks:
            start = b"" if looked_at_start else chunk.lstrip()[:1]
            looked_at_start = looked_at_start or bool(start)
            if start and start != b"{":
                raise TaskError(
                    f"{source} is not a genesis file: it does not start with a JSON object ({chunk[:40]!r})",
                    reason=GENESIS_INVALID,
                    hint="check that the URL or key points at genesis.json and not at an error page",
                )
            hasher.update(chunk)
            handle.write(chunk)
            size += len(chunk)
        digest = hasher.hexdigest()
        if size == 0:
            raise TaskError(f"{source} is empty", reason=GENESIS_INVALID)
        if pin and digest != pin:
            raise TaskError(
                f"{source}: SHA-256 mismatch: expected {pin}, got {digest}; config/genesis.json was left unchanged",
                reason=CHECKSUM_MISMATCH,
                hint="the published genesis differs from the pinned one; check the pin and the source",
            )
    return digest, size


@handler(TaskType.CONFIGURE_GENESIS, ConfigureGenesisParams)
async def configure_genesis(params: ConfigureGenesisParams, ctx: TaskContext) -> dict[str, Any] | None:
    """Write config/genesis.json from S3 or an https URL, verified against a pinned SHA-256 when given."""
    if has_marker(ctx.home, MARKER):
        return {"skipped": True, "reason": "genesis already configured (marker present)"}
    target = ctx.home / "config" / "genesis.json"
    pin = params.pinned_sha256
    if params.url:
        url = params.url
        source = url
        digest, size = await run_blocking(
            lambda cancel: _write_verified(_https_chunks(url, cancel), target, source, pin)
        )
    else:
        chain_id = params.chain_id or ctx.settings.chain_id
        if not chain_id:
            raise ParamsInvalid("params.chainId: no chain ID given and SEI_CHAIN_ID is not set")
        if not (params.bucket or ctx.settings.genesis_bucket) and chain_id in SEED_EMBEDDED_CHAINS:
            raise ParamsInvalid(
                f"params.url: {chain_id}'s genesis was embedded in the original sidecar but is not vendored in this "
                "agent, and no genesis bucket is configured",
                hint=f"pass params.url (https) to {chain_id}'s published genesis.json, or set SEI_GENESIS_BUCKET",
            )
        bucket = params.bucket_or(ctx.settings.genesis_bucket, "SEI_GENESIS_BUCKET")
        key = f"{chain_id}/genesis.json"
        s3 = S3Client.from_settings(ctx.settings, region=params.region or ctx.settings.genesis_region)
        source = s3_url(bucket, key)
        try:
            digest, size = await run_blocking(
                lambda cancel: _write_verified(_s3_chunks(s3, bucket, key, cancel), target, source, pin)
            )
        except S3Failure as error:
            if error.reason == S3_NOT_FOUND and not error.missing_bucket:
                error.retryable = True  # in a ceremony the assembler uploads it later; retries wait for it
                error.hint = "the genesis may not have been assembled and uploaded yet; retry (spec.retry)"
            raise
    write_marker(ctx.home, MARKER)
    return {"source": source, "sha256": digest, "bytes": size, "verified": pin is not None}


HANDLERS = [configure_genesis]

"""result-export: the node's `block_results`, page by page, as gzip NDJSON objects in S3 (the original's export mode).

Each run reads the node's latest height from `/status`, then exports every *full* page of `pageSize` blocks (1000 by
default, as the original) after the last exported height:

    s3://<bucket>/<prefix><start>-<end>.ndjson.gz      (Content-Type application/gzip)

one line per block, keys in sorted order: `{"block_results": <the node's response body, compacted>,
"exported_at": "<RFC 3339 UTC, seconds>", "height": <h>}`. The body is kept as the node sent it (with the JSON-RPC
envelope when the node uses one), compacted; it is not HTML-escaped (`<` stays `<`), which is the same
JSON value as Go's escaped bytes. A page streams into S3 while it is fetched (memory does not grow with the
page), with a few `block_results` requests in flight.

Resumable: after each page the state file `.sei-sidecar-last-export.json` (`{"lastExportedHeight": N}`) is replaced
atomically, so a failure or a restart continues with the next page. With no (readable) state file the run starts
after the restored snapshot's height (`.sei-sidecar-snapshot-height`), else at the node's earliest kept block.

An unreachable RPC fails the task (retryable `RpcError`): a run never reports success with nothing done. `maxPages`
bounds one run. Comparison mode (`canonicalRpc`) is in
`result_compare`.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from agent.chain.rpc import RpcClient
from agent.io.files import atomic_write
from agent.io.s3 import S3Client, s3_url
from agent.models import ParamsInvalid, TaskType
from agent.models.params.addresses import RpcAddress
from agent.models.params.s3 import KeyPrefix, S3Params

from .base import TaskContext, handler
from .genesis_peers import _snake
from .result_compare import compare_results
from .snapshot import HEIGHT_FILE

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


class ResultExportParams(S3Params):
    """`result-export`: full pages of `block_results` as gzip NDJSON at `s3://<bucket>/<prefix><start>-<end>...`."""

    prefix: KeyPrefix = ""
    rpc_endpoint: RpcAddress = ""
    page_size: int = Field(
        default=1000, ge=1, le=10_000, description="Blocks per object (1000, the Go sidecar's size)."
    )
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


STATE_FILE = ".sei-sidecar-last-export.json"
IN_FLIGHT = 8
"""block_results requests kept in flight while a page is written."""
FLUSH_BYTES = 256 * 1024


def _read_int(path: Path, field: str | None, log: Any) -> int | None:
    try:
        text = path.read_text()
        value = json.loads(text)[field] if field else text.strip()
        return int(value)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as error:
        log.warning("ignoring unreadable %s (%s)", path, error)
        return None


def _line(body: bytes, height: int) -> bytes:
    compact = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'{{"block_results":{compact},"exported_at":"{stamp}","height":{height}}}\n'.encode()


async def _page(rpc: RpcClient, start: int, end: int, on_block: Callable[[], None]) -> AsyncIterator[bytes]:
    """The gzip NDJSON of heights start..end, fetched with a few requests ahead, yielded in ~256 KiB pieces."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    pending: deque[tuple[int, asyncio.Task[bytes]]] = deque()
    buffered = bytearray()
    next_height = start
    try:
        while pending or next_height <= end:
            while next_height <= end and len(pending) < IN_FLIGHT:
                pending.append((next_height, asyncio.ensure_future(rpc.block_results_raw(next_height))))
                next_height += 1
            height, fetch = pending.popleft()
            buffered += compressor.compress(_line(await fetch, height))
            on_block()
            if len(buffered) >= FLUSH_BYTES:
                yield bytes(buffered)
                buffered.clear()
        yield bytes(buffered) + compressor.flush()
    finally:
        for _, fetch in pending:
            fetch.cancel()


@handler(TaskType.RESULT_EXPORT, ResultExportParams)
async def result_export(params: ResultExportParams, ctx: TaskContext) -> dict[str, Any] | None:
    """Export full pages of block_results from the node's RPC to gzip NDJSON objects in S3, resuming from state."""
    if not params.bucket:
        raise ParamsInvalid("params.bucket: required (result-export has no default bucket)")
    endpoint = params.rpc_endpoint or ctx.settings.rpc_endpoint
    s3 = S3Client.from_settings(ctx.settings, region=params.region)
    last = _read_int(ctx.home / STATE_FILE, "lastExportedHeight", ctx.log)
    if last is None:
        last = _read_int(ctx.home / HEIGHT_FILE, None, ctx.log) or 0
    if params.canonical_rpc:
        return await compare_results(params, ctx, endpoint, s3, ctx.home / STATE_FILE, last)
    async with RpcClient(endpoint) as rpc:
        status = await rpc.status()
        latest = status.latest_height
        start = max(last + 1, status.earliest_height)
        pages = (latest - start + 1) // params.page_size if latest > 0 else 0
        if params.max_pages is not None:
            pages = min(pages, params.max_pages)
        summary: dict[str, Any] = {"latestHeight": latest, "fromHeight": start, "lastExportedHeight": last, "pages": 0}
        if pages <= 0:
            return {**summary, "reason": f"no full page of {params.page_size} blocks after height {last} yet"}
        total_blocks = pages * params.page_size
        done = 0

        def count_block() -> None:
            nonlocal done
            done += 1
            ctx.progress(done, total_blocks, "blocks", f"exporting {params.page_size}-block pages")

        for _ in range(pages):
            end = start + params.page_size - 1
            key = f"{params.prefix}{start}-{end}.ndjson.gz"
            await s3.upload_stream(
                params.bucket, key, _page(rpc, start, end, count_block), content_type="application/gzip"
            )
            atomic_write(ctx.home / STATE_FILE, json.dumps({"lastExportedHeight": end}))
            summary.update(pages=summary["pages"] + 1, lastExportedHeight=end, lastKey=s3_url(params.bucket, key))
            ctx.log.info("exported heights %d-%d to %s", start, end, summary["lastKey"])
            start = end + 1
    return summary


HANDLERS = [result_export]

"""result-export's comparison mode: this (shadow) node's blocks against a canonical node, layer by layer.

Enabled by `canonicalRpc`. Per height H, as the original (seictl v0.0.70, `shadow` package) does:

- **Layer 0**: `/block?height=H` on both; `app_hash` and `last_results_hash` of the headers. A *real* L0 divergence is
  any mismatch, or in `migrationMode` (an app-hash change is expected) only a `last_results_hash` mismatch.
- **Layer 1**: on a real L0 divergence, and always in `migrationMode`: `/block_results?height=H` on both, each
  `txs_results[i]` over the common indices compared on `code`, `gasUsed`, `gasWanted`, `log` and `events` (as JSON
  values), plus `presence` for transactions only one side has. A fetch error makes the layer
  `{"indeterminate": true, "error": ...}`.
- **Verdict**: the deepest layer that fired (L1 diverged or indeterminate, else a real L0 divergence) sets
  `match: false` and `divergenceLayer`.

One NDJSON line per block (the original's CompareResult shape, keys in its order):

    {"height":H,"timestamp":"<RFC 3339 UTC s>","match":b,"migrationMode":true?,"divergenceLayer":0|1?,
     "layer0":{"appHashMatch":b,"lastResultsHashMatch":b,"gasUsedMatch":true,<raw values of mismatching fields>},
     "layer1"?:{"totalTxs":n,"txCountMatch":b,"divergences"?:[{"txIndex":i,"fields":[{"field","shadow","canonical"}]}],
                "indeterminate"?:true,"error"?:"..."}}

S3 keys: pages `<prefix><first>-<last>.compare.ndjson.gz`, divergence reports `<prefix>divergence-<H>.report.json.gz`
(`{"height","timestamp","comparison","shadow":{"block","blockResults"},"canonical":{...}}`, indented, with both
nodes' raw bodies). Both gzip, `application/gzip`.

Runs like export mode: each run compares the full pages (`pageSize`, 100 by default here, the original's page) that
both nodes have, after the shared state file's `lastExportedHeight`, then completes. On the first divergence
(default mode) it uploads the report, flushes the partial page up to H, stores H and completes with
`diverged: true`; the next run continues after H. With `continueOnDivergence` (survey mode) every divergence is
recorded in the pages and counted, and the run goes on.

Deliberate differences: Layer 2 (EVM state via `debug_traceBlockByNumber`) is not implemented and its params are
refused, rather than accepted and silently unused; `gasUsedMatch` is kept for the shape but, as in the original, not
computed (always true); a node that does not answer fails the task (retryable `RpcError`) instead of retrying the
same height forever; survey mode ends with the run instead of on SIGTERM, so a DELETE never resurrects the row.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.chain.rpc import RpcClient, RpcError
from agent.io.files import atomic_write
from agent.io.s3 import S3Client, s3_url
from agent.models.params.data import ResultExportParams

from .base import TaskContext

COMPARE_PAGE_SIZE = 100
_L1_FIELDS = (("code", "code"), ("gasUsed", "gas_used"), ("gasWanted", "gas_wanted"), ("log", "log"))


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header(block: dict[str, Any]) -> dict[str, Any]:
    header = (block.get("block") or {}).get("header") or {}
    return header if isinstance(header, dict) else {}


def _txs(results: dict[str, Any]) -> list[Any]:
    txs = results.get("txs_results") or []
    return txs if isinstance(txs, list) else []


def compare_layer1(shadow: dict[str, Any], canonical: dict[str, Any]) -> dict[str, Any]:
    """Layer 1 over two `block_results` result objects."""
    left, right = _txs(shadow), _txs(canonical)
    divergences = []
    for index in range(max(len(left), len(right))):
        fields: list[dict[str, Any]]
        if index >= len(left) or index >= len(right):
            shadow_side = "present" if index < len(left) else "missing"
            canonical_side = "present" if index < len(right) else "missing"
            fields = [{"field": "presence", "shadow": shadow_side, "canonical": canonical_side}]
        else:
            a, b = left[index] or {}, right[index] or {}
            fields = [
                {"field": label, "shadow": a.get(key), "canonical": b.get(key)}
                for label, key in _L1_FIELDS
                if a.get(key) != b.get(key)
            ]
            if a.get("events") != b.get("events"):
                fields.append({"field": "events", "shadow": a.get("events"), "canonical": b.get("events")})
        if fields:
            divergences.append({"txIndex": index, "fields": fields})
    layer: dict[str, Any] = {"totalTxs": max(len(left), len(right)), "txCountMatch": len(left) == len(right)}
    if divergences:
        layer["divergences"] = divergences
    return layer


def compare_block(
    height: int,
    shadow_block: dict[str, Any],
    canonical_block: dict[str, Any],
    layer1: dict[str, Any] | None,
    *,
    migration_mode: bool,
) -> dict[str, Any]:
    """The CompareResult line for one height (`layer1` already computed when it had to run, else None)."""
    shadow, canonical = _header(shadow_block), _header(canonical_block)
    app_match = shadow.get("app_hash") == canonical.get("app_hash")
    results_match = shadow.get("last_results_hash") == canonical.get("last_results_hash")
    layer0: dict[str, Any] = {"appHashMatch": app_match, "lastResultsHashMatch": results_match, "gasUsedMatch": True}
    if not app_match:
        layer0.update(shadowAppHash=shadow.get("app_hash"), canonicalAppHash=canonical.get("app_hash"))
    if not results_match:
        layer0.update(
            shadowLastResultsHash=shadow.get("last_results_hash"),
            canonicalLastResultsHash=canonical.get("last_results_hash"),
        )
    line: dict[str, Any] = {"height": height, "timestamp": _stamp(), "match": True}
    if migration_mode:
        line["migrationMode"] = True
    line["layer0"] = layer0
    if layer1 is not None:
        line["layer1"] = layer1
    if layer1 is not None and (layer1.get("divergences") or layer1.get("indeterminate")):
        line.update(match=False, divergenceLayer=1)
    elif real_layer0_divergence(layer0, migration_mode=migration_mode):
        line.update(match=False, divergenceLayer=0)
    return _ordered(line)


def _ordered(line: dict[str, Any]) -> dict[str, Any]:
    order = ["height", "timestamp", "match", "migrationMode", "divergenceLayer", "layer0", "layer1"]
    return {key: line[key] for key in order if key in line}


def real_layer0_divergence(layer0: dict[str, Any], *, migration_mode: bool) -> bool:
    if migration_mode:
        return not layer0["lastResultsHashMatch"]
    return not (layer0["appHashMatch"] and layer0["lastResultsHashMatch"])


class _Nodes:
    def __init__(self, shadow: RpcClient, canonical: RpcClient):
        self.shadow = shadow
        self.canonical = canonical

    async def blocks(self, height: int) -> tuple[dict[str, Any], dict[str, Any]]:
        shadow, canonical = await asyncio.gather(
            self.shadow.get("/block", {"height": str(height)}), self.canonical.get("/block", {"height": str(height)})
        )
        return shadow, canonical

    async def results(self, height: int) -> tuple[dict[str, Any], dict[str, Any]]:
        shadow, canonical = await asyncio.gather(
            self.shadow.block_results(height), self.canonical.block_results(height)
        )
        return shadow, canonical

    async def layer1(self, height: int) -> dict[str, Any]:
        try:
            shadow, canonical = await self.results(height)
        except RpcError as error:
            return {"indeterminate": True, "error": str(error)}
        return compare_layer1(shadow, canonical)


def _gzip_lines(lines: list[dict[str, Any]]) -> bytes:
    return gzip.compress(b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines))


async def _report(nodes: _Nodes, height: int, comparison: dict[str, Any]) -> bytes:
    (shadow_block, canonical_block), (shadow_results, canonical_results) = await asyncio.gather(
        nodes.blocks(height), nodes.results(height)
    )
    report = {
        "height": height,
        "timestamp": _stamp(),
        "comparison": comparison,
        "shadow": {"block": shadow_block, "blockResults": shadow_results},
        "canonical": {"block": canonical_block, "blockResults": canonical_results},
    }
    return gzip.compress(json.dumps(report, indent=2).encode())


async def compare_results(
    params: ResultExportParams, ctx: TaskContext, endpoint: str, s3: S3Client, state_file: Path, last: int
) -> dict[str, Any]:
    """Comparison mode; see the module docstring. `last` is the height compared (or exported) last."""
    assert params.canonical_rpc
    page_size = params.page_size if "page_size" in params.model_fields_set else COMPARE_PAGE_SIZE
    async with RpcClient(endpoint) as shadow_rpc, RpcClient(params.canonical_rpc) as canonical_rpc:
        nodes = _Nodes(shadow_rpc, canonical_rpc)
        shadow_status, canonical_status = await asyncio.gather(shadow_rpc.status(), canonical_rpc.status())
        latest = min(shadow_status.latest_height, canonical_status.latest_height)
        start = max(last + 1, shadow_status.earliest_height, canonical_status.earliest_height)
        pages = (latest - start + 1) // page_size if latest > 0 else 0
        if params.max_pages is not None:
            pages = min(pages, params.max_pages)
        summary: dict[str, Any] = {
            "mode": "compare",
            "latestHeight": latest,
            "fromHeight": start,
            "lastExportedHeight": last,
            "pages": 0,
            "blocksCompared": 0,
            "divergences": 0,
            "diverged": False,
        }
        if pages <= 0:
            return {**summary, "reason": f"no full page of {page_size} blocks on both nodes after height {last} yet"}
        total = pages * page_size
        for _ in range(pages):
            end = start + page_size - 1
            lines: list[dict[str, Any]] = []
            stop_at: int | None = None
            for height in range(start, end + 1):
                shadow_block, canonical_block = await nodes.blocks(height)
                line = compare_block(height, shadow_block, canonical_block, None, migration_mode=params.migration_mode)
                if params.migration_mode or not line["match"]:
                    layer1 = await nodes.layer1(height)
                    line = compare_block(
                        height, shadow_block, canonical_block, layer1, migration_mode=params.migration_mode
                    )
                lines.append(line)
                summary["blocksCompared"] += 1
                ctx.progress(summary["blocksCompared"], total, "blocks", f"comparing {page_size}-block pages")
                if not line["match"]:
                    summary["divergences"] += 1
                    summary.setdefault("firstDivergenceHeight", height)
                    if not params.continue_on_divergence:
                        report_key = f"{params.prefix}divergence-{height}.report.json.gz"
                        await s3.put_bytes(
                            params.bucket,
                            report_key,
                            await _report(nodes, height, line),
                            content_type="application/gzip",
                        )
                        summary.update(
                            diverged=True,
                            divergenceHeight=height,
                            divergenceLayer=line["divergenceLayer"],
                            reportKey=s3_url(params.bucket, report_key),
                        )
                        stop_at = height
                        break
            last_height = stop_at or end
            key = f"{params.prefix}{start}-{last_height}.compare.ndjson.gz"
            await s3.put_bytes(params.bucket, key, _gzip_lines(lines), content_type="application/gzip")
            atomic_write(state_file, json.dumps({"lastExportedHeight": last_height}))
            summary.update(
                pages=summary["pages"] + 1, lastExportedHeight=last_height, lastKey=s3_url(params.bucket, key)
            )
            ctx.log.info(
                "compared heights %d-%d to %s (%d divergences so far)", start, last_height, key, summary["divergences"]
            )
            if stop_at is not None:
                ctx.log.warning(
                    "divergence at height %d (layer %d); report %s",
                    stop_at,
                    summary["divergenceLayer"],
                    summary["reportKey"],
                )
                break
            start = end + 1
    summary["diverged"] = summary["divergences"] > 0
    return summary

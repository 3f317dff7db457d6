"""result-export's comparison mode: this (shadow) node's blocks against a canonical node, layer by layer.

Enabled by `canonicalRpc`. Per height H, as the original (seictl v0.0.70, `shadow` package) does:

- **Layer 0**: `/block?height=H` on both; `app_hash` and `last_results_hash` of the headers. A *real* L0 divergence is
  any mismatch, or in `migrationMode` (an app-hash change is expected) only a `last_results_hash` mismatch.
- **Layer 1**: on a real L0 divergence, and always in `migrationMode`: `/block_results?height=H` on both, each
  `txs_results[i]` over the common indices compared on `code`, `gasUsed`, `gasWanted`, `log` and `events` (as JSON
  values), plus `presence` for transactions only one side has. A fetch error makes the layer
  `{"indeterminate": true, "error": ...}`.
- **Layer 2** (with `shadowEvmRpc` and `canonicalEvmRpc`), under the same trigger as Layer 1: the accounts and
  slots the block touched, from `debug_traceBlockByNumber(<hex H>, {"tracer":"prestateTracer","tracerConfig":
  {"diffMode":true}})` on `traceRpc` (default `canonicalEvmRpc`): the union of every transaction's `pre` and `post`,
  sorted (accounts, then each account's slots, by bytes). Then, at EVM block H on both nodes, per account: each slot
  (`eth_getStorageAt`, compared left-padded to 32 bytes), the balance, the code when either trace side had code, the
  nonce. A divergence is `{"kind": storage|balance|code|nonce, "addr": <EIP-55>, "slot"?: <0x + 64 hex>, "shadow",
  "canonical"}`: hex as the nodes answered for storage and code, decimal for balance and nonce. Any trace or read
  failure makes the layer `{"accountsChecked":0,"keysChecked":0,"indeterminate":true,"error":...}`.
  Bounded: `layer2TimeoutSeconds` per block (30 s, as the original), a trace answer of at most `MAX_TRACE_BYTES`,
  at most `layer2MaxKeys` keys read per block (in the sorted order; a capped block's layer also carries
  `"keysCapped": true, "keysTouched": <all keys>`, fields the original never writes because it has no cap), and at
  most `LAYER2_IN_FLIGHT` keys read at once.
- **Verdict**: the deepest layer that fired (L2 diverged or indeterminate, else L1 diverged or indeterminate, else a
  real L0 divergence) sets `match: false` and `divergenceLayer`.

One NDJSON line per block (the original's CompareResult shape, keys in its order):

    {"height":H,"timestamp":"<RFC 3339 UTC s>","match":b,"migrationMode":true?,"divergenceLayer":0|1|2?,
     "layer0":{"appHashMatch":b,"lastResultsHashMatch":b,"gasUsedMatch":true,<raw values of mismatching fields>},
     "layer1"?:{"totalTxs":n,"txCountMatch":b,"divergences"?:[{"txIndex":i,"fields":[{"field","shadow","canonical"}]}],
                "indeterminate"?:true,"error"?:"..."},
     "layer2"?:{"accountsChecked":n,"keysChecked":n,"divergences"?:[{"kind","addr","slot"?,"shadow","canonical"}],
                "indeterminate"?:true,"error"?:"..."}}

S3 keys: pages `<prefix><first>-<last>.compare.ndjson.gz`, divergence reports `<prefix>divergence-<H>.report.json.gz`
(`{"height","timestamp","comparison","shadow":{"block","blockResults"},"canonical":{...}}`, indented, with both
nodes' raw bodies). Both gzip, `application/gzip`.

Runs like export mode: each run compares the full pages (`pageSize`, 100 by default here, the original's page) that
both nodes have, after the shared state file's `lastExportedHeight`, then completes. On the first divergence
(default mode) it uploads the report, flushes the partial page up to H, stores H and completes with
`diverged: true`; the next run continues after H. With `continueOnDivergence` (survey mode) every divergence is
recorded in the pages and counted, and the run goes on.

Deliberate differences: Layer 2 params without `canonicalRpc`, or only one of the two EVM endpoints, are refused
rather than silently unused; a per-transaction trace error makes Layer 2 indeterminate (the original skips that
transaction's keys); `gasUsedMatch` is kept for the shape but, as in the original, not
computed (always true); a node that does not answer fails the task (retryable `RpcError`) instead of retrying the
same height forever; survey mode ends with the run instead of on SIGTERM, so a DELETE never resurrects the row.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.chain.crypto.evm import to_checksum_address
from agent.chain.evmrpc import EvmRpcClient, EvmRpcError
from agent.chain.rpc import RpcClient, RpcError
from agent.io.files import atomic_write
from agent.io.s3 import S3Client, s3_url

from .base import TaskContext

if TYPE_CHECKING:  # result_export imports this module; its params model is only an annotation here
    from .result_export import ResultExportParams

COMPARE_PAGE_SIZE = 100
MAX_TRACE_BYTES = 16 * 1024 * 1024
"""A debug_traceBlockByNumber answer larger than this makes Layer 2 indeterminate instead of being held in memory."""
LAYER2_IN_FLIGHT = 8
"""Keys read at once (each on both nodes)."""
PRESTATE_TRACER = {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}
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
    layer2: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The CompareResult line for one height (`layer1`, `layer2` already computed when they had to run, else
    None)."""
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
    if layer2 is not None:
        line["layer2"] = layer2
    if layer2 is not None and (layer2.get("divergences") or layer2.get("indeterminate")):
        line.update(match=False, divergenceLayer=2)
    elif layer1 is not None and (layer1.get("divergences") or layer1.get("indeterminate")):
        line.update(match=False, divergenceLayer=1)
    elif real_layer0_divergence(layer0, migration_mode=migration_mode):
        line.update(match=False, divergenceLayer=0)
    return _ordered(line)


def _ordered(line: dict[str, Any]) -> dict[str, Any]:
    order = ["height", "timestamp", "match", "migrationMode", "divergenceLayer", "layer0", "layer1", "layer2"]
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


# --- Layer 2: EVM state ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TouchedAccount:
    """An account a block touched: its slots (sorted) and whether either trace side showed code."""

    address: bytes
    slots: tuple[bytes, ...]
    check_code: bool


class _TraceInvalid(Exception):
    pass


def _hex_bytes(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise _TraceInvalid(f"{what} {value!r:.80} is not 0x-hex")
    digits = value[2:]
    if len(digits) > 2 * size:
        raise _TraceInvalid(f"{what} {value!r:.80} is longer than {size} bytes")
    try:
        return bytes.fromhex(digits.rjust(2 * size, "0"))
    except ValueError:
        raise _TraceInvalid(f"{what} {value!r:.80} is not 0x-hex") from None


def touched_accounts(traces: Any) -> list[TouchedAccount]:
    """The union of the accounts and slots in every transaction's `pre` and `post` of a prestate diff-mode block
    trace, sorted by address and slot bytes; `_TraceInvalid` for an answer of another shape."""
    if not isinstance(traces, list):
        raise _TraceInvalid("the block trace is not a list of transaction traces")
    slots: dict[bytes, set[bytes]] = {}
    with_code: set[bytes] = set()
    for index, trace in enumerate(traces):
        if not isinstance(trace, dict):
            raise _TraceInvalid(f"transaction trace {index} is not an object")
        if trace.get("error"):
            raise _TraceInvalid(f"transaction {index} could not be traced: {trace['error']!s:.200}")
        result = trace.get("result") or {}
        if not isinstance(result, dict):
            raise _TraceInvalid(f"transaction trace {index} has no result object")
        for side in ("pre", "post"):
            accounts = result.get(side) or {}
            if not isinstance(accounts, dict):
                raise _TraceInvalid(f"transaction trace {index}: {side} is not an object")
            for address, account in accounts.items():
                key = _hex_bytes(address, 20, "address")
                known = slots.setdefault(key, set())
                if not isinstance(account, dict):
                    raise _TraceInvalid(f"transaction trace {index}: {side} account {address!r:.50} is not an object")
                storage = account.get("storage") or {}
                if not isinstance(storage, dict):
                    raise _TraceInvalid(f"transaction trace {index}: storage of {address!r:.50} is not an object")
                known.update(_hex_bytes(slot, 32, "slot") for slot in storage)
                if account.get("code") not in (None, "", "0x"):
                    with_code.add(key)
    return [TouchedAccount(address, tuple(sorted(slots[address])), address in with_code) for address in sorted(slots)]


@dataclass(frozen=True)
class _Key:
    kind: str
    account: int
    address: bytes
    slot: bytes = b""


def _keys(touched: list[TouchedAccount]) -> Iterator[_Key]:
    """Every key to read, in the original's order: per account its slots, balance, code (if any), nonce."""
    for index, account in enumerate(touched):
        for slot in account.slots:
            yield _Key("storage", index, account.address, slot)
        yield _Key("balance", index, account.address)
        if account.check_code:
            yield _Key("code", index, account.address)
        yield _Key("nonce", index, account.address)


def _quantity(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{value!r:.80} is not a hex quantity")
    return int(value, 16)


def _data(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{value!r:.80} is not 0x-hex data")
    digits = value[2:]
    return bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)


_READS = {
    "storage": "eth_getStorageAt",
    "balance": "eth_getBalance",
    "code": "eth_getCode",
    "nonce": "eth_getTransactionCount",
}


async def _read(client: EvmRpcClient, key: _Key, block: str, side: str) -> tuple[Any, str]:
    """(comparable value, value as the line shows it) of one key on one node."""
    address = "0x" + key.address.hex()
    where = f"{side} {key.kind} {to_checksum_address(key.address)}"
    if key.kind == "storage":
        where += "/0x" + key.slot.hex()
    try:
        args: tuple[Any, ...] = (address, "0x" + key.slot.hex(), block) if key.kind == "storage" else (address, block)
        answer = await client.call(_READS[key.kind], *args)
        if key.kind in ("balance", "nonce"):
            number = _quantity(answer)
            return number, str(number)
        data = _data(answer)
        shown = "0x" + data.hex()
        return (data.rjust(32, b"\0") if key.kind == "storage" else data), shown
    except (EvmRpcError, ValueError) as error:
        raise EvmRpcError(f"{where}: {error}") from None


class Layer2:
    """Reads touched keys of a block on both EVM RPCs; see the module docstring."""

    def __init__(
        self, shadow: EvmRpcClient, canonical: EvmRpcClient, trace: EvmRpcClient, *, max_keys: int, seconds: float
    ):
        self.shadow = shadow
        self.canonical = canonical
        self.trace = trace
        self.max_keys = max_keys
        self.seconds = seconds

    async def compare(self, height: int) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.seconds):
                return await self._compare(height)
        except TimeoutError:
            error = f"layer 2 at height {height}: deadline of {self.seconds:g}s exceeded"
        except EvmRpcError as failure:
            error = str(failure)
        return {"accountsChecked": 0, "keysChecked": 0, "indeterminate": True, "error": error}

    async def _compare(self, height: int) -> dict[str, Any]:
        block = hex(height)
        try:
            traces = await self.trace.call("debug_traceBlockByNumber", block, PRESTATE_TRACER)
            touched = touched_accounts(traces)
        except (EvmRpcError, _TraceInvalid) as error:
            raise EvmRpcError(
                f"resolving touched accounts at height {height}: debug_traceBlockByNumber at height {height}: {error}"
            ) from None
        del traces
        total = sum(len(account.slots) + 2 + account.check_code for account in touched)
        keys = list(itertools.islice(_keys(touched), self.max_keys))
        divergences: list[dict[str, Any]] = []
        for start in range(0, len(keys), LAYER2_IN_FLIGHT):
            batch = keys[start : start + LAYER2_IN_FLIGHT]
            # Every read of the batch finishes (none is left running); the first failure in key order wins.
            answers = await asyncio.gather(
                *(
                    _read(client, key, block, side)
                    for key in batch
                    for client, side in ((self.shadow, "shadow"), (self.canonical, "canonical"))
                ),
                return_exceptions=True,
            )
            values: list[tuple[Any, str]] = []
            for answer in answers:
                if isinstance(answer, BaseException):
                    raise answer
                values.append(answer)
            pairs = zip(values[0::2], values[1::2], strict=True)
            for key, ((shadow_value, shadow_shown), (canonical_value, canonical_shown)) in zip(
                batch, pairs, strict=True
            ):
                if shadow_value != canonical_value:
                    divergence = {"kind": key.kind, "addr": to_checksum_address(key.address)}
                    if key.kind == "storage":
                        divergence["slot"] = "0x" + key.slot.hex()
                    divergences.append({**divergence, "shadow": shadow_shown, "canonical": canonical_shown})
        layer: dict[str, Any] = {
            "accountsChecked": len({key.account for key in keys}),
            "keysChecked": len(keys),
        }
        if divergences:
            layer["divergences"] = divergences
        if total > len(keys):
            layer.update(keysCapped=True, keysTouched=total)
        return layer


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


async def _layer2(params: ResultExportParams, stack: AsyncExitStack) -> Layer2 | None:
    if not (params.layer2 and params.shadow_evm_rpc and params.canonical_evm_rpc):
        return None
    seconds = params.layer2_timeout_seconds
    shadow = await stack.enter_async_context(EvmRpcClient(params.shadow_evm_rpc, timeout=seconds))
    canonical = await stack.enter_async_context(
        EvmRpcClient(params.canonical_evm_rpc, timeout=seconds, max_body_bytes=MAX_TRACE_BYTES)
    )
    trace = canonical
    if params.trace_rpc and params.trace_rpc != params.canonical_evm_rpc:
        trace = await stack.enter_async_context(EvmRpcClient(params.trace_rpc, timeout=seconds))
    return Layer2(shadow, canonical, trace, max_keys=params.layer2_max_keys, seconds=seconds)


async def compare_results(
    params: ResultExportParams, ctx: TaskContext, endpoint: str, s3: S3Client, state_file: Path, last: int
) -> dict[str, Any]:
    """Comparison mode; see the module docstring. `last` is the height compared (or exported) last."""
    assert params.canonical_rpc
    page_size = params.page_size if "page_size" in params.model_fields_set else COMPARE_PAGE_SIZE
    async with AsyncExitStack() as stack:
        shadow_rpc = await stack.enter_async_context(RpcClient(endpoint))
        canonical_rpc = await stack.enter_async_context(RpcClient(params.canonical_rpc))
        nodes = _Nodes(shadow_rpc, canonical_rpc)
        layer2 = await _layer2(params, stack)
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
                    state = await layer2.compare(height) if layer2 else None
                    if state is not None and state.get("keysCapped"):
                        summary["layer2CappedBlocks"] = summary.get("layer2CappedBlocks", 0) + 1
                    line = compare_block(
                        height,
                        shadow_block,
                        canonical_block,
                        layer1,
                        migration_mode=params.migration_mode,
                        layer2=state,
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

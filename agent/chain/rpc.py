"""The one CometBFT RPC client every task uses (`/status`, `/block`, `/block_results`, `/net_info`).

Two dialects are spoken, stock CometBFT (v0.38) and sei-tendermint (what seid serves):

- **Results** come in two shapes and both are accepted: the flat body sei-tendermint serves on its URI endpoints
  (`{"node_info": ..., "sync_info": ...}`) and the JSON-RPC envelope CometBFT serves
  (`{"jsonrpc": "2.0", "id": -1, "result": {...}}`).
- **Errors** are an error whatever the HTTP status: CometBFT's envelope with an `error` object (HTTP 500 for
  "height too high") and sei-tendermint's flat `{"code": ..., "message": ..., "data": ...}` object, which it
  answers with HTTP 200. A flat object is an error when it has an integer `code`, a string `message` and nothing
  but `code`, `message` and `data` (a `broadcast_tx_sync` result also has a `code`, but never a `message`).
- **Byte arguments** travel in URI requests (GET, like every other call; a proxy or fault injector sees the same
  kind of request for every method). Both dialects take `0x` hex for a `[]byte` argument (`broadcast_tx_sync`'s
  `tx`). For a hex-typed argument (`abci_query`'s `data`, `tx`'s `hash`) they disagree: CometBFT needs `0x` hex
  (plain hex goes to its JSON decoder and is refused), while sei-tendermint turns `0x` hex into base64 that its
  hex-typed field then refuses (`Invalid params`, `encoding/hex: invalid byte ...`) and takes plain hex. So such a
  call is sent as `0x` hex; when the node answers with that refusal, the client repeats the call once in plain hex
  and sends plain hex to that node from then on. Both calls are reads, so repeating one is harmless.
  JSON-RPC POST was not chosen: there CometBFT reads `tx`'s `hash` as base64 and sei-tendermint as hex, and hex
  text is valid base64, so the wrong guess would look up another hash and read as "not found" instead of failing.

What reaches an error message of the node's JSON-RPC error is its code through a fixed table of the JSON-RPC codes
(`Internal error`, `Invalid params`...; another code is shown as its number), and its `data` scrubbed and bounded
(`scrub_output`); the remote's `message` text is never shown. The raw code and data stay on the `RpcError`
(`rpc_code`, `rpc_data`) for callers that classify them ("not found", "already exists in cache"); they are not
shown anywhere. For a non-200 answer only the status code and its standard phrase are shown.

Every call has its own timeout: the client's default (`timeout=`, 10 s) or the call's `seconds=` (shorter for quick
polls and node-ID queries). It is a parameter rather than the caller's own
`asyncio.timeout` so that the error names the endpoint and path that did not answer.

Every failure is an `RpcError` (a `TaskError`) whose message names the endpoint, the path and the cause: connection
refused, timeout, HTTP status, JSON-RPC error, malformed body. `tx` adds one more: `unindexed`, the node keeps no
transaction index ("transaction indexing is disabled", seid's "transaction querying is disabled due to no
kvEventSink"), so it can confirm nothing: neither "found" nor "not found".

Where the exact bytes matter (result-export stores the `block_results` body as the node sent it) the `*_raw`
variants return the body unchanged, after the same checks.

Use as an async context manager so one HTTP connection pool serves many calls:

    async with RpcClient("http://localhost:26657") as rpc:
        status = await rpc.status(seconds=0.5)
        block = await rpc.block(status.latest_height)
"""

from __future__ import annotations

import asyncio
import http
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from agent.models import TaskError
from agent.models.redaction import scrub_output

__all__ = [
    "DEFAULT_RPC_PORT",
    "DEFAULT_TIMEOUT",
    "BlockInfo",
    "NetInfo",
    "NodeStatus",
    "PeerInfo",
    "RpcClient",
    "RpcError",
    "normalize_endpoint",
]

DEFAULT_RPC_PORT = 26657
DEFAULT_TIMEOUT = 10.0
"""Seconds per call unless the caller says otherwise."""
MAX_BODY_BYTES = 256 * 1024 * 1024
"""A body larger than this is refused rather than held in memory (mainnet block_results are a few MiB)."""

T = TypeVar("T")
_NODE_ID = re.compile(r"^[0-9a-f]{40}$")
_HASH = re.compile(r"^[0-9A-Fa-f]{64}$")


_RPC_CODES = {
    -32700: "Parse error",
    -32600: "Invalid request",
    -32601: "Method not found",
    -32602: "Invalid params",
    -32603: "Internal error",
    -32000: "Server error",
}
"""The JSON-RPC error codes CometBFT and sei-tendermint use, by the fixed name an error message shows."""
_RPC_DATA_SHOWN = 200
"""How much of an error's `data` (scrubbed) an error message quotes."""
_RPC_DATA_KEPT = 2000
"""How much of an error's `data` the `RpcError` keeps for classification (never shown)."""
_FLAT_ERROR_KEYS = frozenset({"code", "message", "data"})
_HEX_REFUSAL = re.compile(r"encoding/hex|invalid hex", re.IGNORECASE)
_INDEX_OFF = re.compile(r"indexing is disabled|querying is disabled|kv ?event ?sink", re.IGNORECASE)


class RpcError(TaskError):
    """A CometBFT RPC call failed. `kind` is one of `connect`, `timeout`, `http`, `rpc`, `malformed`, `unindexed`.

    For `rpc`, `rpc_code` and `rpc_data` are the node's JSON-RPC error code and (bounded, unscrubbed) data: for
    classification only, never shown (the message carries the mapped, scrubbed form)."""

    def __init__(
        self,
        endpoint: str,
        path: str,
        kind: str,
        cause: str,
        *,
        retryable: bool = True,
        rpc_code: int | None = None,
        rpc_data: str = "",
    ):
        super().__init__(
            f"CometBFT RPC {endpoint}{path}: {cause}",
            reason="RpcError",
            hint="check that the node's RPC is reachable (rpc.laddr) and healthy",
            retryable=retryable,
        )
        self.endpoint = endpoint
        self.path = path
        self.kind = kind
        self.cause = cause
        self.rpc_code = rpc_code
        self.rpc_data = rpc_data


def normalize_endpoint(address: str, *, default_port: int = DEFAULT_RPC_PORT) -> str:
    """`http(s)://host:port` for an RPC address written as a URL, `tcp://host:port`, `host:port` or a bare host.

    A bare `host:443` means https (witnesses behind a TLS load balancer). Raises `ValueError`
    naming the address when it has no host, a bad port, or a scheme other than http, https or tcp.
    """
    text = address.strip().rstrip("/")
    if not text:
        raise ValueError("empty RPC address")
    if "://" not in text:
        text = "tcp://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "tcp"):
        raise ValueError(f"RPC address {address!r}: scheme {parts.scheme!r} is not http, https or tcp")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"RPC address {address!r}: only scheme://host:port is allowed")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"RPC address {address!r}: port is not a number in 1-65535") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"RPC address {address!r}: no host")
    if port == 0:
        raise ValueError(f"RPC address {address!r}: port 0")
    if scheme == "tcp":
        port = port or default_port
        scheme = "https" if port == 443 else "http"
    shown_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown_host}:{port}" if port else f"{scheme}://{shown_host}"


# --- typed views ---------------------------------------------------------------------------------------------------


def _height(value: Any, where: str) -> int:
    """CometBFT encodes int64 as decimal strings; plain integers are accepted too."""
    if isinstance(value, bool):
        raise ValueError(f"{where} is not a height: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"{where} is not a height: {value!r}")


def _mapping(body: Any, key: str, where: str) -> dict[str, Any]:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, dict):
        raise ValueError(f"{where}.{key} is missing or not an object")
    return value


@dataclass(frozen=True)
class NodeStatus:
    """What `/status` says, typed. `raw` is the unwrapped result object."""

    node_id: str
    network: str
    moniker: str
    listen_addr: str
    latest_height: int
    latest_block_hash: str
    latest_block_time: str
    earliest_height: int
    catching_up: bool
    raw: dict[str, Any]

    @classmethod
    def parse(cls, result: dict[str, Any]) -> NodeStatus:
        node_info = _mapping(result, "node_info", "result")
        sync_info = _mapping(result, "sync_info", "result")
        node_id = node_info.get("id")
        if not isinstance(node_id, str) or not _NODE_ID.match(node_id.lower()):
            raise ValueError(f"node_info.id is not a 40-hex node ID: {node_id!r}")
        catching_up = sync_info.get("catching_up")
        if not isinstance(catching_up, bool):
            raise ValueError(f"sync_info.catching_up is not a boolean: {catching_up!r}")
        earliest = sync_info.get("earliest_block_height")
        return cls(
            node_id=node_id.lower(),
            network=str(node_info.get("network", "")),
            moniker=str(node_info.get("moniker", "")),
            listen_addr=str(node_info.get("listen_addr", "")),
            latest_height=_height(sync_info.get("latest_block_height"), "sync_info.latest_block_height"),
            latest_block_hash=str(sync_info.get("latest_block_hash", "")),
            latest_block_time=str(sync_info.get("latest_block_time", "")),
            earliest_height=_height(earliest, "sync_info.earliest_block_height") if earliest not in (None, "") else 0,
            catching_up=catching_up,
            raw=result,
        )


@dataclass(frozen=True)
class BlockInfo:
    """What `/block` says, typed: the block ID hash (upper-case hex, 64 characters) and a few header fields."""

    height: int
    hash: str
    chain_id: str
    time: str
    app_hash: str
    last_results_hash: str
    raw: dict[str, Any]

    @classmethod
    def parse(cls, result: dict[str, Any]) -> BlockInfo:
        block_id = _mapping(result, "block_id", "result")
        header = _mapping(_mapping(result, "block", "result"), "header", "result.block")
        block_hash = block_id.get("hash")
        if not isinstance(block_hash, str) or not _HASH.match(block_hash):
            raise ValueError(f"block_id.hash is not a 64-hex block hash: {block_hash!r}")
        return cls(
            height=_height(header.get("height"), "block.header.height"),
            hash=block_hash.upper(),
            chain_id=str(header.get("chain_id", "")),
            time=str(header.get("time", "")),
            app_hash=str(header.get("app_hash", "")),
            last_results_hash=str(header.get("last_results_hash", "")),
            raw=result,
        )


@dataclass(frozen=True)
class PeerInfo:
    """One entry of `/net_info`'s `peers`."""

    node_id: str
    moniker: str
    remote_ip: str
    listen_addr: str
    is_outbound: bool


@dataclass(frozen=True)
class NetInfo:
    listening: bool
    peers: tuple[PeerInfo, ...]
    raw: dict[str, Any]

    @classmethod
    def parse(cls, result: dict[str, Any]) -> NetInfo:
        entries = result.get("peers") or []
        if not isinstance(entries, list):
            raise ValueError("peers is not a list")
        peers = []
        for index, entry in enumerate(entries):
            node_info = _mapping(entry, "node_info", f"peers[{index}]")
            peers.append(
                PeerInfo(
                    node_id=str(node_info.get("id", "")).lower(),
                    moniker=str(node_info.get("moniker", "")),
                    remote_ip=str(entry.get("remote_ip", "")),
                    listen_addr=str(node_info.get("listen_addr", "")),
                    is_outbound=bool(entry.get("is_outbound", False)),
                )
            )
        return cls(listening=bool(result.get("listening", False)), peers=tuple(peers), raw=result)


# --- client --------------------------------------------------------------------------------------------------------


_CREDENTIAL_STATUS = frozenset({401, 403, 407})


def _unwrap(body: Any) -> dict[str, Any]:
    """The result object of a flat or enveloped body; raises ValueError (malformed) or returns the error dict."""
    if not isinstance(body, dict):
        raise ValueError(f"body is a JSON {type(body).__name__}, not an object")
    if "result" in body:
        result = body["result"]
        if not isinstance(result, dict):
            raise ValueError("JSON-RPC result is not an object")
        return result
    return body


def _shown(path: str, params: dict[str, str]) -> str:
    """`/block?height=5`: the request as an error message names it."""
    return path + ("?" + "&".join(f"{key}={value}" for key, value in params.items()) if params else "")


def _error_object(parsed: Any) -> dict[str, Any] | None:
    """The JSON-RPC error a body carries, in either dialect, or None when the body is not an error.

    CometBFT: an envelope with a non-empty `error` and no `result`. sei-tendermint: the flat error object itself."""
    if not isinstance(parsed, dict) or "result" in parsed:
        return None
    error = parsed.get("error")
    if error not in (None, ""):
        return error if isinstance(error, dict) else {"data": str(error)}
    code, message = parsed.get("code"), parsed.get("message")
    if (
        isinstance(code, int)
        and not isinstance(code, bool)
        and isinstance(message, str)
        and set(parsed) <= _FLAT_ERROR_KEYS
    ):
        return parsed
    return None


def _rpc_code(error: dict[str, Any]) -> int | None:
    code = error.get("code")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _rpc_error_text(error: dict[str, Any]) -> str:
    """The node's JSON-RPC error as a message shows it: the code by its fixed name (an unknown one by number), and the
    data scrubbed and bounded. The remote's `message` is not shown: for a known code it only repeats the name."""
    code = _rpc_code(error)
    name = _RPC_CODES.get(code) if code is not None else None
    label = f"{code}: {name}" if name else f"code {code}" if code is not None else "without a code"
    data = error.get("data")
    text = data if isinstance(data, str) else json.dumps(data) if data is not None else ""
    if not name and not text and isinstance(error.get("message"), str):
        text = error["message"]  # an unknown code with no data: its message is all there is, scrubbed like data
    shown = scrub_output(text, _RPC_DATA_SHOWN, keep="head") if text else ""
    return f"JSON-RPC error {label}" + (f": {shown}" if shown else "")


class RpcClient:
    """Async client for one node's CometBFT RPC endpoint. See the module docstring."""

    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT, max_body_bytes: int = MAX_BODY_BYTES):
        """`endpoint` in any form `normalize_endpoint` accepts; raises `ValueError` naming it when unusable."""
        self.endpoint = normalize_endpoint(endpoint)
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self._session: aiohttp.ClientSession | None = None
        self._plain_hex = False
        """True once the node refused `0x` hex for a hex-typed argument (sei-tendermint; see the module docstring)."""

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No env proxies: the node is next door, and a cluster-wide HTTP_PROXY must not capture its RPC.
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session

    def _error(self, path: str, kind: str, cause: str, *, retryable: bool = True) -> RpcError:
        return RpcError(self.endpoint, path, kind, cause, retryable=retryable)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, or its first `max_body_bytes + 1` bytes when it is larger (the caller refuses those).

        One `content.read(n)` returns what has arrived so far, up to n: a body that comes in several TCP segments
        (a large block_results, a busy node) would be cut short and fail as "not JSON". Read until EOF.
        """
        body = bytearray()
        while len(body) <= self.max_body_bytes:
            chunk = await response.content.read(self.max_body_bytes + 1 - len(body))
            if not chunk:
                break
            body += chunk
        return bytes(body)

    async def _fetch(self, path: str, params: dict[str, str], seconds: float | None) -> tuple[bytes, Any]:
        """GET `path`, returning (raw body, parsed JSON); every failure is an RpcError naming endpoint and path."""
        shown = _shown(path, params)
        seconds = self.timeout if seconds is None else seconds
        try:
            async with asyncio.timeout(seconds):
                async with self._client_session().get(self.endpoint + path, params=params) as response:
                    body = await self._read_body(response)
                    status = response.status
                    phrase = response.reason or ""
        except TimeoutError:
            raise self._error(shown, "timeout", f"no answer within {seconds:g}s") from None
        except aiohttp.ClientConnectorError as error:
            cause = error.os_error.strerror if error.os_error and error.os_error.strerror else str(error)
            raise self._error(shown, "connect", f"cannot connect: {cause}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as error:
            raise self._error(shown, "connect", f"connection dropped: {error}") from None
        except aiohttp.ClientError as error:
            raise self._error(shown, "connect", f"{type(error).__name__}: {error}") from None
        except OSError as error:
            raise self._error(shown, "connect", f"cannot connect: {error.strerror or error}") from None
        if len(body) > self.max_body_bytes:
            raise self._error(shown, "malformed", f"body larger than {self.max_body_bytes} bytes", retryable=False)
        parsed: Any = None
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        # A JSON-RPC error object (either dialect) wins over the HTTP status: it says what actually went wrong.
        # Not for credential failures: whatever a 401/403 says stays out of the message (any host may be named).
        answered = _error_object(parsed) if status not in _CREDENTIAL_STATUS else None
        if answered is not None:
            data = answered.get("data")
            raise RpcError(
                self.endpoint,
                shown,
                "rpc",
                _rpc_error_text(answered) + f" (HTTP {status})",
                rpc_code=_rpc_code(answered),
                rpc_data=(data if isinstance(data, str) else "")[:_RPC_DATA_KEPT],
            )
        if status != 200:
            # Never the body, nor the remote's reason phrase: any host may be named as an endpoint, and what it
            # answers (a 401 with a credentials-shaped page, say) would land in the task's status, readable by every
            # pod's agent. The standard phrase of the status code says enough.
            del phrase
            try:
                reason = http.HTTPStatus(status).phrase
            except ValueError:
                reason = ""
            raise self._error(shown, "http", f"HTTP {status}" + (f" {reason}" if reason else ""))
        if parsed is None:
            raise self._error(shown, "malformed", "body is not JSON", retryable=False)
        return body, parsed

    async def _result(self, path: str, params: dict[str, str], seconds: float | None) -> tuple[bytes, dict[str, Any]]:
        body, parsed = await self._fetch(path, params, seconds)
        try:
            return body, _unwrap(parsed)
        except ValueError as error:
            raise self._error(_shown(path, params), "malformed", str(error), retryable=False) from None

    def _typed(self, path: str, parse: Callable[[dict[str, Any]], T], result: dict[str, Any]) -> T:
        try:
            return parse(result)
        except ValueError as error:
            raise self._error(path, "malformed", str(error), retryable=False) from None

    async def get(
        self, path: str, params: dict[str, str] | None = None, *, seconds: float | None = None
    ) -> dict[str, Any]:
        """The unwrapped result object of any GET endpoint (`/abci_info`, `/validators`...)."""
        return (await self._result(path, params or {}, seconds))[1]

    async def status(self, *, seconds: float | None = None) -> NodeStatus:
        """`/status`: node ID, latest height, catching_up."""
        _, result = await self._result("/status", {}, seconds)
        return self._typed("/status", NodeStatus.parse, result)

    async def block(self, height: int | None = None, *, seconds: float | None = None) -> BlockInfo:
        """`/block?height=H` (latest when `height` is None): the block ID hash and header fields."""
        path, params = "/block", ({"height": str(height)} if height is not None else {})
        _, result = await self._result(path, params, seconds)
        return self._typed(_shown(path, params), BlockInfo.parse, result)

    async def block_raw(self, height: int | None = None, *, seconds: float | None = None) -> bytes:
        """`/block` body exactly as the node sent it (envelope included when the node sends one)."""
        return (await self._result("/block", {"height": str(height)} if height is not None else {}, seconds))[0]

    async def block_results(self, height: int, *, seconds: float | None = None) -> dict[str, Any]:
        """`/block_results?height=H`, unwrapped (`txs_results`, events...)."""
        return (await self._result("/block_results", {"height": str(height)}, seconds))[1]

    async def block_results_raw(self, height: int, *, seconds: float | None = None) -> bytes:
        """`/block_results` body exactly as the node sent it, after the same checks as `block_results`."""
        return (await self._result("/block_results", {"height": str(height)}, seconds))[0]

    async def net_info(self, *, seconds: float | None = None) -> NetInfo:
        """`/net_info`: the node's connected peers."""
        _, result = await self._result("/net_info", {}, seconds)
        return self._typed("/net_info", NetInfo.parse, result)

    # --- transactions (signed-tx tasks) --------------------------------------------------------------------------
    # URI form, as for every other call: string arguments are JSON-quoted, byte arguments hex (see the module
    # docstring for `0x` or plain).

    async def _get_hex_typed(
        self, path: str, params: dict[str, str], name: str, value: bytes, seconds: float | None
    ) -> dict[str, Any]:
        """GET with the hex-typed byte argument `name` in the form this node takes (module docstring)."""
        if not self._plain_hex:
            try:
                return await self.get(path, {**params, name: "0x" + value.hex()}, seconds=seconds)
            except RpcError as error:
                if not (error.kind == "rpc" and error.rpc_code == -32602 and _HEX_REFUSAL.search(error.rpc_data)):
                    raise
                self._plain_hex = True
        return await self.get(path, {**params, name: value.hex()}, seconds=seconds)

    async def abci_query(self, path: str, data: bytes, *, seconds: float | None = None) -> dict[str, Any]:
        """`/abci_query` at the latest height: the `response` object (`code`, `log`, `value` base64, `codespace`)."""
        result = await self._get_hex_typed("/abci_query", {"path": json.dumps(path)}, "data", data, seconds)
        response = result.get("response")
        if not isinstance(response, dict):
            raise self._error(
                "/abci_query", "malformed", "result.response is missing or not an object", retryable=False
            )
        return response

    async def broadcast_tx_sync(self, tx: bytes, *, seconds: float | None = None) -> dict[str, Any]:
        """`/broadcast_tx_sync`: CheckTx's answer (`code`, `codespace`, `log`, `hash`). A JSON-RPC error (for example
        CometBFT's "tx already exists in cache") is an `RpcError` of kind `rpc` carrying the node's text."""
        return await self.get("/broadcast_tx_sync", {"tx": "0x" + tx.hex()}, seconds=seconds)

    async def tx(self, tx_hash: str, *, seconds: float | None = None) -> dict[str, Any] | None:
        """`/tx?hash=`: the committed transaction (`height` > 0, `tx_result`), or None when the node has not indexed
        it (yet).

        A node with no transaction index answers every lookup with an error saying so; that is an `RpcError` of kind
        `unindexed` (not None, not retryable), because "not found" would then be a lie. An answer without a positive
        height or a `tx_result` object is `malformed`: it is never a committed transaction.
        """
        try:
            raw = bytes.fromhex(tx_hash)
        except ValueError:
            raise ValueError(f"transaction hash {tx_hash!r} is not hex") from None
        try:
            found = await self._get_hex_typed("/tx", {}, "hash", raw, seconds)
        except RpcError as error:
            if error.kind != "rpc":
                raise
            if _INDEX_OFF.search(error.rpc_data):
                raise RpcError(
                    self.endpoint,
                    error.path,
                    "unindexed",
                    "the node keeps no transaction index (" + _rpc_error_text({"data": error.rpc_data}) + ")",
                    retryable=False,
                    rpc_code=error.rpc_code,
                    rpc_data=error.rpc_data,
                ) from None
            if re.search(r"\bnot found\b", error.rpc_data):
                return None
            raise
        tx_result = found.get("tx_result")
        try:
            height = _height(found.get("height"), "height")
        except ValueError:
            height = 0
        if height <= 0 or not isinstance(tx_result, dict):
            raise self._error(
                "/tx", "malformed", "the answer has no positive height and tx_result object", retryable=False
            )
        return found

"""A minimal Ethereum JSON-RPC client (POST `{"jsonrpc":"2.0","id":n,"method":...,"params":[...]}`): what
result-export's comparison Layer 2 reads from the nodes' EVM RPCs.

It shares the CometBFT client's connection handling and bounded body reads (`RpcClient`, which it extends) and
reports every failure as an `EvmRpcError` naming the endpoint, the method and the cause (connection, timeout, HTTP
status, the node's JSON-RPC error, a malformed or oversized body). The node's own text is scrubbed and bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp

from agent.models.redaction import scrub_output

from .rpc import RpcClient, normalize_endpoint

DEFAULT_EVM_PORT = 8545


class EvmRpcError(Exception):
    """An EVM JSON-RPC call failed; the message names the endpoint, the method and the cause."""


class EvmRpcClient(RpcClient):
    """Async JSON-RPC client for one EVM endpoint (`scheme://host:port`, default port 8545)."""

    def __init__(self, endpoint: str, *, timeout: float = 10.0, max_body_bytes: int = 16 * 1024 * 1024):
        super().__init__(normalize_endpoint(endpoint, default_port=DEFAULT_EVM_PORT), timeout=timeout)
        self.max_body_bytes = max_body_bytes
        self._ids = itertools.count(1)

    async def __aenter__(self) -> EvmRpcClient:
        return self

    async def call(self, method: str, *params: Any) -> Any:
        """The `result` of one call; EvmRpcError on any failure (including a JSON-RPC `error`)."""
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        where = f"EVM RPC {self.endpoint} {method}"
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client_session().post(self.endpoint, json=request) as response:
                    body = await self._read_body(response)
                    status = response.status
        except TimeoutError:
            raise EvmRpcError(f"{where}: no answer within {self.timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as error:
            raise EvmRpcError(f"{where}: cannot connect: {scrub_output(str(error), 200, keep='head')}") from None
        if len(body) > self.max_body_bytes:
            raise EvmRpcError(f"{where}: answer larger than {self.max_body_bytes} bytes")
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict) and parsed.get("error") not in (None, ""):
            problem = parsed["error"]
            text = problem.get("message") if isinstance(problem, dict) else problem
            raise EvmRpcError(f"{where}: {scrub_output(str(text), 300, keep='head')}")
        if status != 200:
            raise EvmRpcError(f"{where}: HTTP {status}")
        if not isinstance(parsed, dict) or "result" not in parsed:
            raise EvmRpcError(f"{where}: the answer is not a JSON-RPC result")
        return parsed["result"]

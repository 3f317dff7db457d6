"""Bounds on the HTTP server, so that a flood of connections cannot take the probes (or the process) down.

The agent listens on every interface (the kubelet probes the pod IP). An attack held 20,000 idle, half-sent requests
open: the process ran out of file descriptors, /healthz stopped answering, status patches failed, and asyncio logged
`socket.accept() out of system resource` ~450,000 times in a minute. Another held 400 POSTs whose bodies trickled in
a byte at a time: each counted as a request in progress, the connection limit was reached with nothing evictable,
and every probe was reset for 20-40 s. Now:

- At most `max_connections` connections are open. When a new one arrives at the limit, the oldest *idle* connection
  is closed to make room, so a probe's fresh connection is never the one refused while attackers' idle ones are
  kept; only when every connection is busy serving a request is the new one closed at once. Idle means: no complete
  request yet (half-sent headers, *or headers sent and the body still arriving*), or kept alive after its response.
- A connection must deliver a complete request, headers *and body*, within `idle_timeout` seconds of opening (or of
  its last response), on every route, else it is closed: one deadline for headers, body and keep-alive. The guard
  reads the body itself (at most `max_body` bytes, see `request_body`; all bodies in flight at most `max_buffered`
  together, else 503) before the request counts as busy, so no handler ever waits on a client that does not send.
- `/v0/tasks` (the only heavy endpoint, both the agent's and the seictl-compatible one) is served to at most
  `HEAVY_CONCURRENCY` requests at once (others get 503 with Retry-After), in bounded memory.
- asyncio's accept() resource errors are logged once per minute with a count (`throttle_accept_errors`).
The chart's NetworkPolicy (values `networkPolicy`, on whenever the task API is) restricts who may connect at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from agent.io.loops import LogThrottle

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 10.0
HEAVY_CONCURRENCY = 4
LISTING_MAX_BYTES = 4 * 1024 * 1024
"""JSON bytes of tasks in one listing answer, on both task APIs (the newest rows that fit, at least one)."""
ACCEPT_BACKLOG = 1024
"""Listen queue length (the kernel caps it at net.core.somaxconn, 4096 by default)."""
MAX_REQUEST_BODY = 1 << 20
"""Largest request body read (1 MiB: the largest real request, a genesis ceremony's node list with accounts and
overrides, is a few KiB); a larger one is not read at all (`request_body` returns None)."""
MAX_BUFFERED_BODIES = 16 << 20
"""Request body bytes held at once across all connections (16 MiB: sixteen largest bodies, thousands of real ones)."""
_BODY: Any = web.RequestKey("nodetask_request_body", object) if hasattr(web, "RequestKey") else "nodetask.body"
"""Where the guard leaves the body it read (a typed key where aiohttp has them, 3.13 and later)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refuse(asyncio.Protocol):
    """Closes the connection at once (every connection is busy serving a request)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class ConnectionGuard:
    """Wraps aiohttp's protocol factory: the connection limit, idle eviction and the idle timeout (module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        max_body: int = MAX_REQUEST_BODY,
        max_buffered: int = MAX_BUFFERED_BODIES,
    ) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self.max_buffered = max_buffered
        self.buffered = 0
        """Bytes of request bodies read and not yet handled (bounded by `max_buffered`)."""
        self.server: web.Server | None = None
        self._idle: dict[RequestHandler, asyncio.TimerHandle] = {}
        self._refusals = LogThrottle(60.0)
        self.evicted = 0
        self.refused = 0

    def factory(self) -> asyncio.BaseProtocol:
        server = self.server
        assert server is not None, "ConnectionGuard.server is set when the runner is set up"
        if len(server.connections) >= self.max_connections and not self._evict_oldest_idle():
            self.refused += 1
            suppressed = self._refusals.allow()
            if suppressed is not None:
                log.warning(
                    "HTTP server at its limit of %d connections, all busy: refusing new ones (%d refused since the "
                    "last report)",
                    self.max_connections,
                    suppressed + 1,
                )
            return _Refuse()
        handler = server()
        self._arm(handler)
        return handler

    def _arm(self, handler: RequestHandler) -> None:
        loop = asyncio.get_running_loop()
        self._idle[handler] = loop.call_later(self.idle_timeout, self._expire, handler)

    def _expire(self, handler: RequestHandler) -> None:
        self._idle.pop(handler, None)
        handler.force_close()

    def _evict_oldest_idle(self) -> bool:
        while self._idle:
            handler, timer = next(iter(self._idle.items()))
            del self._idle[handler]
            timer.cancel()
            transport = handler.transport
            if transport is None or transport.is_closing():
                continue  # already gone; keep looking
            handler.force_close()
            self.evicted += 1
            return True
        return False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A complete request arrived (headers, then the body read here while the connection stays idle and under
        its deadline): the connection is busy until its response, then idle again."""
        protocol = request.protocol
        held = 0
        try:
            if request.body_exists:
                try:
                    body = await self._read_body(request)
                except _OverBudget:
                    return web.json_response(
                        {"error": "too many request bodies in flight; try again shortly"},
                        status=503,
                        headers={"Retry-After": "1"},
                    )
                except (ConnectionError, RuntimeError):
                    if protocol.transport is not None and not protocol.transport.is_closing():
                        raise
                    # Closed under the read (deadline, eviction, or the client left): nobody to answer. The response
                    # is dropped quietly by aiohttp; an attack must not turn into one logged traceback per connection.
                    return web.Response(status=408)
                held = len(body or b"")
                request[_BODY] = body
            timer = self._idle.pop(protocol, None)
            if timer is not None:
                timer.cancel()
            try:
                return await handler(request)
            finally:
                if protocol.transport is not None and not protocol.transport.is_closing():
                    self._arm(protocol)
        finally:
            self.buffered -= held

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The whole body, or None when it is larger than `max_body` (reading stops there; aiohttp discards the rest
        for a bounded time while the connection counts as idle). Runs under the connection's deadline: `_expire` or
        an eviction closes the connection, which ends this read with a connection error. Bodies being read or
        handled hold at most `max_buffered` bytes together (`_OverBudget` beyond it): 256 connections sending 1 MiB
        each must not hold 256 MiB."""
        if request.content_length is not None and request.content_length > self.max_body:
            return None
        body = bytearray()
        try:
            async for chunk in request.content.iter_chunked(64 * 1024):
                if self.buffered + len(chunk) > self.max_buffered:
                    raise _OverBudget
                body += chunk
                self.buffered += len(chunk)
                if len(body) > self.max_body:
                    self.buffered -= len(body)
                    return None
        except BaseException:
            self.buffered -= len(body)
            raise
        return bytes(body)


class _OverBudget(Exception):
    """Reading this body would take the bodies in flight past `ConnectionGuard.max_buffered`."""


def request_body(request: web.Request) -> bytes | None:
    """The request's body as the guard read it (b"" without one); None when it was larger than the guard's
    `max_body`. Handlers read bodies only through this: the guard has consumed the stream."""
    body: bytes | None = request.get(_BODY, b"")
    return body


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        # A deep accept queue: while attackers churn connections, a full queue drops the probe's SYN and the
        # kernel retries it only after a second, the kubelet's whole probe timeout.
        super().__init__(runner, host, port, backlog=ACCEPT_BACKLOG)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        self._guard.server = self._runner.server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


_ACCEPT_ERROR = "socket.accept() out of system resource"


def throttle_accept_errors(loop: asyncio.AbstractEventLoop, interval: float = 60.0) -> None:
    """Log asyncio's accept() resource errors (EMFILE, ENFILE, ENOBUFS, ENOMEM) once per `interval`, with a count;
    every other loop error goes to the handler that was installed before."""
    previous = loop.get_exception_handler()
    throttle = LogThrottle(interval)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith(_ACCEPT_ERROR):
            suppressed = throttle.allow()
            if suppressed is not None:
                log.error(
                    "%s: %s (%d more since the last report; accepting pauses and resumes by itself)",
                    _ACCEPT_ERROR,
                    context.get("exception"),
                    suppressed,
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)

"""The agent's HTTP server on :7777 (docs/design.md section 7): probes, metrics and read-only views of the store.

- `GET /healthz`: 200 once a `mark-ready` succeeded (and no later `mark-not-ready`) and the task store can be written,
  else 503 with the reason: the readiness probe and seid's start gate. An agent that cannot record progress must not
  claim to be ready (docs/reliability.md).
- `GET /livez`: 200 while the process serves (the store open), else 503. A failing store does not fail liveness: a
  restart cures neither a full volume nor another process's lock, and a restart loop only adds downtime.
- `GET /metrics`: Prometheus text (`AgentMetrics`).
- `GET /v0/status`: readiness, running count and the agent's identity.
- `GET /v0/tasks?limit=N`: the newest tasks (default 100, at most 500), newest first; at most `HEAVY_CONCURRENCY`
  such requests at once (else 503 with Retry-After) and at most `LISTING_MAX_BYTES` of tasks per answer (then
  `"truncated": true`): 32 parallel unbounded answers once OOM-killed the agent. Connection bounds: `limits.py`.
- `GET /v0/tasks/{id}`: one task, with live progress while it runs; 404 JSON for an unknown ID, 400 for a malformed one.

Without the seictl-compatible task API (`agent.server.seictl`) everything here is read-only: tasks arrive as NodeTask
resources (or local manifests). With it, where the server listens follows `SEI_SIDECAR_AUTHN_MODE` (`AgentServer`):
unset or `trusted-header` bind loopback only; only an explicit `unauthenticated` serves every interface, with a
WARNING at start, the mode in `/v0/status`, and every mutating request logged with its peer (`audit_middleware`).
The read views need no authentication (kubelet probes and Prometheus must reach them); nothing served is secret
(handlers never return secrets, and values under secret-looking keys, and secret-shaped text such as URL passwords and
presigned signatures, are masked anyway, see `public_task`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.engine import Engine
from agent.models import TaskResult, normalize_task_id
from agent.models.errors import TaskError
from agent.models.redaction import redact, redact_text
from agent.models.settings import AgentSettings
from agent.runtime.metrics import CONTENT_TYPE_LATEST, AgentMetrics
from agent.store import StoreError

from .auth import REMOTE_USER, trusted_header_middleware
from .limits import HEAVY_CONCURRENCY, LISTING_MAX_BYTES, ConnectionGuard, GuardedSite, throttle_accept_errors
from .rows import servable
from .seictl import SeictlApi

log = logging.getLogger(__name__)
audit = logging.getLogger("agent.server.audit")

MAX_LIMIT = 500
LOOPBACK = "127.0.0.1"


def public_task(result: TaskResult) -> dict[str, Any]:
    """The JSON form of a task for the read API: the row's fields (camelCase), its phase, secrets masked
    (`agent.models.redaction.redact`: secret-looking keys, URL userinfo, presigned signatures, tokens...)."""
    result = servable(result)
    body = result.model_dump(mode="json", by_alias=True)
    body["phase"] = str(result.phase)
    body["params"] = redact(body.get("params"))
    body["result"] = redact(body.get("result"))
    for text in ("error", "hint"):
        body[text] = redact_text(body.get(text) or "")
    if result.progress is not None:
        body["progress"]["message"] = redact_text(result.progress.message)
        body["progress"]["percent"] = result.progress.percent
        body["progress"]["summary"] = redact_text(result.progress.describe())
    return body


@dataclass
class ServerContext:
    engine: Engine
    metrics: AgentMetrics
    identity: dict[str, str] = field(default_factory=dict)
    heavy: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(HEAVY_CONCURRENCY))
    """Shared by every task listing (the agent's and the seictl-compatible one): one bound on the heavy work."""
    authn_mode: str = "unset"


_CONTEXT = web.AppKey("context", ServerContext)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def healthz(request: web.Request) -> web.Response:
    engine = request.app[_CONTEXT].engine
    store = engine.store_health()
    if not store.ok:
        reason = f"task store {store.describe()}"
        return web.json_response({"status": "not ready", "reason": reason}, status=503)
    if engine.healthz():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": "no successful mark-ready yet, or held"}, status=503)


async def livez(request: web.Request) -> web.Response:
    engine = request.app[_CONTEXT].engine
    if engine.livez():
        return web.json_response({"status": "alive"})
    return web.json_response({"status": "store unavailable"}, status=503)


async def serve_metrics(request: web.Request) -> web.Response:
    body = request.app[_CONTEXT].metrics.exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def status(request: web.Request) -> web.Response:
    context = request.app[_CONTEXT]
    body: dict[str, Any] = dict(context.engine.status())
    body["ready"] = context.engine.healthz()
    store = context.engine.store_health()
    body["store"] = {"ok": store.ok, "error": store.cause, "since": store.since.isoformat() if store.since else None}
    body["agent"] = context.identity
    body["authn"] = context.authn_mode
    return web.json_response(body)


async def list_tasks(request: web.Request) -> web.Response:
    raw = request.query.get("limit", "100")
    try:
        limit = int(raw)
    except ValueError:
        return _error(400, f"limit must be an integer between 1 and {MAX_LIMIT}, not {raw!r}")
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    context = request.app[_CONTEXT]
    if context.heavy.locked():
        response = _error(503, f"at most {HEAVY_CONCURRENCY} task listings at once; try again shortly")
        response.headers["Retry-After"] = "1"
        return response
    async with context.heavy:
        parts: list[str] = []
        size = 0
        truncated = ""
        for result in await context.engine.recent(limit):
            piece = json.dumps(public_task(result))
            if parts and size + len(piece) > LISTING_MAX_BYTES:
                truncated = ', "truncated": true'
                break
            parts.append(piece)
            size += len(piece)
        body = f'{{"tasks": [{", ".join(parts)}], "count": {len(parts)}{truncated}}}'
    return web.Response(text=body, content_type="application/json")


async def get_task(request: web.Request) -> web.Response:
    raw = request.match_info["task_id"]
    try:
        task_id = normalize_task_id(raw)
    except TaskError as error:
        return _error(400, error.message, reason=error.reason)
    result = await request.app[_CONTEXT].engine.get(task_id)
    if result is None:
        return _error(404, f"task {task_id} not found", id=task_id)
    return web.json_response(public_task(result))


@web.middleware
async def store_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A failing store answers 503 naming it (the store logs the cause, throttled), never a 500 with a traceback."""
    try:
        response: web.StreamResponse = await handler(request)
    except StoreError as error:
        return _error(503, f"task store unavailable: {error}")
    return response


MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def audit_middleware(authn_mode: str) -> Any:  # aiohttp's Middleware type is private
    """Logs every mutating request with its peer and answer: who drove the node, even without authentication."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method not in MUTATING_METHODS:
            response: web.StreamResponse = await handler(request)
            return response
        user = request.headers.get(REMOTE_USER, "") if authn_mode == "trusted-header" else ""
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:  # a 404/405 raised by the router
            status = error.status
            raise
        finally:
            audit.info(
                "%s %s from %s%s (authentication: %s): %d",
                request.method,
                request.path,
                _peer(request),
                f" as {user!r}" if user else "",
                authn_mode,
                status,
            )

    return middleware


def _peer(request: web.Request) -> str:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(request.remote or "unknown peer")


def create_app(
    engine: Engine,
    metrics: AgentMetrics,
    identity: dict[str, str] | None = None,
    *,
    seictl_settings: AgentSettings | None = None,
    authn_mode: str = "unset",
    guard: ConnectionGuard | None = None,
) -> web.Application:
    """The aiohttp application; the caller registers `metrics.observe` as an engine listener (see `AgentServer`).

    With `seictl_settings`, the Go sidecar's task API is mounted (`agent.server.seictl`): its `/v0/tasks` routes take
    over those paths, and the agent's own read-only views move to `/nodetask/v0/status` and
    `/nodetask/v0/tasks[/{id}]`. With `authn_mode="trusted-header"` every request but the probes and metrics needs one
    `X-Remote-User` (`auth`), checked first (before the connection guard reads a body) and before routing. Every
    mutating request is logged with its peer (`audit_middleware`). The connection guard reads request bodies
    (`limits.request_body`); without one given, a guard of default bounds is used.
    """
    guard = guard or ConnectionGuard()
    # Authentication first: a refused request's body is never read into memory (aiohttp discards it, bounded).
    middlewares: list[Any] = [trusted_header_middleware(metrics)] if authn_mode == "trusted-header" else []
    middlewares += [guard.middleware, audit_middleware(authn_mode), store_errors]
    app = web.Application(middlewares=middlewares)
    context = app[_CONTEXT] = ServerContext(engine, metrics, dict(identity or {}), authn_mode=authn_mode)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", serve_metrics)
    if seictl_settings is None:
        app.router.add_get("/v0/status", status)
        app.router.add_get("/v0/tasks", list_tasks)
        app.router.add_get("/v0/tasks/{task_id}", get_task)
    else:
        app.router.add_get("/nodetask/v0/status", status)
        app.router.add_get("/nodetask/v0/tasks", list_tasks)
        app.router.add_get("/nodetask/v0/tasks/{task_id}", get_task)
        SeictlApi(
            engine,
            seictl_settings,
            lambda: (metrics.exposition(), CONTENT_TYPE_LATEST),
            heavy=context.heavy,
            authn_mode=authn_mode,
        ).add_routes(app.router)
    return app


class AgentServer:
    """The running HTTP server: binds `host:port` (port 0 picks a free one, see `.port`) and serves the app."""

    def __init__(
        self,
        engine: Engine,
        metrics: AgentMetrics,
        *,
        host: str = "0.0.0.0",  # probes come from the kubelet, on the pod IP
        port: int = 7777,
        identity: dict[str, str] | None = None,
        seictl_settings: AgentSettings | None = None,
        authn_mode: str = "unset",
        guard: ConnectionGuard | None = None,
    ) -> None:
        self.guard = guard or ConnectionGuard()
        self.app = create_app(
            engine, metrics, identity, seictl_settings=seictl_settings, authn_mode=authn_mode, guard=self.guard
        )
        self.authn_mode = authn_mode
        self.task_api = seictl_settings is not None
        # Behind kube-rbac-proxy the proxy is the only client allowed in: loopback only, as the original binds. The
        # task API without an authentication mode is never served beyond loopback by accident (B2,
        # docs/reliability.md): only the explicit `unauthenticated` opens it.
        loopback_only = authn_mode == "trusted-header" or (self.task_api and authn_mode == "unset")
        self.requested_host = host
        self.host = LOOPBACK if loopback_only else host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        throttle_accept_errors(asyncio.get_running_loop())
        self._runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=self.guard.idle_timeout)
        await self._runner.setup()
        site = GuardedSite(self._runner, self.host, self.port, self.guard)
        await site.start()
        for address in self._runner.addresses:  # the bound port, when 0 asked for any free one
            self.port = int(address[1])
            break
        self._warn_about_exposure()

    def _warn_about_exposure(self) -> None:
        """Say at start what the task API's authentication mode means for who can reach it."""
        if not self.task_api:
            return
        if self.authn_mode == "unset" and self.requested_host not in (LOOPBACK, "localhost", "::1"):
            log.warning(
                "SEI_SIDECAR_AUTHN_MODE is not set: the task API listens on %s:%d only, not on %s. To serve it to "
                "other hosts set SEI_SIDECAR_AUTHN_MODE=trusted-header (behind kube-rbac-proxy) or, knowingly, "
                "SEI_SIDECAR_AUTHN_MODE=unauthenticated (anyone who reaches the port can run any task)",
                self.host,
                self.port,
                self.requested_host,
            )
        elif self.authn_mode == "unauthenticated":
            log.warning(
                "SEI_SIDECAR_AUTHN_MODE=unauthenticated: the task API on %s:%d runs any task (gov-vote, reset-data...) "
                "for anyone who reaches the port, without authentication; restrict the port (the chart's "
                "NetworkPolicy) or use trusted-header. Every mutating request is logged with its peer",
                self.host,
                self.port,
            )

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

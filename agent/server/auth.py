"""`SEI_SIDECAR_AUTHN_MODE=trusted-header`, as the Go sidecar does it.

A `kube-rbac-proxy` in the pod authenticates callers (TokenReview + SubjectAccessReview) and forwards them with an
`X-Remote-User` header; the agent then listens on loopback only and refuses any request that does not carry exactly
one non-empty `X-Remote-User`, before routing (an unknown path is a 401, not a 404). The probe and metrics paths are
exempt, because the kubelet and Prometheus send no such header. The header's value is never used: only the proxy can
reach a loopback listener from outside the pod, so its presence is the proof. Inside the pod any container can
forge it; that is the original's documented threat model, kept as is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.runtime.metrics import AgentMetrics

from .seictl import go_json

log = logging.getLogger(__name__)

REMOTE_USER = "X-Remote-User"
BYPASS_PATHS = frozenset({"/v0/healthz", "/v0/startupz", "/v0/livez", "/v0/metrics", "/healthz", "/livez", "/metrics"})
"""Probe and scrape paths, matched exactly: the original's four plus the agent's own probes and metrics."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rejection(request: web.Request) -> tuple[str, str] | None:
    """(metric reason, message) when `request` fails the trusted-header rule, else None."""
    if request.path in BYPASS_PATHS:
        return None
    values = request.headers.getall(REMOTE_USER, [])
    if not values:
        return "missing_header", f"missing {REMOTE_USER} header"
    if len(values) > 1:
        return "duplicate_header", f"expected exactly one {REMOTE_USER} header — proxy must overwrite, not append"
    if not values[0].strip():
        return "empty_header", f"empty {REMOTE_USER} header"
    return None


def trusted_header_middleware(metrics: AgentMetrics) -> Any:  # aiohttp's Middleware type is private
    """The aiohttp middleware enforcing `rejection`; each refusal counts in `nodetask_http_authn_rejections_total`."""
    log.info("trusted-header authentication: exempt paths %s", ", ".join(sorted(BYPASS_PATHS)))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = rejection(request)
        if refused is not None:
            reason, message = refused
            metrics.authn_rejections.labels(reason).inc()
            # The original's bytes: Go's JSON encoding, `Content-Type: application/json` without a charset.
            return web.Response(body=go_json({"error": message}).encode(), status=401, content_type="application/json")
        return await handler(request)

    return middleware

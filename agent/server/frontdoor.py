"""The HTTP API as a front door of the agent runtime (`HttpApi`), and `nodetask-agent serve` / `seictl serve`.

`HttpApi` serves the probes, the metrics and the task views (`AgentServer`) on the runtime's engine and metrics; with
`seictl=True` (always under `serve`, or `NODETASK_SEICTL_API` under `run`) the Go sidecar's task API too. It is started
before any start-up work (probes answer during start-up, and /healthz reflects readiness restored from the store) and
closed after every part that writes (`SHUTDOWN_ORDER`).

`serve` is the process with the HTTP API as its only front door: what a fleet runs when its controller speaks the Go
sidecar's HTTP API and the cluster has no NodeTask CRD (the original's pods carry no POD_NAME/POD_NAMESPACE and no RBAC
for it). The runtime resumes the tasks a previous process left running (holds first, exactly as `run` does) and keeps
the same guarantees as under `run` (store recovery probe, retention, shutdown grace, `nodetask_store_up`).
"""

from __future__ import annotations

import asyncio
import logging

from agent.models.settings import AgentSettings
from agent.runtime import AgentRuntime, FrontDoor
from agent.tasks import HandlerRegistry

from .app import AgentServer

log = logging.getLogger(__name__)


class HttpApi(FrontDoor):
    """The agent's HTTP server as a front door; `server` once started."""

    def __init__(self, *, host: str, seictl: bool, session: bool = True) -> None:
        """`session`: show the runtime's session in `/v0/status` (a NodeTask agent's writes carry it)."""
        self.host = host
        self.seictl = seictl
        self.session = session
        self.server: AgentServer | None = None

    async def start(self, runtime: AgentRuntime) -> None:
        settings = runtime.settings
        identity = dict(runtime.identity)
        if not self.session:
            identity.pop("session")
        self.server = AgentServer(
            runtime.running_engine,
            runtime.metrics,
            host=self.host,
            port=settings.http_port,
            identity=identity,
            seictl_settings=settings if self.seictl else None,
            authn_mode=settings.authn_mode,
        )
        await self.server.start()
        log.info(
            "serving the task API on %s:%d (authentication: %s)",
            self.server.host,
            self.server.port,
            settings.authn_mode,
        )

    async def close(self, runtime: AgentRuntime) -> None:
        if self.server is not None:
            await self.server.stop()
            runtime.steps.append("http-server")


def serve_runtime(
    settings: AgentSettings,
    *,
    host: str | None = None,
    registry: HandlerRegistry | None = None,
    stop: asyncio.Event | None = None,
    serving: asyncio.Event | None = None,
) -> tuple[AgentRuntime, HttpApi]:
    """The `serve` process: the runtime with the HTTP API (the Go sidecar's task API mounted) as its only door."""
    door = HttpApi(host=host or settings.http_host, seictl=True, session=False)
    return AgentRuntime(settings, [door], registry=registry, stop=stop, serving=serving), door


async def serve(
    settings: AgentSettings,
    *,
    host: str | None = None,
    registry: HandlerRegistry | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives; returns the process exit code."""
    runtime, _ = serve_runtime(settings, host=host, registry=registry, stop=stop)
    return await runtime.run()

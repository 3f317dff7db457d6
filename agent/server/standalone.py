"""`nodetask-agent serve` (and `seictl serve`): the agent without Kubernetes, driven over HTTP only.

The same store, engine and handlers as `nodetask-agent run`, with the Go sidecar's task API (`agent.server.seictl`)
always mounted and no NodeTask watch: what a fleet runs when its controller speaks the original's HTTP API and the
cluster has no NodeTask CRD (the original's pods carry no POD_NAME/POD_NAMESPACE and no RBAC for it).

Lifecycle: open (and migrate) the store, exclusively (one process per store), and remove temporary files a killed
process left; recover the tasks a previous process left running (holds first, exactly as `run` does); serve HTTP;
prune finished tasks hourly. On SIGTERM/SIGINT the engine cancels its handlers and leaves their rows running for the
next start, then the server stops and the store closes (recording a clean stop).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from agent.engine import Engine
from agent.io.files import clean_temporary_files
from agent.models.settings import AgentSettings
from agent.runtime.metrics import AgentMetrics
from agent.store import SqliteStore, StoreError
from agent.tasks import HandlerRegistry, default_registry

from .app import AgentServer

log = logging.getLogger(__name__)


async def serve(
    settings: AgentSettings,
    *,
    host: str = "0.0.0.0",
    registry: HandlerRegistry | None = None,
    stop: asyncio.Event | None = None,
    shutdown_grace: float = 10.0,
    started: asyncio.Event | None = None,
    server_holder: list[AgentServer] | None = None,
) -> int:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives; returns the process exit code.

    `started` is set once the HTTP server listens; `server_holder` (tests) receives the server, to read its port.
    """
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    try:  # one process per store, as `run` and `local`: a second agent on the same home is refused
        store = SqliteStore(settings.store_path, exclusive=True, owner={"podUID": settings.pod_uid})
    except StoreError as error:
        log.error("%s", error)
        return 1
    removed = clean_temporary_files(settings.home)  # left by a killed process; safe: the store's lock is ours
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted agent: %s", len(removed), removed)
    engine = Engine(registry or default_registry(), store, settings, stop_grace=shutdown_grace)
    metrics = AgentMetrics()
    metrics.bind(running=lambda: len(engine.running()), ready=engine.healthz, overdue=lambda: len(engine.overdue()))
    engine.add_listener(metrics.observe)
    server = AgentServer(
        engine,
        metrics,
        host=host,
        port=settings.http_port,
        identity={"pod": settings.pod_name, "namespace": settings.pod_namespace, "podUID": settings.pod_uid},
        seictl_settings=settings,
        authn_mode=settings.authn_mode,
    )
    pruning: asyncio.Task[None] | None = None
    try:
        await server.start()
        if server_holder is not None:
            server_holder.append(server)
        log.info("serving the task API on %s:%d (authentication: %s)", server.host, server.port, settings.authn_mode)
        resumed = await engine.recover()
        if resumed:
            log.info("resumed %d task(s) left running by the previous process", len(resumed))
        pruning = asyncio.create_task(engine.prune_forever(), name="retention")
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        log.info("stopping: handlers are cancelled and their tasks resume on the next start")
        await engine.shutdown(grace=shutdown_grace)
        if pruning is not None:
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
        await server.stop()
        await engine.store.close()  # after the queued store calls; records the clean stop in the lock file
    return 0

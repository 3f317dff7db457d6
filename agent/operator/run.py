"""`nodetask-agent run`: the agent process (store, engine, HTTP server, status writer, kopf watch) and its lifecycle.

kopf is used as a watcher only: one `@kopf.on.event` handler on a private registry feeds every NodeTask event to
`NodeTaskAgent.reconcile`. No change-detecting handlers, daemons or timers are registered, so kopf never writes to a
NodeTask (no progress or last-handled-configuration annotations, no finalizer): several agents in one namespace, or
other kopf operators, cannot fight over annotations. kopf's own storage prefixes and finalizer name are still set to
this project's (never kopf's shared defaults), so that kopf never removes another operator's finalizer.

kopf settings: standalone (no peering), namespace-scoped to POD_NAMESPACE, no cluster scanning (so the agent needs
no cluster-wide RBAC), no Events of its own, and API retries that never give up (an API outage of any length is
survived; the watch resumes from its last resource version). The watch carries `fieldSelector=spec.targetPod=<pod>`
(the CRD declares it selectable), so each agent receives only its own tasks; on servers without `selectableFields`
the agent falls back to watching the namespace and filtering client-side.

Lifecycle: the store is opened (and migrated) first; the HTTP server starts at once (probes answer during start-up,
and /healthz reflects readiness restored from the store); then start-up reconciliation (`NodeTaskAgent.start`); then
the watch, heartbeats and a periodic resync. On SIGTERM/SIGINT: handlers are cancelled with their rows left running
(the next start resumes them), pending statuses and Events get a few seconds to flush, then everything stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import kopf

from agent.engine import Engine
from agent.models.resource import API_GROUP, API_VERSION, PLURAL
from agent.models.settings import AgentSettings
from agent.server import AgentMetrics, AgentServer
from agent.store import SqliteStore, StoreError
from agent.tasks import HandlerRegistry, default_registry

from .agent import NodeTaskAgent, PodIdentity
from .kubeapi import KubeApi, load_connection
from .writer import EventRecorder, StatusWriter

log = logging.getLogger(__name__)

KOPF_PREFIX = "nodetask-agent.sei.io"


@dataclass(frozen=True)
class OperatorOptions:
    """Tunables of the agent process (environment variables in brackets)."""

    http_host: str = "0.0.0.0"  # the kubelet probes the pod IP  [NODETASK_HTTP_HOST]
    progress_interval: float = 5.0
    """At most one progress patch per task this often; transitions are immediate.  [NODETASK_PROGRESS_SECONDS]"""
    heartbeat_interval: float = 30.0
    """`status.heartbeatAt` renewal while Running.  [NODETASK_HEARTBEAT_SECONDS]"""
    resync_interval: float = 60.0
    """Full list-and-reconcile, catching anything a watch gap missed.  [NODETASK_RESYNC_SECONDS]"""
    shutdown_grace: float = 10.0
    """How long cancelled handlers get to stop on shutdown.  [NODETASK_SHUTDOWN_GRACE_SECONDS]"""
    status_concurrency: int = 8
    """Status patches in flight at once (one per object at most).  [NODETASK_STATUS_CONCURRENCY]"""
    selector: str = "auto"
    """auto: field selector on spec.targetPod if the server supports it; none: filter here.  [NODETASK_SELECTOR]"""

    _ENV = {
        "http_host": "NODETASK_HTTP_HOST",
        "progress_interval": "NODETASK_PROGRESS_SECONDS",
        "heartbeat_interval": "NODETASK_HEARTBEAT_SECONDS",
        "resync_interval": "NODETASK_RESYNC_SECONDS",
        "shutdown_grace": "NODETASK_SHUTDOWN_GRACE_SECONDS",
        "status_concurrency": "NODETASK_STATUS_CONCURRENCY",
        "selector": "NODETASK_SELECTOR",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorOptions:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for item in fields(cls):
            variable = cls._ENV.get(item.name)
            raw = env.get(variable, "").strip() if variable else ""
            if not raw:
                continue
            try:
                values[item.name] = type(getattr(cls, item.name))(raw)
            except ValueError:
                raise ValueError(f"{variable}={raw!r}: not a valid {type(getattr(cls, item.name)).__name__}") from None
        options = cls(**values)
        if options.selector not in ("auto", "none"):
            raise ValueError(f"NODETASK_SELECTOR={options.selector!r}: must be 'auto' or 'none'")
        return options


class _ForeverBackoff:
    """kopf API retries: 1, 2, 4, 8, 15, then every 15 s, never giving up (a fresh iterator per request)."""

    def __iter__(self) -> Iterator[float]:
        yield from (1.0, 2.0, 4.0, 8.0)
        while True:
            yield 15.0


def kopf_settings(identity: PodIdentity, field_selector: str | None) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.posting.enabled = False
    settings.networking.error_backoffs = _ForeverBackoff()
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.watching.connect_timeout = 10
    settings.watching.server_timeout = 300
    settings.persistence.finalizer = f"{KOPF_PREFIX}/kopf-unused"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX)
    if field_selector:
        settings.watching.field_selectors[API_GROUP, PLURAL] = field_selector
    return settings


def kopf_registry(agent: NodeTaskAgent, login: kopf.ConnectionInfo) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return login

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def _event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        await agent.reconcile(body, deleted=event.get("type") == "DELETED")

    return registry


def _install_signal_handlers(stop: asyncio.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


async def run_operator(
    settings: AgentSettings,
    *,
    kubeconfig: str | None = None,
    registry: HandlerRegistry | None = None,
    options: OperatorOptions | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the agent until `stop` is set or SIGTERM/SIGINT arrives; returns the process exit code.

    Async: `asyncio.run(run_operator(settings, kubeconfig=...))`. `registry` defaults to every shipped handler.
    """
    options = options or OperatorOptions.from_env()
    # kopf logs every handler call at INFO ("Handler ... succeeded"): one line per watch event, noise at any scale.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if not settings.pod_name or not settings.pod_namespace:
        log.error("POD_NAME and POD_NAMESPACE must be set (downward API): the agent runs only its own pod's tasks")
        return 2
    identity = PodIdentity(settings.pod_name, settings.pod_namespace, settings.pod_uid, uuid.uuid4().hex[:12])
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop)
    try:
        connection = load_connection(kubeconfig, namespace=identity.namespace)
    except Exception as error:  # the kubernetes library raises several types for unusable configs
        log.error("no usable Kubernetes credentials (kubeconfig %s): %s", kubeconfig or "default/in-cluster", error)
        return 2
    try:
        store = SqliteStore(settings.store_path)
    except StoreError as error:
        log.error("%s", error)
        return 1

    api = await KubeApi(connection).open()
    # Tasks read the API (discover-peers' kubernetes source) through the agent's own client: one access path.
    engine = Engine(registry or default_registry(), store, settings, stop_grace=options.shutdown_grace, kube=api)
    metrics = AgentMetrics()
    metrics.bind(running=lambda: len(engine.running()), ready=engine.healthz, overdue=lambda: len(engine.overdue()))
    engine.add_listener(metrics.observe)
    writer = StatusWriter(
        api, metrics, progress_interval=options.progress_interval, concurrency=options.status_concurrency
    )
    events = EventRecorder(api, metrics, pod=identity.name)
    agent = NodeTaskAgent(
        engine,
        api,
        writer,
        events,
        metrics,
        identity,
        heartbeat_interval=options.heartbeat_interval,
        resync_interval=options.resync_interval,
    )
    engine.add_listener(agent.on_engine_event)
    server = AgentServer(
        engine,
        metrics,
        host=options.http_host,
        port=settings.http_port,
        identity={
            "pod": identity.name,
            "namespace": identity.namespace,
            "podUID": identity.uid,
            "session": identity.session,
        },
    )
    background: list[asyncio.Task[None]] = []
    kopf_stop = asyncio.Event()
    kopf_task: asyncio.Task[None] | None = None
    exit_code = 0
    try:
        await server.start()
        log.info(
            "agent of pod %s/%s (session %s) serving HTTP on %s:%d",
            identity.namespace,
            identity.name,
            identity.session,
            options.http_host,
            server.port,
        )
        background += [
            asyncio.create_task(writer.run(), name="status-writer"),
            asyncio.create_task(events.run(), name="event-recorder"),
            asyncio.create_task(engine.prune_forever(), name="retention"),
        ]
        field_selector = await agent.choose_selector(options.selector)
        if await agent.start(stop):
            background += [
                asyncio.create_task(agent.heartbeat_forever(), name="heartbeat"),
                asyncio.create_task(agent.resync_forever(), name="resync"),
            ]
            kopf_task = asyncio.create_task(
                _run_kopf(agent, connection.kopf_login(), identity, field_selector, kopf_stop, stop), name="kopf"
            )
            stopped = asyncio.create_task(stop.wait(), name="stop-wait")
            done, _ = await asyncio.wait({kopf_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if kopf_task in done:
                log.error("the kopf watch ended unexpectedly: %r", kopf_task.exception())
                exit_code = 1
    finally:
        log.info("stopping: handlers are cancelled and their tasks resume on the next start")
        await engine.shutdown(grace=options.shutdown_grace)
        await writer.flush(within=5.0)
        await events.flush(within=2.0)
        kopf_stop.set()
        if kopf_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(kopf_task, timeout=15.0)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await server.stop()
        await api.close()
        store.close()
    return exit_code


async def _run_kopf(
    agent: NodeTaskAgent,
    login: kopf.ConnectionInfo,
    identity: PodIdentity,
    field_selector: str | None,
    kopf_stop: asyncio.Event,
    agent_stop: asyncio.Event,
) -> None:
    """kopf's watch machinery until `kopf_stop` is set."""
    existing = asyncio.all_tasks()
    tasks = await kopf.spawn_tasks(
        registry=kopf_registry(agent, login),
        settings=kopf_settings(identity, field_selector),
        standalone=True,
        namespaces=[identity.namespace],
        stop_flag=kopf_stop,
    )
    # spawn_tasks replaced our SIGTERM/SIGINT handlers with kopf's immediate stop; put the graceful one back, which
    # stops the engine first (rows stay running for the next start) and kopf last.
    _install_signal_handlers(agent_stop)
    await kopf.run_tasks(tasks, ignored=existing)

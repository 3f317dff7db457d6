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

Lifecycle (`AgentProcess`): the store is opened (and migrated) first, exclusively (one process per store), and the
agent's temporary files left by a killed process are removed; the HTTP server starts at once (probes answer during
start-up, and /healthz reflects readiness restored from the store); then start-up reconciliation
(`NodeTaskAgent.start`); then the watch, heartbeats and a periodic resync. On SIGTERM/SIGINT: handlers are cancelled
with their rows left running (the next start resumes them), pending statuses and Events get a few seconds to flush,
then everything stops in `SHUTDOWN_ORDER`. Every background loop runs under `agent.io.loops.supervise`: none can die
of an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import kopf

from agent.engine import Engine
from agent.io.files import clean_temporary_files
from agent.io.loops import supervise
from agent.models.limits import allow_deep_json
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
T = TypeVar("T")


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorOptions:
        """The options from the environment, read and validated by the one settings model (`AgentSettings`)."""
        return cls.from_settings(AgentSettings.from_env(env))

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> OperatorOptions:
        return cls(**{item.name: getattr(settings, item.name) for item in fields(cls)})


class _ForeverBackoff:
    """kopf API retries: 1, 2, 4, 8, 15, then every 15 s, never giving up (a fresh iterator per request)."""

    def __iter__(self) -> Iterator[float]:
        yield from (1.0, 2.0, 4.0, 8.0)
        while True:
            yield 15.0


class _NoDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base with an empty essence. kopf builds the essence of every event's body (a deep copy of the whole
    object, status included) to detect changes for change-detecting handlers; the agent registers none (one
    `on.event` handler), so that copy is pure cost: about 7 % of the agent's CPU while 1,000 resumed statuses echo
    back through its watch. Nothing is ever stored (only change-detecting handlers store a diff base)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()


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
    settings.persistence.diffbase_storage = _NoDiffBaseStorage(prefix=KOPF_PREFIX)
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
        await agent.reconcile(body, deleted=event.get("type") == "DELETED", watched=True)

    return registry


def _install_signal_handlers(stop: asyncio.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


SHUTDOWN_ORDER = (
    "engine",
    "status-writer",
    "event-recorder",
    "kopf",
    "background",
    "http-server",
    "api-client",
    "store",
)
"""`AgentProcess.stop`'s steps, in order: handlers stop first (their rows stay running for the next start, and
nothing they do afterwards reaches the store); the statuses and Events they produced are flushed while the API client
is open; the watch and background loops end; probes answer until everything that writes has stopped; the store is
closed last, which records the clean stop (a missing record is how the next start counts a kill)."""


class AgentProcess:
    """The agent process's parts (store, engine, HTTP server, status writer, Event recorder, kopf watch, background
    loops) with an explicit `start`, `serve` and `stop`, so that the order of both is visible and testable.

    `steps` lists the shutdown steps taken so far (names from `SHUTDOWN_ORDER`).
    """

    def __init__(
        self,
        settings: AgentSettings,
        *,
        kubeconfig: str | None = None,
        registry: HandlerRegistry | None = None,
        options: OperatorOptions | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.kubeconfig = kubeconfig
        self.registry = registry
        self.options = options or OperatorOptions.from_env()
        self.stop_flag = stop or asyncio.Event()
        self.identity = PodIdentity(settings.pod_name, settings.pod_namespace, settings.pod_uid, uuid.uuid4().hex[:12])
        self.steps: list[str] = []
        self.store: SqliteStore | None = None
        self.engine: Engine | None = None
        self.server: AgentServer | None = None
        self.writer: StatusWriter | None = None
        self.events: EventRecorder | None = None
        self.agent: NodeTaskAgent | None = None
        self.api: KubeApi | None = None
        self._connection: Any = None
        self._background: list[asyncio.Task[None]] = []
        self._kopf_stop = asyncio.Event()
        self._kopf_task: asyncio.Task[None] | None = None

    async def start(self) -> int | None:
        """Open the store, build the parts and start serving HTTP; an exit code if the process cannot run."""
        allow_deep_json()  # kopf must be able to decode any object the API server serves; the engine then refuses it
        # kopf logs every handler call at INFO ("Handler ... succeeded"): one line per watch event, noise at any scale.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        settings, options, identity = self.settings, self.options, self.identity
        if not settings.pod_name or not settings.pod_namespace:
            log.error("POD_NAME and POD_NAMESPACE must be set (downward API): the agent runs only its own pod's tasks")
            return 2
        _install_signal_handlers(self.stop_flag)
        try:
            self._connection = load_connection(self.kubeconfig, namespace=identity.namespace)
        except Exception as error:  # the kubernetes library raises several types for unusable configs
            log.error(
                "no usable Kubernetes credentials (kubeconfig %s): %s", self.kubeconfig or "default/in-cluster", error
            )
            return 2
        try:  # one process per store; the lock file also tells how the previous owner stopped, and which pod it was
            store = SqliteStore(settings.store_path, exclusive=True, owner={"podUID": identity.uid})
        except StoreError as error:
            log.error("%s", error)
            return 1
        self.store = store
        previous_uid = str(store.previous_owner.get("podUID") or "")
        if store.unclean_stops:
            log.warning(
                "the previous agent process did not stop cleanly (%d time(s) in a row): killed, OOM-killed or crashed",
                store.unclean_stops,
            )
        removed = clean_temporary_files(settings.home)
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted agent: %s", len(removed), removed)

        # Tasks read the API (discover-peers' kubernetes source) through the agent's own client: one access path.
        # Room for every status patch in flight, the Event posters, the list and a task's reads: a smaller pool would
        # silently cap NODETASK_STATUS_CONCURRENCY (it was 16 connections whatever the setting).
        api = self.api = await KubeApi(self._connection, connections=max(16, options.status_concurrency + 8)).open()
        engine = self.engine = Engine(
            self.registry or default_registry(), store, settings, stop_grace=options.shutdown_grace, kube=api
        )
        metrics = AgentMetrics()
        metrics.bind(
            running=lambda: len(engine.running()),
            ready=engine.healthz,
            overdue=lambda: len(engine.overdue()),
            store_up=lambda: engine.store_health().ok,
        )
        engine.add_listener(metrics.observe)
        writer = self.writer = StatusWriter(
            api,
            metrics,
            progress_interval=options.progress_interval,
            concurrency=options.status_concurrency,
            settle=engine.store.writes_settled,
        )
        events = self.events = EventRecorder(
            api, metrics, pod=identity.name, pod_uid=identity.uid, status_first=writer.settled
        )
        agent = self.agent = NodeTaskAgent(
            engine,
            api,
            writer,
            events,
            metrics,
            identity,
            heartbeat_interval=options.heartbeat_interval,
            resync_interval=options.resync_interval,
            new_incarnation=bool(previous_uid and identity.uid and previous_uid != identity.uid),
        )
        engine.add_listener(agent.on_engine_event)
        server = self.server = AgentServer(
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
            seictl_settings=settings if settings.seictl_api else None,
            authn_mode=settings.authn_mode,
        )
        await server.start()
        log.info(
            "agent of pod %s/%s (session %s) serving HTTP on %s:%d",
            identity.namespace,
            identity.name,
            identity.session,
            options.http_host,
            server.port,
        )
        self._background += [
            asyncio.create_task(supervise("status writer", writer.run), name="status-writer"),
            asyncio.create_task(supervise("event recorder", events.run), name="event-recorder"),
            asyncio.create_task(supervise("retention", engine.prune_forever), name="retention"),
            asyncio.create_task(supervise("store recovery probe", engine.store.watch), name="store-probe"),
        ]
        return None

    async def serve(self) -> int:
        """Start-up reconciliation, then the watch, heartbeats and resync until stopped; the exit code."""
        agent, stop = self.agent, self.stop_flag
        assert agent is not None, "start() first"
        # Start-up may wait long (an API server that does not answer, a store that cannot be written): a stop
        # request ends the wait at once.
        field_selector = await _unless_stopped(agent.choose_selector(self.options.selector), stop)
        if field_selector is _STOPPED:
            return 0
        started = await _unless_stopped(agent.start(stop), stop)
        if started is _STOPPED or not started:
            return 0
        self._background += [
            asyncio.create_task(supervise("heartbeat", agent.heartbeat_forever), name="heartbeat"),
            asyncio.create_task(supervise("resync", agent.resync_forever), name="resync"),
        ]
        self._kopf_task = asyncio.create_task(
            _run_kopf(agent, self._connection.kopf_login(), self.identity, field_selector, self._kopf_stop, stop),
            name="kopf",
        )
        stopped = asyncio.create_task(stop.wait(), name="stop-wait")
        done, _ = await asyncio.wait({self._kopf_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if self._kopf_task in done:
            log.error("the kopf watch ended unexpectedly: %r", self._kopf_task.exception())
            return 1
        return 0

    async def stop(self) -> None:
        """Stop every part that was started, in `SHUTDOWN_ORDER` (see there for why)."""
        log.info("stopping: handlers are cancelled and their tasks resume on the next start")
        if self.engine is not None:
            await self.engine.shutdown(grace=self.options.shutdown_grace)
            self.steps.append("engine")
        if self.writer is not None:
            await self.writer.flush(within=5.0)
            self.steps.append("status-writer")
        if self.events is not None:
            await self.events.flush(within=2.0)
            self.steps.append("event-recorder")
        self._kopf_stop.set()
        if self._kopf_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._kopf_task, timeout=15.0)
        self.steps.append("kopf")
        if self.agent is not None:
            self.agent.cancel_expiries()  # pending TTL deletions; the next start times them again from completedAt
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.steps.append("background")
        if self.server is not None:
            await self.server.stop()
            self.steps.append("http-server")
        if self.api is not None:
            await self.api.close()
            self.steps.append("api-client")
        if self.engine is not None:
            await self.engine.store.close()
            self.steps.append("store")
        elif self.store is not None:
            self.store.close()
            self.steps.append("store")


_STOPPED: Any = object()


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | Any:
    """`await work`, or `_STOPPED` (with `work` cancelled) as soon as `stop` is set."""
    working = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait(), name="stop-wait")
    try:
        await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not working.done():
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        return _STOPPED
    return working.result()


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
    process = AgentProcess(settings, kubeconfig=kubeconfig, registry=registry, options=options, stop=stop)
    try:
        failed = await process.start()
        if failed is not None:
            return failed
        return await process.serve()
    finally:
        await process.stop()


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

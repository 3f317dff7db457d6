"""The NodeTask watch: the front door of `nodetask-agent run` that drives the agent runtime from Kubernetes.

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

As a front door (`NodeTaskWatch`, see `agent.runtime`): `check` refuses to start without the pod's identity or usable
credentials; `start` opens the API client (also the handlers' Kubernetes reader), the status writer and the Event
recorder (runtime loops); `serve` is start-up reconciliation (`NodeTaskAgent.start`), then the watch, heartbeats and a
periodic resync until stopped; `drain` flushes pending statuses and Events (a few seconds) and ends the watch; `close`
closes the API client. The runtime owns the store, the engine, signals and the order of the stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from agent.models.limits import allow_deep_json
from agent.models.resource import API_GROUP, API_VERSION, PLURAL
from agent.runtime import STOPPED, AgentRuntime, FrontDoor, unless_stopped
from agent.tasks import KubeReader

from .agent import NodeTaskAgent, PodIdentity
from .kubeapi import Connection, KubeApi, load_connection
from .writer import EventRecorder, StatusWriter

log = logging.getLogger(__name__)

KOPF_PREFIX = "nodetask-agent.sei.io"


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


class NodeTaskWatch(FrontDoor):
    """This pod's NodeTasks, watched and reconciled (see the module docstring for each hook)."""

    main = True

    def __init__(self, *, kubeconfig: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.api: KubeApi | None = None
        self.writer: StatusWriter | None = None
        self.events: EventRecorder | None = None
        self.agent: NodeTaskAgent | None = None
        self._connection: Connection | None = None
        self._kopf_stop = asyncio.Event()
        self._kopf_task: asyncio.Task[None] | None = None

    def check(self, runtime: AgentRuntime) -> int | None:
        allow_deep_json()  # kopf must be able to decode any object the API server serves; the engine then refuses it
        # kopf logs every handler call at INFO ("Handler ... succeeded"): one line per watch event, noise at any scale.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        settings = runtime.settings
        if not settings.pod_name or not settings.pod_namespace:
            log.error("POD_NAME and POD_NAMESPACE must be set (downward API): the agent runs only its own pod's tasks")
            return 2
        try:
            self._connection = load_connection(self.kubeconfig, namespace=settings.pod_namespace, settings=settings)
        except Exception as error:  # the kubernetes library raises several types for unusable configs
            log.error(
                "no usable Kubernetes credentials (kubeconfig %s): %s", self.kubeconfig or "default/in-cluster", error
            )
            return 2
        # Tasks read the API (discover-peers' kubernetes source) through the agent's own client: one access path.
        # Room for every status patch in flight, the Event posters, the list and a task's reads: a smaller pool would
        # silently cap NODETASK_STATUS_CONCURRENCY.
        self.api = KubeApi(self._connection, connections=max(16, settings.status_concurrency + 8))
        return None

    def kube(self) -> KubeReader | None:
        return self.api

    async def start(self, runtime: AgentRuntime) -> None:
        assert self.api is not None, "check() first"
        settings, engine, metrics = runtime.settings, runtime.running_engine, runtime.metrics
        identity = PodIdentity(settings.pod_name, settings.pod_namespace, settings.pod_uid, runtime.session)
        await self.api.open()
        writer = self.writer = StatusWriter(
            self.api,
            metrics,
            progress_interval=settings.progress_interval,
            concurrency=settings.status_concurrency,
            settle=engine.store.writes_settled,
        )
        events = self.events = EventRecorder(
            self.api, metrics, pod=identity.name, pod_uid=identity.uid, status_first=writer.settled
        )
        previous_uid = str(runtime.store.previous_owner.get("podUID") or "") if runtime.store is not None else ""
        agent = self.agent = NodeTaskAgent(
            engine,
            self.api,
            writer,
            events,
            metrics,
            identity,
            heartbeat_interval=settings.heartbeat_interval,
            resync_interval=settings.resync_interval,
            new_incarnation=bool(previous_uid and identity.uid and previous_uid != identity.uid),
        )
        engine.add_listener(agent.on_engine_event)
        runtime.spawn("status writer", writer.run)
        runtime.spawn("event recorder", events.run)
        log.info("agent of pod %s/%s (session %s)", identity.namespace, identity.name, identity.session)

    async def serve(self, runtime: AgentRuntime) -> int:
        """Start-up reconciliation, then the watch, heartbeats and resync until stopped; the exit code."""
        agent, stop = self.agent, runtime.stop_flag
        assert agent is not None and self._connection is not None, "start() first"
        # Start-up may wait long (an API server that does not answer, a store that cannot be written): a stop
        # request ends the wait at once.
        field_selector = await unless_stopped(agent.choose_selector(runtime.settings.selector), stop)
        if field_selector is STOPPED:
            return 0
        started = await unless_stopped(agent.start(stop), stop)
        if started is STOPPED or not started:
            return 0
        runtime.spawn("heartbeat", agent.heartbeat_forever)
        runtime.spawn("resync", agent.resync_forever)
        self._kopf_task = asyncio.create_task(
            _run_kopf(agent, self._connection.kopf_login(), agent.identity, field_selector, self._kopf_stop, runtime),
            name="kopf",
        )
        stopped = asyncio.create_task(stop.wait(), name="stop-wait")
        done, _ = await asyncio.wait({self._kopf_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if self._kopf_task in done:
            log.error("the kopf watch ended unexpectedly: %r", self._kopf_task.exception())
            return 1
        return 0

    async def drain(self, runtime: AgentRuntime) -> None:
        if self.writer is not None:
            await self.writer.flush(within=5.0)
            runtime.steps.append("status-writer")
        if self.events is not None:
            await self.events.flush(within=2.0)
            runtime.steps.append("event-recorder")
        self._kopf_stop.set()
        if self._kopf_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._kopf_task, timeout=15.0)
        runtime.steps.append("kopf")
        if self.agent is not None:
            self.agent.cancel_expiries()  # pending TTL deletions; the next start times them again from completedAt

    async def close(self, runtime: AgentRuntime) -> None:
        if self.api is not None:
            await self.api.close()
            runtime.steps.append("api-client")


async def _run_kopf(
    agent: NodeTaskAgent,
    login: kopf.ConnectionInfo,
    identity: PodIdentity,
    field_selector: str | None,
    kopf_stop: asyncio.Event,
    runtime: AgentRuntime,
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
    runtime.install_signal_handlers()
    await kopf.run_tasks(tasks, ignored=existing)

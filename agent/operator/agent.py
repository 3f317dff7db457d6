"""The NodeTask agent: reconciles its pod's NodeTask resources against the engine and the store (docs/design.md 6).

Every event about a NodeTask, however often kopf delivers it and however stale its body, goes through one idempotent
`reconcile` keyed by the task ID (`spec.taskId`, else `metadata.uid`). What it does is decided by the pure function
`agent.operator.decide.decide` from what the resource says, the store row and what this agent wrote; its docstring
holds the decision table (the same as docs/operator.md's, both run by tests/operator/test_decide.py), and `_carry_out`
does what it says.

A watch event that is the echo of the agent's own last status patch (the resourceVersion the patch was answered
with, no newer status queued, none dropped since) is not reconciled: the object is exactly as the agent left it.
Lists (start-up, resync) reconcile every object regardless, and a terminal status is always reconciled, since it
times `ttlSecondsAfterFinished`.

The store is the source of truth for outcomes, the resource for what was asked. A terminal status counts as an
outcome only when this agent wrote it: `status.agent` names this pod with a pod UID and session that the agent
recorded (`agent.operator.authors`), and, with a store row, the row's phase and run. A terminal status anyone else
wrote (a controller copying a status, a `kubectl patch --subresource=status` naming this pod) never stops a task from
running, never times `ttlSecondsAfterFinished`, and is written over from the store at once, with a warning.

A type the agent does not know, or a task ID that is not a UUID (possible when the CRD and the agent are at different
versions), ends Failed with reason `UnsupportedType` / `InvalidTaskID` and `Accepted=False`; nothing is stored.
A NodeTask beyond `NODETASK_MAX_TASKS` waits Pending `TooManyTasks` (nothing stored) and is submitted again by later
reconciles; a finished task triggers a resync while such NodeTasks wait (`_refuse_for_now`).

Addressing: a NodeTask is this agent's when `spec.targetPod` is its pod and, if `spec.targetPodUID` is set, that UID
is its pod's. Others are ignored entirely (no status, no Event), even if the server-side selector let them through.

Store failures: a reconcile that cannot read or write the store is dropped (the store logs the cause; /healthz is
503); when the store recovers the agent resyncs at once, so the NodeTask that arrived meanwhile runs without a restart.

A new pod incarnation (POD_UID differs from the one that last owned the store, see `SqliteStore`) resumes the rows of
NodeTasks only after listing them: a NodeTask pinned (`targetPodUID`) to the old incarnation is not resumed but
failed `PodReplaced` in the store, with a Warning Event on the NodeTask. Its status is not written: the admission
policy lets only the pinned incarnation write it, and the NodeTask's heartbeat stopping is how a controller sees that
its pod is gone. A row whose NodeTask is gone is removed; the others resume. Holds (`mark-not-ready`) and local
rows still resume before any API call.

`spec.ttlSecondsAfterFinished` (as on a Job): once the resource's status says the task finished (Succeeded, Failed or
Cancelled; so controllers and `kubectl wait` saw the outcome first), the agent deletes the NodeTask that many seconds
after `status.completedAt`, with a UID precondition. The deletion is timed in the process and re-checked on every
reconcile (start-up and periodic resync included), so an agent restart delays it at most by one resync. Its Role
has `delete` on nodetasks for this, and the admission policy lets a pod's agent delete only finished NodeTasks of
its own pod that ask for a TTL. The store row stays (history) until the retention period prunes it.

Deletion needs no finalizer: the watch's DELETED event stops a running handler at once, and a deletion the agent
missed (it was down, or the watch was cut) is found by the start-up and periodic list (a running row whose resource
is gone is removed). A finalizer would only add the last "Cancelled" status of an object that is about to vanish,
at the price of `patch` rights on the main resource and objects stuck Terminating whenever the pod is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from agent.engine import Engine, EngineClosed, EventKind, TaskEvent, task_id_conflict
from agent.io.loops import every
from agent.models import (
    Reason,
    ResourceRef,
    RetryPolicy,
    Task,
    TaskError,
    TaskRejected,
    TaskResult,
    normalize_task_id,
    parse_timestamp,
    utcnow,
)
from agent.models.params import format_validation_error
from agent.models.resource import NodeTaskSpec
from agent.models.status import AgentIdentity
from agent.runtime.metrics import AgentMetrics
from agent.store import StoreError

from .authors import AuthorLedger, ledger_path, store_file
from .decide import RETRYABLE_REFUSALS, Action, Author, Decision, Situation, author_of, decide
from .kubeapi import ApiError, KubeApi
from .status import (
    Rendering,
    essentials,
    is_terminal,
    render_cancelled_before_start,
    render_refused_for_now,
    render_rejection,
    render_status,
)
from .writer import EventRecorder, StatusWriter, backoff_delay

log = logging.getLogger(__name__)

STALE_BODY_WINDOW = 10.0
"""Seconds during which a body whose status differs from what this process just wrote is taken for a late delivery
of an older version (kopf re-delivers stale bodies under load) rather than re-patched; the resync re-checks later."""

RESUMED_EVENTS_EACH = 10
"""Resumed tasks of one agent process that get their own `Resumed` Event on their NodeTask. Every resume is in its
status (`resumes`, reason `Resumed`, message "resumed after an agent restart"), and each start that resumed tasks
posts one summary Event on the agent's Pod; beyond this many, the per-task Events are left out (a restart with 1,000
unfinished tasks would otherwise cost 1,000 Event POSTs competing with the statuses for the API server)."""

RESUMED_NAMES_SHOWN = 20
"""NodeTask names listed in the Pod's summary Event (the rest are counted)."""

RESUME_REPORT_WAIT = 10.0
"""At start-up, resumed handlers wait (`Engine.hold_resumed`) until the first list is done and the statuses saying
they resumed are written, at most this many seconds after the list: the report of a restart is not slowed down by the
work it reports on (1,000 handlers polling the node's RPC at once took the agent's event loop from the status writer).
Holds (`mark-not-ready`) never wait, and nothing waits on an unreachable API server beyond the first list attempt."""

# Engine event -> (Kubernetes Event reason, is a warning). PROGRESS and REMOVED post no Event.
_EVENT_REASONS: dict[EventKind, tuple[str, bool]] = {
    EventKind.ACCEPTED: ("Accepted", False),
    EventKind.STARTED: ("Started", False),
    EventKind.RESUMED: ("Resumed", False),
    EventKind.RETRYING: ("Retrying", True),
    EventKind.SUCCEEDED: ("Succeeded", False),
    EventKind.FAILED: ("Failed", True),
    EventKind.CANCELLED: ("Cancelled", False),
}

_FREES_ROOM = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED, EventKind.REMOVED})
"""Engine events after which the engine holds one task fewer (a NodeTask refused `TooManyTasks` may now run)."""


@dataclass(frozen=True)
class PodIdentity:
    """Who this agent is (downward API), plus a random session per process start."""

    name: str
    namespace: str
    uid: str
    session: str

    @property
    def agent(self) -> AgentIdentity:
        return AgentIdentity(pod=self.name, pod_uid=self.uid, session=self.session)

    @property
    def field_selector(self) -> str:
        return f"spec.targetPod={self.name}"


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(body: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = body.get("spec")
    return spec if isinstance(spec, Mapping) else {}


class NodeTaskAgent:
    def __init__(
        self,
        engine: Engine,
        api: KubeApi,
        writer: StatusWriter,
        events: EventRecorder,
        metrics: AgentMetrics,
        identity: PodIdentity,
        *,
        heartbeat_interval: float = 30.0,
        resync_interval: float = 60.0,
        new_incarnation: bool = False,
        authors: AuthorLedger | None = None,
    ) -> None:
        self.engine = engine
        self.api = api
        self.writer = writer
        self.events = events
        self.metrics = metrics
        self.identity = identity
        self.heartbeat_interval = heartbeat_interval
        self.resync_interval = resync_interval
        self.new_incarnation = new_incarnation
        """This pod's UID differs from the store's previous owner's: NodeTask rows resume only after a list."""
        self.resync_now = asyncio.Event()
        self.authors = authors or AuthorLedger(
            ledger_path(store_file(engine.store)), (identity.name, identity.uid, identity.session)
        )
        """The agent processes whose statuses count as this agent's (`agent.operator.authors`); saved by `start`."""
        self._not_ours: set[str] = set()  # task IDs whose NodeTask this pod may not write (pinned to an old UID)
        self._refused: set[str] = set()  # task IDs refused for now (`TooManyTasks`): a finished task triggers a resync
        engine.store.on_recovered(self.resync_now.set)
        self.field_selector: str | None = identity.field_selector
        self._refs: dict[str, dict[str, ResourceRef]] = {}  # task ID -> object UID -> the object
        self._conditions: dict[str, list[dict[str, Any]]] = {}  # object UID -> conditions last rendered
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # object UID -> reconcile lock
        self._expiries: dict[str, asyncio.Task[None]] = {}  # object UID -> its pending TTL deletion
        self._resumed: list[ResourceRef] = []  # NodeTasks resumed since the last summary Event (`_summarize_resumes`)
        self._resumed_each = 0  # per-task Resumed Events posted by this process
        self._resumed_release_timed = False  # `_release_resumed_after_report` has been called
        self._resumed_release: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------------ addressing

    def owns(self, body: Mapping[str, Any]) -> bool:
        """Whether the NodeTask is addressed to this agent's pod (and to this incarnation, when pinned)."""
        spec = _spec(body)
        if spec.get("targetPod") != self.identity.name:
            return False
        pinned = spec.get("targetPodUID")
        return not pinned or pinned == self.identity.uid

    def _targets(self, row: TaskResult) -> list[ResourceRef]:
        refs = self._refs.get(row.id)
        if refs:
            return list(refs.values())
        source = row.source
        if source is not None and source.namespace == self.identity.namespace and source.name and source.uid:
            return [source]
        return []

    def _ref_of(self, body: Mapping[str, Any]) -> ResourceRef:
        meta = _meta(body)
        return ResourceRef(
            namespace=str(meta.get("namespace") or self.identity.namespace),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
        )

    def _remember(self, task_id: str, ref: ResourceRef) -> None:
        self._refs.setdefault(task_id, {})[ref.uid] = ref

    def _forget(self, task_id: str | None, ref: ResourceRef) -> None:
        if task_id is not None:
            refs = self._refs.get(task_id, {})
            refs.pop(ref.uid, None)
            if not refs:
                self._refs.pop(task_id, None)
        self._conditions.pop(ref.uid, None)
        self.writer.forget(ref)

    # ------------------------------------------------------------------------------------ engine listener

    def on_engine_event(self, event: TaskEvent) -> None:
        """Engine listener: queue the status (and Event) for every resource of the task; never blocks."""
        if self._refused and event.kind in _FREES_ROOM:
            self.resync_now.set()  # room under NODETASK_MAX_TASKS: submit the NodeTasks refused for now again
        if event.kind is EventKind.REMOVED or event.result.id in self._not_ours:
            return
        row = event.result
        for ref in self._targets(row):
            status = self._publish(ref, row, event.kind, urgent=event.kind is not EventKind.PROGRESS)
            if event.kind is EventKind.RESUMED:
                self._resumed.append(ref)
                if self._resumed_each >= RESUMED_EVENTS_EACH:
                    continue  # told by its status and the Pod's summary Event (`RESUMED_EVENTS_EACH`)
                self._resumed_each += 1
            if event.kind in _EVENT_REASONS:
                reason, warning = _EVENT_REASONS[event.kind]
                self.events.record(ref, reason, self._event_message(event.kind, row, status), warning=warning)

    def _event_message(self, kind: EventKind, row: TaskResult, status: dict[str, Any]) -> str:
        if kind is EventKind.ACCEPTED:
            return f"run {row.run} accepted by the agent of pod {self.identity.name} (session {self.identity.session})"
        if kind is EventKind.STARTED:
            return f"run {row.run} started"
        if kind is EventKind.RESUMED:
            return f"run {row.run} resumed after an agent restart (resume {row.resumes})"
        if kind is EventKind.FAILED:
            return f"{row.reason}: {row.error}"
        return str(status.get("message", ""))

    def _rendering(self, ref: ResourceRef) -> Rendering:
        return Rendering(self.identity.agent, ref.generation, utcnow(), self._conditions.get(ref.uid, ()))

    def _publish(self, ref: ResourceRef, row: TaskResult, kind: EventKind | None, *, urgent: bool) -> dict[str, Any]:
        status = render_status(row, kind, self._rendering(ref))
        self._conditions[ref.uid] = status["conditions"]
        self.writer.update(ref, status, urgent=urgent)
        return status

    # ----------------------------------------------------------------------------------------- reconcile

    async def reconcile(self, body: Mapping[str, Any], *, deleted: bool = False, watched: bool = False) -> None:
        """Bring one NodeTask and the store in line (see the module's table). Idempotent; safe on stale bodies.

        `watched`: the body is a watch event, skipped when it is the echo of the agent's own status patch
        (`_is_own_echo`); lists, at start-up and every resync, reconcile every object whatever its resourceVersion."""
        if not self.owns(body):
            return
        uid = str(_meta(body).get("uid", ""))
        async with self._locks[uid]:
            if watched and not deleted and self._is_own_echo(body):
                self.metrics.watch_events_skipped.inc()
                return
            try:
                await self._reconcile(body, deleted=deleted or bool(_meta(body).get("deletionTimestamp")))
            except EngineClosed:
                pass  # shutting down: the next start reconciles again
            except StoreError as error:  # the store logged it; its recovery triggers a resync that retries this
                log.debug("NodeTask %s not reconciled: %s", _meta(body).get("name"), error)
        if deleted:
            self._locks.pop(uid, None)

    async def _reconcile(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        meta = _meta(body)
        ref = self._ref_of(body)
        if not deleted:  # the first status patch needs no GET (see the StatusWriter)
            self.writer.observe(ref, meta.get("resourceVersion"))
        observed = body.get("status") if isinstance(body.get("status"), Mapping) else None
        observed_status = dict(observed) if observed else {}
        if ref.uid not in self._conditions and observed_status.get("conditions"):
            self._conditions[ref.uid] = list(observed_status["conditions"])  # keep lastTransitionTime over restarts

        try:
            spec = NodeTaskSpec.model_validate(dict(_spec(body)))
        except ValidationError as error:
            if deleted:
                self._forget(None, ref)
            else:
                problem = TaskError(format_validation_error(error, prefix="spec"), reason=Reason.PARAMS_INVALID)
                self._reject(ref, problem, None, observed_status)
            return
        try:
            task_id = normalize_task_id(spec.task_id or ref.uid)
        except TaskRejected as error:
            if deleted:
                self._forget(None, ref)
            else:
                self._reject(ref, error, None, observed_status)
            return

        row = await self.engine.get(task_id)
        conflict = None
        if row is not None and not (row.source is not None and row.source.uid == ref.uid):
            conflict = task_id_conflict(row, self._task(ref, spec, task_id))  # another resource reusing the ID
        decision = decide(
            Situation(
                task_id=task_id,
                status=observed_status,
                row=row,
                conflict=conflict is not None,
                deleted=deleted,
                cancel=spec.cancel,
                retry_nonce=spec.retry_nonce,
                authors=self.authors.known,
            )
        )
        await self._carry_out(decision, ref, spec, task_id, row, conflict, observed_status)

    async def _carry_out(
        self,
        decision: Decision,
        ref: ResourceRef,
        spec: NodeTaskSpec,
        task_id: str,
        row: TaskResult | None,
        conflict: TaskError | None,
        observed: dict[str, Any],
    ) -> None:
        """Do what `decide` said (agent.operator.decide)."""
        action = decision.action
        if action is not Action.SUBMIT:
            self._refused.discard(task_id)
        if action is Action.REFUSE and conflict is not None:
            # Another resource's task owns this ID: this one is refused, and neither its status nor its deletion
            # may touch the stored task.
            self._reject(ref, conflict, task_id, observed)
            return
        if action is Action.FORGET and conflict is not None:
            self._forget(None, ref)
            return
        if action in (Action.REMOVE, Action.FORGET):
            self._cancel_expiry(ref.uid)
            await self._deleted(task_id, ref)
            return
        if decision.overwrite:
            log.warning(
                "NodeTask %s/%s has a terminal status (%s, agent %s) that this agent did not write; %s",
                ref.namespace,
                ref.name,
                observed.get("phase"),
                author_of(observed),
                "running the task" if action is Action.SUBMIT else "writing over it from the store",
            )
        if decision.expire:
            self._schedule_expiry(ref, spec, observed, row)
        self._remember(task_id, ref)
        if action is Action.CANCELLED_BEFORE_START:
            desired = render_cancelled_before_start(task_id, self._rendering(ref))
            if self._write_if_changed(ref, desired, observed, force=decision.overwrite):
                self.events.record(ref, "Cancelled", "cancelled before it started")
        elif action is Action.CANCEL:
            await self.engine.cancel(task_id)  # the engine's CANCELLED event writes the status
        elif action is Action.SUBMIT:
            await self._submit(ref, spec, task_id, observed)
        elif action is Action.ENSURE and row is not None:
            self._ensure(ref, row, observed, force=decision.overwrite)
        # KEEP_OUTCOME: finished earlier and no longer in the store (pruned or lost): never run it again

    def _is_own_echo(self, body: Mapping[str, Any]) -> bool:
        """Whether this watched body is the echo of the agent's own last status patch while no newer status is queued
        (`StatusWriter.is_own_echo`): the object exactly as that patch left it, so a reconcile would find nothing to
        do. Each status patch comes back as one such event; a restart with 1,000 resumed tasks brings 1,000. A
        terminal status is reconciled anyway: it times `ttlSecondsAfterFinished`, and a failed TTL deletion is timed
        again by the next reconcile. (A version merely reconciled before is not skipped: kopf's re-list after a cut
        watch is what puts right a status the writer had to drop, before the next resync.)"""
        status = body.get("status")
        if not isinstance(status, Mapping) or is_terminal(status):
            return False
        return self.writer.is_own_echo(self._ref_of(body), _meta(body).get("resourceVersion"))

    @staticmethod
    def _task(ref: ResourceRef, spec: NodeTaskSpec, task_id: str) -> Task:
        return Task(
            id=task_id,
            type=spec.type,
            params=dict(spec.params),
            timeout_seconds=spec.timeout_seconds,
            retry=spec.retry or RetryPolicy(),
            retry_nonce=spec.retry_nonce,
            source=ref,
        )

    async def _submit(self, ref: ResourceRef, spec: NodeTaskSpec, task_id: str, observed: dict[str, Any]) -> None:
        task = self._task(ref, spec, task_id)
        try:
            await self.engine.submit(task)
        except TaskRejected as error:
            if error.reason in RETRYABLE_REFUSALS:
                self._refuse_for_now(ref, error, task_id, observed)
            else:
                self._reject(ref, error, task_id, observed)
            return
        self._refused.discard(task_id)

    def _refuse_for_now(self, ref: ResourceRef, error: TaskError, task_id: str, observed: dict[str, Any]) -> None:
        """A submission refused for now (`TooManyTasks`): Pending with the reason and the cap, submitted again by a
        later reconcile (agent.operator.decide, refused-retryable), at the latest the resync after a task finishes."""
        self._refused.add(task_id)
        desired = render_refused_for_now(error, task_id, self._rendering(ref))
        if self._write_if_changed(ref, desired, observed):
            self.metrics.rejections.labels(error.reason).inc()
            self.events.record(
                ref, error.reason, f"{error.message}; submitted again when a task finishes", warning=True
            )

    # ------------------------------------------------------------------------- ttlSecondsAfterFinished

    def _schedule_expiry(
        self, ref: ResourceRef, spec: NodeTaskSpec, observed: dict[str, Any], row: TaskResult | None
    ) -> None:
        """Time the deletion of a finished NodeTask that asks for it (see the module docstring); called only for a
        terminal status this agent wrote (`Decision.expire`). Counted from the store's completion time when there is
        a row, else from the status's `completedAt`."""
        ttl = spec.ttl_seconds_after_finished
        if ttl is None or not is_terminal(observed) or ref.uid in self._expiries:
            return
        if row is not None and row.completed_at is not None:
            finished_at = row.completed_at
        else:
            try:
                finished_at = parse_timestamp(str(observed.get("completedAt") or ""))
            except ValueError:
                finished_at = utcnow()  # no (readable) completion time: count from now, never delete early
        delay = max(0.0, (finished_at - utcnow()).total_seconds() + ttl)
        expiry = asyncio.create_task(self._expire(ref, delay), name=f"ttl-{ref.name}")
        self._expiries[ref.uid] = expiry

        def _done(_: asyncio.Task[None]) -> None:
            if self._expiries.get(ref.uid) is expiry:
                del self._expiries[ref.uid]

        expiry.add_done_callback(_done)

    def _cancel_expiry(self, uid: str) -> None:
        expiry = self._expiries.pop(uid, None)
        if expiry is not None and expiry is not asyncio.current_task():
            expiry.cancel()

    async def _expire(self, ref: ResourceRef, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            deleted = await self.api.delete_nodetask(ref.namespace, ref.name, ref.uid)
        except ApiError as error:
            # Not fatal: the next reconcile (watch event or resync) times it again.
            log.warning(
                "deleting finished NodeTask %s/%s (ttlSecondsAfterFinished) failed: %s", ref.namespace, ref.name, error
            )
            return
        if deleted:
            log.info("deleted finished NodeTask %s/%s: its ttlSecondsAfterFinished passed", ref.namespace, ref.name)

    def cancel_expiries(self) -> None:
        """Stop every pending TTL deletion (shutdown); the next start times them again from completedAt."""
        for uid in list(self._expiries):
            self._cancel_expiry(uid)

    async def _deleted(self, task_id: str, ref: ResourceRef) -> None:
        self._forget(task_id, ref)
        if self._refs.get(task_id):
            return  # another NodeTask still asks for the same task ID
        if self.engine.is_running(task_id):
            await self.engine.remove(task_id)
            self.events.record(ref, "Cancelled", "NodeTask deleted while running: handler stopped, task forgotten")

    def _reject(self, ref: ResourceRef, error: TaskError, task_id: str | None, observed: dict[str, Any]) -> None:
        desired = render_rejection(error, task_id, self._rendering(ref))
        if self._write_if_changed(ref, desired, observed):
            self.metrics.rejections.labels(error.reason).inc()
            self.events.record(ref, "Failed", f"{error.reason}: {error.message}", warning=True)

    def _ensure(self, ref: ResourceRef, row: TaskResult, observed: dict[str, Any], *, force: bool = False) -> None:
        """Re-patch the status from the store when the resource tells a different story."""
        desired = render_status(row, None, self._rendering(ref))
        self._write_if_changed(ref, desired, observed, force=force)

    def _write_if_changed(
        self, ref: ResourceRef, desired: dict[str, Any], observed: dict[str, Any], *, force: bool = False
    ) -> bool:
        """Queue `desired` unless the resource already tells that story, or a write of it is queued, or (not
        `force`d) this process wrote it moments ago and `observed` is taken for a late, stale body
        (`STALE_BODY_WINDOW`). `force`: `observed` is a terminal status this agent did not write, never stale."""
        wanted = essentials(desired)
        if not force and (
            essentials(observed) == wanted and observed.get("observedGeneration") == desired["observedGeneration"]
        ):
            return False
        pending = self.writer.pending(ref)
        if pending is not None and essentials(pending) == wanted:
            return False
        if force:
            self._conditions[ref.uid] = desired["conditions"]
            self.writer.update(ref, desired, urgent=True)
            return True
        written, written_at = self.writer.last_written(ref)
        recently = time.monotonic() - written_at < STALE_BODY_WINDOW
        if (
            recently
            and written is not None
            and essentials(written) == wanted
            and written.get("observedGeneration") == desired["observedGeneration"]
        ):
            return False
        self._conditions[ref.uid] = desired["conditions"]
        self.writer.update(ref, desired, urgent=True)
        return True

    # ------------------------------------------------------------------------------- start-up and resync

    async def list_own(self) -> list[dict[str, Any]]:
        """This pod's NodeTasks (server-side field selector when available, else filtered here)."""
        return [item for item in await self.list_addressed() if self.owns(item)]

    async def list_addressed(self) -> list[dict[str, Any]]:
        """NodeTasks naming this pod in `spec.targetPod`, whatever their `targetPodUID` pin."""
        items = await self.api.list_nodetasks(self.identity.namespace, field_selector=self.field_selector)
        return [item for item in items if _spec(item).get("targetPod") == self.identity.name]

    async def choose_selector(self, mode: str) -> str | None:
        """Use the server-side field selector on `spec.targetPod` unless the server cannot (no `selectableFields`,
        Kubernetes < 1.31): then watch the namespace and filter here. `mode`: auto | field | none."""
        if mode == "none":
            self.field_selector = None
        elif mode == "auto":
            try:
                await self.api.list_nodetasks(self.identity.namespace, field_selector=self.identity.field_selector)
            except ApiError as error:
                if error.status == 400:
                    log.warning(
                        "server refuses fieldSelector %s (%s); filtering NodeTasks client-side",
                        self.identity.field_selector,
                        error,
                    )
                    self.field_selector = None
                elif not error.retryable:
                    raise
        return self.field_selector

    async def start(self, stop: asyncio.Event) -> bool:
        """Start-up reconciliation, in docs/design.md's order (section 6): (store opened and migrated by the caller)
        holds and resumptions from the store (`engine.recover`), then this pod's NodeTasks listed and each reconciled
        three-way, then running rows whose NodeTask is gone removed. Returns False if stopped before listing worked.

        `recover` needs no API: a hold runs, and readiness is restored, even while the API server is unreachable.
        The statuses of resumed tasks wait for the list (`StatusWriter.hold_unobserved`), which gives the writer each
        object's resourceVersion, instead of costing a GET each; if the list fails they are written with a GET each.
        One summary Event on the agent's Pod tells how many tasks this start resumed (`RESUMED_EVENTS_EACH`).
        """
        await self._record_session()
        self.writer.hold_unobserved()
        self.engine.hold_resumed()
        try:
            return await self._start(stop)
        finally:
            self.writer.release_unobserved()
            if not self._resumed_release_timed:
                self.engine.release_resumed()

    async def _record_session(self) -> None:
        """Add this process to the agent's authors before it writes any status (`agent.operator.authors`)."""
        if not self.authors.existed:
            try:
                self.authors.adopting = bool(await self.engine.store.list(limit=1))  # an upgrade: the store has history
            except StoreError:
                self.authors.adopting = False
        self.authors.save()

    def _release_resumed_after_report(self) -> None:
        """Let resumed handlers start once the statuses written so far are out (`RESUME_REPORT_WAIT` at most)."""
        if self._resumed_release_timed:
            return
        self._resumed_release_timed = True

        async def release() -> None:
            started = time.monotonic()
            try:
                written = await self.writer.flush(within=RESUME_REPORT_WAIT)
            finally:
                self.engine.release_resumed()
            log.info(
                "start-up statuses %s after %.1fs; resumed handlers start now",
                "written" if written else "still being written",
                time.monotonic() - started,
            )

        self._resumed_release = asyncio.create_task(release(), name="release-resumed")

    async def _start(self, stop: asyncio.Event) -> bool:
        # The first list is under way while the store is recovered (neither waits for the other).
        listed_at = utcnow()
        listing = asyncio.create_task(self.list_addressed(), name="first-list")
        try:
            return await self._recover_and_list(stop, (listed_at, listing))
        finally:
            listing.cancel()
            if listing.done() and not listing.cancelled():
                listing.exception()  # retrieved (a stop came first), so asyncio does not log it as lost

    async def _recover_and_list(
        self, stop: asyncio.Event, first_list: tuple[datetime, asyncio.Task[list[dict[str, Any]]]] | None
    ) -> bool:
        resumed: list[str] | None = None
        while resumed is None and not stop.is_set():
            try:
                resumed = await self.engine.recover(defer=self._defer if self.new_incarnation else None)
            except StoreError:  # logged by the store; probes keep answering meanwhile
                await self.engine.store.pause(5.0)
        if resumed:
            log.info("resumed or finished %d task(s) left by the previous process: %s", len(resumed), resumed)
        failures = 0
        while not stop.is_set():
            try:
                if first_list is not None:
                    (listed_at, listing), first_list = first_list, None
                    listed = await self.resync((listed_at, await listing))
                else:
                    listed = await self.resync()
                await self._settle_deferred(listed)
                await asyncio.sleep(0)  # resumed runs emit RESUMED in their first step, queued before this one
                log.info("start-up list reconciled: %d NodeTask(s) of this pod", len(listed))
                self._summarize_resumes()
                self._release_resumed_after_report()
                return True
            except (ApiError, StoreError) as error:
                # The list may take long: write resumed statuses with a GET each, and let their handlers work.
                self.writer.release_unobserved()
                self.engine.release_resumed()
                failures += 1
                delay = backoff_delay(failures, initial=1.0, cap=30.0)
                log.warning("cannot list NodeTasks yet (%s); retrying in %.1fs", error, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        return False

    def _summarize_resumes(self) -> None:
        """One Normal Event `Resumed` on the agent's Pod: how many tasks this start resumed, and which."""
        resumed, self._resumed = self._resumed, []
        if not resumed:
            return
        names = sorted({ref.name for ref in resumed})
        shown = ", ".join(names[:RESUMED_NAMES_SHOWN]) + (
            f" and {len(names) - RESUMED_NAMES_SHOWN} more" if len(names) > RESUMED_NAMES_SHOWN else ""
        )
        each = "each has" if len(names) <= RESUMED_EVENTS_EACH else f"the first {RESUMED_EVENTS_EACH} have"
        message = (
            f"agent session {self.identity.session} resumed {len(names)} NodeTask(s) left running by the previous "
            f"agent process: {shown} (status.resumes counts it on each; {each} a Resumed Event of its own)"
        )
        pod = ResourceRef(namespace=self.identity.namespace, name=self.identity.name, uid=self.identity.uid)
        self.events.record(pod, "Resumed", message, kind="Pod", api_version="v1")

    def _defer(self, row: TaskResult) -> bool:
        """`recover`'s filter on a new pod incarnation: rows of this namespace's NodeTasks wait for the first list."""
        source = row.source
        return source is not None and source.namespace == self.identity.namespace and bool(source.uid)

    async def _settle_deferred(self, listed: list[dict[str, Any]]) -> None:
        """After the first list: resume, fail `PodReplaced` or remove each row `recover` deferred (module docstring)."""
        by_task: dict[str, Mapping[str, Any]] = {}
        for body in listed:
            task_id = self._task_id_of(body)
            if task_id:
                by_task[task_id] = body
        for row in self.engine.deferred():
            found = by_task.get(row.id)
            if found is None:
                log.info("NodeTask of task %s left running by the previous pod no longer exists: forgetting it", row.id)
                await self.engine.remove(row.id)
            elif self.owns(found):
                await self.engine.resume_deferred(row.id)
            else:
                pinned = _spec(found).get("targetPodUID")
                self._not_ours.add(row.id)
                failed = await self.engine.fail_deferred(
                    row.id,
                    TaskError(
                        f"pinned to pod UID {pinned}, an earlier incarnation of pod {self.identity.name}; this pod "
                        f"(UID {self.identity.uid}) does not resume it",
                        reason=Reason.POD_REPLACED,
                        hint="create a new NodeTask for the current pod (or without targetPodUID) if the work is "
                        "still wanted",
                    ),
                )
                if failed is not None and failed.source is not None:
                    log.warning("task %s: %s", row.id, failed.error)
                    self.events.record(failed.source, "PodReplaced", failed.error, warning=True)

    async def resync(self, listed: tuple[datetime, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
        """List this pod's NodeTasks (or take `listed`: when the list was started, and its items), reconcile each,
        and remove running tasks whose NodeTask no longer exists.

        Returns every NodeTask addressed to this pod by name (whatever its UID pin)."""
        if listed is None:
            listed_at: datetime = utcnow()
            addressed = await self.list_addressed()
        else:
            listed_at, addressed = listed
        items = [item for item in addressed if self.owns(item)]
        if self.authors.adopting:
            self.authors.adopt(self._authors_named(items))
        for body in items:  # every resourceVersion first: statuses held at start-up go out while the rest reconcile
            if not _meta(body).get("deletionTimestamp"):
                self.writer.observe(self._ref_of(body), _meta(body).get("resourceVersion"))
        self.writer.release_unobserved()
        listed_ids: set[str] = set()
        for body in items:
            await self.reconcile(body)
            task_id = self._task_id_of(body)
            if task_id:
                listed_ids.add(task_id)
        for task_id in self.engine.running():
            row = await self.engine.get(task_id)
            if row is None or row.terminal or task_id in listed_ids:
                continue
            source = row.source
            if source is None or source.namespace != self.identity.namespace or row.submitted_at >= listed_at:
                continue  # not from a NodeTask of ours, or submitted after the list was taken
            log.info(
                "NodeTask %s/%s of running task %s no longer exists: stopping it",
                source.namespace,
                source.name,
                task_id,
            )
            self._forget(task_id, source)
            await self.engine.remove(task_id)
            self.events.record(source, "Cancelled", "NodeTask no longer exists: handler stopped, task forgotten")
        return addressed

    def _authors_named(self, items: list[dict[str, Any]]) -> list[Author]:
        """The agent processes of this pod named by the terminal statuses of `items` (`AuthorLedger.adopt`)."""
        named = []
        for body in items:
            status = body.get("status")
            author = author_of(status) if isinstance(status, Mapping) and is_terminal(status) else None
            if author is not None and author[0] == self.identity.name and all(author):
                named.append(author)
        return named

    def _task_id_of(self, body: Mapping[str, Any]) -> str | None:
        raw = _spec(body).get("taskId") or _meta(body).get("uid")
        try:
            return normalize_task_id(str(raw)) if raw else None
        except TaskRejected:
            return None

    async def _resync_once(self) -> None:
        try:
            await self.resync()
        except (ApiError, StoreError) as error:  # expected outages: one line, no traceback
            log.warning("periodic NodeTask resync failed (%s); next try in %.0fs", error, self.resync_interval)

    async def resync_forever(self) -> None:
        """Resync every `resync_interval`, and at once when the store recovers; never dies (`every`)."""
        await every("periodic NodeTask resync", self.resync_interval, self._resync_once, wake=self.resync_now)

    def _heartbeat_once(self) -> None:
        # From memory (no store read): a run waiting for a failed store keeps its heartbeat, with a message saying why.
        for row in self.engine.running_rows():
            if row.terminal:
                continue
            for ref in self._targets(row):
                self._publish(ref, row, None, urgent=False)

    async def heartbeat_forever(self) -> None:
        """Renew `status.heartbeatAt` of every running task (throttled like progress, so it costs little)."""

        async def beat() -> None:
            self._heartbeat_once()

        await every("heartbeat", self.heartbeat_interval, beat)

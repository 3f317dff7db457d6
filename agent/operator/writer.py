"""The single status writer and the Event recorder: everything the agent writes to the API goes through here.

Both take work through non-blocking methods (`StatusWriter.update`, `EventRecorder.record`) that only touch memory,
so the engine's listener never waits on the network; background workers do the I/O.

Status writer rules:
- One entry per NodeTask object (namespace, name, uid). A newer status for an object replaces the pending one
  (top-level keys merged, newest wins), so a burst of progress reports becomes one patch.
- Transitions (`urgent=True`) are written at once (after `SETTLE_TURNS` event-loop turns, so transitions that
  follow each other immediately go out as one patch); progress and heartbeats at most once per `progress_interval`
  per object.
- A status never goes backwards: a non-terminal status of run N is dropped once a terminal status of run N is
  pending or written (a late heartbeat must not reopen a finished task).
- Failures are retried with capped exponential backoff (0.5 s doubling to 10 s, with jitter) for as long as it takes
  when the API may answer differently later (no answer, timeouts, 403, 409, 429, 5xx). A 404 means the object is gone:
  its pending status is dropped. Other errors (e.g. 422, a status the schema refuses) are logged and dropped: the
  store still holds the truth and the next transition or resync writes again.
- At most `concurrency` patches are in flight, and at most one per object (so patches of one object stay ordered).

A pending status addressed to a deleted object is dropped by `forget` (the agent calls it on deletion). A status is
never written onto another object of the same name (deleted and re-created): every patch carries a resourceVersion
precondition that belongs to the entry's UID. It comes from the object as the agent received it from its watch or
list (`observe`: the body's `metadata.uid` and `metadata.resourceVersion` are one object's, so the first patch needs no
GET), from the previous patch's answer, or from a GET that checked the UID (an object nobody observed, and always
after a conflict). A 409 means the object changed: the writer reads it again, drops the status if the UID is another,
else patches again at once. (A `metadata.uid` in the patch is ignored by the server on a custom resource's status
subresource, so the UID is compared here.) An observed resourceVersion never replaces one the writer holds (a watch
may deliver an older body after the writer's own patch); a stale one costs a 409 and a GET, never a wrong write.

After a restart (`hold_unobserved`, until the agent's first list): statuses of objects the writer knows no
resourceVersion of wait for the list to observe them instead of each costing a GET (1,000 resumed tasks: 1,000 GETs
fewer); `release_unobserved` lets them go, with a GET each for any object the list did not bring.

Events (`EventRecorder`) come second: each waits until the status transitions are written (`settled`), at most a
second. A restart posts one `Resumed` Event per resumed task only for the first ten, then one summary on the agent's
Pod (`agent.operator.agent.RESUMED_EVENTS_EACH`): 1,000 Event POSTs would compete with the 1,000 statuses that already
say each task resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.models import ResourceRef
from agent.models.redaction import redact_text
from agent.models.resource import API_GROUP, API_VERSION, KIND
from agent.runtime.metrics import AgentMetrics

from .kubeapi import ApiError, KubeApi
from .status import TERMINAL_PHASES

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str, str]  # namespace, name, uid

SETTLE_TURNS = 4
"""Event-loop turns the writer lets pass after being woken before it writes. A task that finishes at once (Accepted,
Started and Succeeded a few turns apart) then costs one patch instead of one per phase, for microseconds of delay:
less than a millisecond-scale timer would cost the Create -> Running latency."""

SETTLE_STORE_WRITES = 0.02
"""After those turns, the writer also waits (at most this many seconds, with `settle`: the engine store's
`writes_settled`) for store writes in flight: the outcome of a task that finished at once is being stored on the
store's thread while the writer would send Running, and would be a second patch right after. A task that keeps
running leaves no write in flight, so its Running costs no wait. (Until the first patch of an object also needed a
GET, that round trip did this waiting, by accident.)"""

STATUS_BACKOFF_CAP = 10.0
"""A status patch is small and the latest status matters: after an outage, retry at least every 10 s."""

_TERMINAL = frozenset(phase.value for phase in TERMINAL_PHASES)


def backoff_delay(failures: int, *, initial: float = 0.5, cap: float = 30.0) -> float:
    """Delay before retry number `failures` (1-based): exponential, capped, with +-20% jitter."""
    base = min(cap, initial * float(2 ** max(0, failures - 1)))
    return base * random.uniform(0.8, 1.2)  # jitter, not cryptography


async def _done_within(waiting: Coroutine[Any, Any, Any], seconds: float | None) -> bool:
    try:
        await asyncio.wait_for(waiting, seconds)
    except TimeoutError:
        return False
    return True


def _ends_run(status: dict[str, Any] | None) -> tuple[int, bool]:
    status = status or {}
    return int(status.get("run") or 0), status.get("phase") in _TERMINAL


@dataclass
class _Entry:
    key: ObjectKey
    pending: dict[str, Any] | None = None
    urgent: bool = False
    written: dict[str, Any] | None = None
    written_at: float = float("-inf")
    in_flight: bool = False
    sending: dict[str, Any] | None = None
    """The status of the patch in flight."""
    resource_version: str | None = None
    """Of the object this entry's UID names, as last seen (watch, list, GET or patch answer): the next patch's
    precondition."""
    answered_version: str | None = None
    """The resourceVersion the server answered to this entry's last patch, if that patch succeeded (`is_own_echo`)."""
    must_read: bool = False
    """After a conflict: the next write GETs the object (and compares its UID) whatever was observed meanwhile."""
    failures: int = 0
    not_before: float = 0.0

    def due(self, progress_interval: float) -> float:
        throttle = 0.0 if self.urgent else self.written_at + progress_interval
        return max(self.not_before, throttle)


class StatusWriter:
    """Writes NodeTask statuses (merge patches on /status) with coalescing, throttling and retries."""

    def __init__(
        self,
        api: KubeApi,
        metrics: AgentMetrics,
        *,
        progress_interval: float = 5.0,
        concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        settle: Callable[[float], Coroutine[Any, Any, bool]] | None = None,
    ) -> None:
        """`settle(seconds)`: waits until the engine's store has no write in flight (see `SETTLE_STORE_WRITES`)."""
        self.api = api
        self.settle = settle
        self.metrics = metrics
        self.progress_interval = progress_interval
        self.concurrency = concurrency
        self.clock = clock
        self._entries: dict[ObjectKey, _Entry] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._holding_unobserved = False
        self._busy: dict[ObjectKey, None] = {}  # keys with a pending or in-flight status, oldest first
        self._pressing: set[ObjectKey] = set()  # keys with an urgent status pending, or a patch in flight
        self._settled = asyncio.Event()
        self._settled.set()

    # -------------------------------------------------------------- producers

    def observe(self, ref: ResourceRef, resource_version: str | None) -> None:
        """What the agent received of the object `ref` names (watch event or list item, whose `metadata.uid` is
        `ref.uid`): its `metadata.resourceVersion` becomes the next patch's precondition unless the writer already
        holds one (never blocks, never raises)."""
        if not ref.uid or not resource_version:
            return
        key = (ref.namespace, ref.name, ref.uid)
        entry = self._entries.get(key) or self._entries.setdefault(key, _Entry(key))
        if entry.resource_version is None and not entry.must_read:
            entry.resource_version = str(resource_version)
            if self._holding_unobserved and entry.pending is not None:
                self._wake.set()

    def hold_unobserved(self) -> None:
        """Until `release_unobserved`: statuses of objects without a known resourceVersion wait (for `observe`)
        instead of costing a GET each. The agent holds them from start-up until its first list."""
        self._holding_unobserved = True

    def release_unobserved(self) -> None:
        """Write the held statuses: with the resourceVersion observed meanwhile, else after a GET."""
        if self._holding_unobserved:
            self._holding_unobserved = False
            self._wake.set()

    def update(self, ref: ResourceRef, status: dict[str, Any], *, urgent: bool) -> None:
        """Queue `status` for `ref` (never blocks, never raises)."""
        key = (ref.namespace, ref.name, ref.uid)
        entry = self._entries.get(key) or self._entries.setdefault(key, _Entry(key))
        if self._regresses(entry, status):
            return
        entry.pending = {**entry.pending, **status} if entry.pending else dict(status)
        entry.urgent = entry.urgent or urgent
        self._changed(key)

    def forget(self, ref: ResourceRef) -> None:
        """Drop everything pending for a deleted object."""
        entry = self._entries.pop((ref.namespace, ref.name, ref.uid), None)
        if entry is not None:
            entry.pending = None
            self._changed(entry.key)

    def last_written(self, ref: ResourceRef) -> tuple[dict[str, Any] | None, float]:
        """The newest status the server accepted for `ref` in this process, and when (monotonic seconds)."""
        entry = self._entries.get((ref.namespace, ref.name, ref.uid))
        return (entry.written, entry.written_at) if entry else (None, float("-inf"))

    def is_own_echo(self, ref: ResourceRef, resource_version: str | None) -> bool:
        """Whether an object received at `resource_version` is exactly as this writer's last patch left it, with no
        newer status queued or on the wire: the watch's echo of that patch, which tells the agent nothing new."""
        entry = self._entries.get((ref.namespace, ref.name, ref.uid))
        return (
            entry is not None
            and bool(resource_version)
            and entry.answered_version == str(resource_version)
            and entry.pending is None
            and not entry.in_flight
        )

    def pending(self, ref: ResourceRef) -> dict[str, Any] | None:
        """What `ref`'s status will say once the queued and in-flight patches land (None when there are none)."""
        entry = self._entries.get((ref.namespace, ref.name, ref.uid))
        if entry is None or (entry.pending is None and entry.sending is None):
            return None
        return {**(entry.sending or {}), **(entry.pending or {})}

    @property
    def backlog(self) -> int:
        """Objects with a status pending or in flight."""
        return len(self._busy)

    @staticmethod
    def _regresses(entry: _Entry, status: dict[str, Any]) -> bool:
        run, terminal = _ends_run(status)
        if terminal or not run:
            return False
        for known in (entry.pending, entry.written):
            known_run, known_terminal = _ends_run(known)
            if known_run > run or (known_run == run and known_terminal):
                return True
        return False

    def _changed(self, key: ObjectKey) -> None:
        """Account for a change of the entry under `key` (O(1): a burst of 1,000 statuses must not cost 1,000^2)."""
        entry = self._entries.get(key)
        if entry is not None and (entry.pending is not None or entry.in_flight):
            self._busy.setdefault(key)
        else:
            self._busy.pop(key, None)
        if entry is not None and (entry.in_flight or (entry.pending is not None and entry.urgent)):
            self._pressing.add(key)
        else:
            self._pressing.discard(key)
        if self._pressing:
            self._settled.clear()
        else:
            self._settled.set()
        backlog = len(self._busy)
        self.metrics.status_backlog.set(backlog)
        if backlog:
            self._idle.clear()
        else:
            self._idle.set()
        self._wake.set()

    # ------------------------------------------------------------------ worker

    async def run(self) -> None:
        """Write forever (cancel to stop)."""
        try:
            while True:
                self._wake.clear()
                if len(self._in_flight) >= self.concurrency:
                    # Every slot taken: the next finished patch wakes the loop (`_changed`). Scanning the backlog
                    # at every wake made a burst of 1,000 statuses cost 1,000 x 1,000 entry checks.
                    await self._wake.wait()
                    continue
                for _ in range(SETTLE_TURNS):  # let transitions made in the same few loop turns merge (see above)
                    await asyncio.sleep(0)
                if self.settle is not None and self._first_transition_due():
                    await self.settle(SETTLE_STORE_WRITES)
                now = self.clock()
                next_due: float | None = None
                for entry in self._launchable():
                    if len(self._in_flight) >= self.concurrency:
                        next_due = None  # the slots filled up: a finished patch wakes the loop, then it looks again
                        break
                    due = entry.due(self.progress_interval)
                    if due > now:
                        next_due = due if next_due is None else min(next_due, due)
                    else:
                        self._launch(entry)
                timeout = None if next_due is None else max(0.0, next_due - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            for task in list(self._in_flight):
                task.cancel()

    def _launchable(self) -> Iterator[_Entry]:
        """Entries with a status to write and nothing in flight, oldest first (only the busy ones: observed objects
        are many). Lazy: the caller stops once every slot is taken."""
        for key in list(self._busy):
            entry = self._entries.get(key)
            if entry is None or entry.pending is None or entry.in_flight:
                continue
            if self._holding_unobserved and entry.key[2] and entry.resource_version is None:
                continue  # waits for the list to observe it (`hold_unobserved`)
            yield entry

    def _first_transition_due(self) -> bool:
        """Whether an object's first status is about to go out and is not final: the case where the task may be
        finishing this instant (`SETTLE_STORE_WRITES`). Later writes (progress, heartbeats, outcomes) never wait."""
        return any(
            entry.urgent and entry.written is None and not _ends_run(entry.pending)[1] for entry in self._launchable()
        )

    def _launch(self, entry: _Entry) -> None:
        entry.in_flight = True
        body, urgent = entry.pending, entry.urgent
        entry.sending = body
        entry.pending, entry.urgent = None, False
        assert body is not None
        task = asyncio.create_task(self._write(entry, body, urgent), name=f"status-{entry.key[1]}")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _write(self, entry: _Entry, body: dict[str, Any], urgent: bool) -> None:
        namespace, name, uid = entry.key
        try:
            if uid and (entry.resource_version is None or entry.must_read):
                current = await self.api.get_nodetask(namespace, name)
                metadata = current.get("metadata") or {}
                if metadata.get("uid") != uid:
                    raise ApiError(
                        404, f"NodeTask {namespace}/{name} is now another object (uid {metadata.get('uid')})"
                    )
                entry.resource_version = str(metadata.get("resourceVersion") or "") or None
                entry.must_read = False
            answer = await self.api.patch_status(namespace, name, body, resource_version=entry.resource_version)
            entry.resource_version = str((answer.get("metadata") or {}).get("resourceVersion") or "") or None
        except ApiError as error:
            if not (error.conflict and uid):  # a conflict is routine (someone else changed the object): no error
                self.metrics.status_patch_errors.labels(error.cause).inc()
            entry.answered_version = None  # whatever the object says now, it is not known to be this writer's
            if error.gone:
                log.info("NodeTask %s/%s (uid %s) is gone; dropping its status", namespace, name, uid)
                self._entries.pop(entry.key, None)
            elif error.conflict and uid:  # changed since last seen: read it again (its UID too), then patch at once
                entry.resource_version = None
                entry.must_read = True
                entry.pending = {**body, **entry.pending} if entry.pending else body
                entry.urgent = entry.urgent or urgent
            elif error.retryable:
                entry.failures += 1
                delay = backoff_delay(entry.failures, cap=STATUS_BACKOFF_CAP)
                log.warning(
                    "status patch of %s/%s failed (%s); retry %d in %.1fs",
                    namespace,
                    name,
                    error,
                    entry.failures,
                    delay,
                )
                entry.pending = {**body, **entry.pending} if entry.pending else body
                entry.urgent = entry.urgent or urgent
                entry.not_before = self.clock() + delay
            else:
                log.error(
                    "status patch of %s/%s refused, dropped (the store keeps the truth): %s", namespace, name, error
                )
        except Exception:
            entry.answered_version = None
            log.exception("status patch of %s/%s crashed", namespace, name)
            entry.pending = {**body, **entry.pending} if entry.pending else body
            entry.not_before = self.clock() + backoff_delay(entry.failures + 1)
        else:
            self.metrics.status_patches.inc()
            entry.answered_version = entry.resource_version
            entry.failures = 0
            entry.written = {**entry.written, **body} if entry.written else dict(body)
            entry.written_at = self.clock()
        finally:
            entry.in_flight = False
            entry.sending = None
            # Out of `_in_flight` before the wake-up (its done-callback would run a turn later): the loop, woken by
            # `_changed`, must see the slot free, or it waits for a wake-up that never comes.
            self._in_flight.discard(asyncio.current_task())
            self._changed(entry.key)

    async def flush(self, within: float | None = None) -> bool:
        """Wait until nothing is pending or in flight (True), or `within` seconds have passed (False)."""
        return await _done_within(self._idle.wait(), within)

    async def settled(self, within: float | None = None) -> bool:
        """Wait until no transition is waiting to be written and no patch is in flight (True; throttled progress may
        still be pending), or `within` seconds have passed (False)."""
        return await _done_within(self._settled.wait(), within)


# --------------------------------------------------------------------------------------------------- events


@dataclass
class _PendingEvent:
    namespace: str
    body: dict[str, Any]
    first_try: float
    failures: int = 0


@dataclass
class _Series:
    """Events of one (object, reason) pair in the current aggregation window."""

    started: float
    posted: int = 0
    held: int = 0
    last_post: float = float("-inf")


def _event_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class EventRecorder:
    """Posts core/v1 Events about NodeTasks (visible in `kubectl describe` and `kubectl events`).

    Best effort but patient: a failed post is retried with backoff for up to `give_up_after` seconds (an API outage
    shorter than that loses no Event); the queue holds at most `max_queued` Events, the oldest dropped first.

    Status first: with `status_first` (the `StatusWriter.settled` of the agent), an Event waits until the status
    transitions are written, at most `status_first_wait` seconds after it was recorded. The status is the record and
    Events are informational: the Accepted and Started Events of a new task would otherwise reach the API server
    before the status patch saying Running and slow it down (two POSTs ahead of it on a busy API server, and their
    encoding in the event-loop turns the writer lets pass). Under a steady stream of statuses the bound keeps Events
    flowing (each at most that late).

    Similar Events are aggregated, as client-go's event correlator does: of one (object, reason) pair, the first
    `aggregate_after` Events within `aggregate_window` seconds are posted as they come; after that, occurrences are
    only counted, and at most one Event per `combined_every` seconds is posted, with `count` = the occurrences it
    stands for and a message saying so (a `retry` policy with no backoff once made 196 Events in 20 s). The agent may
    only create Events (no patch rights), so it posts a new, counted Event instead of updating the old one.
    """

    api: KubeApi
    metrics: AgentMetrics
    pod: str
    """The agent's pod: every Event names it as `reportingInstance` and `related` (the admission policy refuses an
    agent's Event that names another pod)."""
    pod_uid: str = ""
    give_up_after: float = 600.0
    max_queued: int = 1000
    workers: int = 4
    aggregate_after: int = 10
    aggregate_window: float = 600.0
    combined_every: float = 60.0
    status_first: Callable[[float], Coroutine[Any, Any, bool]] | None = None
    status_first_wait: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _queue: asyncio.Queue[_PendingEvent] = field(default_factory=asyncio.Queue)
    _sequence: int = 0
    _tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _series: dict[tuple[str, str], _Series] = field(default_factory=dict)

    def record(
        self,
        ref: ResourceRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        kind: str = KIND,
        api_version: str = f"{API_GROUP}/{API_VERSION}",
    ) -> None:
        """Queue an Event about `ref`, a NodeTask unless `kind`/`api_version` say otherwise (the agent's Pod: `Pod`,
        `v1`); never blocks, never raises; repeats are aggregated (see the class)."""
        moment = self.clock()
        if len(self._series) > 10 * self.max_queued:  # bound the memory: forget pairs whose window has passed
            self._series = {k: v for k, v in self._series.items() if moment - v.started < self.aggregate_window}
        series = self._series.get((ref.uid, reason))
        if series is None or moment - series.started > self.aggregate_window:
            series = self._series[(ref.uid, reason)] = _Series(started=moment)
        if series.posted >= self.aggregate_after and moment - series.last_post < self.combined_every:
            series.held += 1
            return
        count = series.held + 1
        if series.posted >= self.aggregate_after:
            message = f"(combined from similar events, {count} since the last one): {message}"
        series.posted += 1
        series.held = 0
        series.last_post = moment
        now = datetime.now(UTC)
        self._sequence += 1
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # client-go's naming, <object>.<unique hex>: time, a per-agent random tag and a sequence number.
                "name": f"{ref.name[:200]}.{time.time_ns():x}{self._tag}{self._sequence:x}",
                "namespace": ref.namespace,
            },
            "involvedObject": {
                "apiVersion": api_version,
                "kind": kind,
                "name": ref.name,
                "namespace": ref.namespace,
                **({"uid": ref.uid} if ref.uid else {}),
            },
            "reason": reason,
            "message": redact_text(message)[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "nodetask-agent", "host": self.pod},
            "reportingComponent": "sei.io/nodetask-agent",
            "reportingInstance": self.pod,
            "related": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.pod,
                "namespace": ref.namespace,
                **({"uid": self.pod_uid} if self.pod_uid else {}),
            },
            "firstTimestamp": _event_time(now),
            "lastTimestamp": _event_time(now),
            "count": count,
        }
        if self._queue.qsize() >= self.max_queued:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self._queue.task_done()
            self.metrics.event_post_errors.labels("dropped").inc()
        self._queue.put_nowait(_PendingEvent(ref.namespace, body, self.clock()))

    async def run(self) -> None:
        """Post forever (cancel to stop)."""
        workers = [asyncio.create_task(self._work(), name=f"event-poster-{n}") for n in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if self.status_first is not None:
                    wait = item.first_try + self.status_first_wait - self.clock()
                    if wait > 0:
                        await self.status_first(wait)
                await self._post(item)
            finally:
                self._queue.task_done()

    async def _post(self, item: _PendingEvent) -> None:
        while True:
            try:
                await self.api.create_event(item.namespace, item.body)
                return
            except ApiError as error:
                self.metrics.event_post_errors.labels(error.cause).inc()
                item.failures += 1
                if not error.retryable or self.clock() - item.first_try > self.give_up_after:
                    log.warning(
                        "dropping Event %s on %s: %s", item.body["reason"], item.body["involvedObject"]["name"], error
                    )
                    return
                await asyncio.sleep(backoff_delay(item.failures))

    async def flush(self, within: float | None = None) -> bool:
        """Wait until every queued Event was posted or given up (True), or `within` seconds have passed (False)."""
        return await _done_within(self._queue.join(), within)

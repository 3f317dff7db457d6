"""Prometheus metrics, built from the engine's events (the engine itself never imports prometheus_client).

Each `AgentMetrics` owns its own `CollectorRegistry`, so several agents (or tests) in one process never collide on
the global registry. The operator's status writer reports its patch outcomes here too.

Besides the task metrics, the registry carries what every Prometheus client exports on its default registry and
dashboards expect: the process (`process_resident_memory_bytes`, `process_cpu_seconds_total`, open fds, start time),
the Python platform and the garbage collector (`python_gc_*`), and `nodetask_agent_build_info` (constant 1, labelled
with the agent's version and Python's) so that a rollout can be watched version by version.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agent import __version__
from agent.engine import EventKind, TaskEvent

__all__ = ["CONTENT_TYPE_LATEST", "AgentMetrics"]

# No `*_created` series beside every counter and histogram (prometheus_client's default doubles them; Prometheus
# does not need them in the text format). The switch is process-wide, so it is set where the metrics are defined.
disable_created_metrics()  # type: ignore[no-untyped-call]

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600)

_FINISHED = {
    EventKind.SUCCEEDED: "Succeeded",
    EventKind.FAILED: "Failed",
    EventKind.CANCELLED: "Cancelled",
}


class AgentMetrics:
    """The agent's metrics; `observe` is an engine listener (cheap, never blocks)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.build_info = Gauge(
            "nodetask_agent_build_info",
            "Always 1; the labels say which agent build runs (version) on which Python.",
            ["version", "python_version"],
            registry=self.registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.submissions = Counter(
            "nodetask_submissions",
            "Task runs accepted by the engine (new tasks and re-runs).",
            ["type"],
            registry=self.registry,
        )
        self.finished = Counter(
            "nodetask_finished", "Task runs that reached a terminal phase.", ["type", "phase"], registry=self.registry
        )
        self.failures = Counter(
            "nodetask_failures", "Task runs that failed, by stable reason.", ["type", "reason"], registry=self.registry
        )
        self.rejections = Counter(
            "nodetask_rejections",
            "Tasks refused before running (InvalidTaskID, UnsupportedType): nothing was stored.",
            ["reason"],
            registry=self.registry,
        )
        self.resumes = Counter(
            "nodetask_resumes", "Runs resumed after an agent restart.", ["type"], registry=self.registry
        )
        self.retries = Counter(
            "nodetask_retries", "Automatic retries started by a task's retry policy.", ["type"], registry=self.registry
        )
        self.duration = Histogram(
            "nodetask_duration_seconds",
            "Wall time of finished runs, from start to completion.",
            ["type", "phase"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.running = Gauge("nodetask_running_tasks", "Tasks executing now.", registry=self.registry)
        self.overdue = Gauge(
            "nodetask_overdue_tasks",
            "Running tasks past their spec.timeoutSeconds whose handler has not stopped (should always be 0).",
            registry=self.registry,
        )
        self.ready = Gauge("nodetask_ready", "1 when the readiness gate is open (mark-ready).", registry=self.registry)
        self.store_up = Gauge(
            "nodetask_store_up", "1 while the task store can be written, 0 while it fails.", registry=self.registry
        )
        self.status_patches = Counter(
            "nodetask_status_patches", "Successful status patches on NodeTask resources.", registry=self.registry
        )
        self.status_patch_errors = Counter(
            "nodetask_status_patch_errors",
            "Failed status patch attempts (each is retried), by cause: HTTP status code, timeout or connection.",
            ["cause"],
            registry=self.registry,
        )
        self.watch_events_skipped = Counter(
            "nodetask_watch_events_skipped",
            "Watch events that were the echo of the agent's own status patch (nothing new): not reconciled.",
            registry=self.registry,
        )
        self.event_post_errors = Counter(
            "nodetask_event_post_errors", "Failed Kubernetes Event posts, by cause.", ["cause"], registry=self.registry
        )
        self.status_backlog = Gauge(
            "nodetask_status_backlog",
            "Tasks whose newest status is not yet written to the API.",
            registry=self.registry,
        )

        self.authn_rejections = Counter(
            "nodetask_http_authn_rejections",
            "HTTP requests refused by SEI_SIDECAR_AUTHN_MODE=trusted-header, by reason.",
            ["reason"],
            registry=self.registry,
        )

    def bind(
        self,
        running: Callable[[], int],
        ready: Callable[[], bool],
        overdue: Callable[[], int] = lambda: 0,
        store_up: Callable[[], bool] = lambda: True,
    ) -> None:
        """Read the running and overdue counts, readiness and the store's health from the engine at scrape time."""
        self.store_up.set_function(lambda: 1.0 if store_up() else 0.0)
        self.running.set_function(running)
        self.overdue.set_function(overdue)
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)

    def observe(self, event: TaskEvent) -> None:
        """Engine listener: count the event (see `Engine.add_listener`)."""
        row = event.result
        if event.kind is EventKind.ACCEPTED:
            self.submissions.labels(row.type).inc()
        elif event.kind is EventKind.RESUMED:
            self.resumes.labels(row.type).inc()
        elif event.kind is EventKind.RETRYING:
            self.retries.labels(row.type).inc()
            self.failures.labels(row.type, row.reason or "TaskFailed").inc()
        elif event.kind in _FINISHED:
            phase = _FINISHED[event.kind]
            self.finished.labels(row.type, phase).inc()
            if event.kind is EventKind.FAILED:
                self.failures.labels(row.type, row.reason or "TaskFailed").inc()
            if row.started_at and row.completed_at:
                seconds = max(0.0, (row.completed_at - row.started_at).total_seconds())
                self.duration.labels(row.type, phase).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

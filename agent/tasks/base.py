"""What a task handler is, and what it gets to work with.

A handler is a short `async def handler(params: P, ctx: TaskContext) -> dict | None` over its pydantic params model
`P`. It returns a small JSON-able dict (stored as the task's `result`; never secrets) or None, raises `TaskError` for
a known failure, and honours cancellation (it is an asyncio task: awaiting is enough, blocking work goes through
`asyncio.to_thread`). Handlers must be idempotent: a crash or restart re-runs them from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from agent.models import Progress, TaskError, TaskType
from agent.models.params import TaskParams
from agent.models.settings import AgentSettings

P = TypeVar("P", bound=TaskParams)

HandlerFn = Callable[[P, "TaskContext"], Awaitable[dict[str, Any] | None]]
Precheck = Callable[[Any, AgentSettings], None]
"""A rule over a task's validated params and the agent's settings, checked before the task runs; raises
`ParamsInvalid` (see agent/tasks/prechecks.py)."""


@dataclass(frozen=True)
class HandlerSpec(Generic[P]):
    """A registered task type: its params model and its handler."""

    task_type: TaskType
    params_model: type[P]
    handler: HandlerFn[P]
    summary: str = ""
    precheck: Precheck | None = None
    """Checked with the validated params and the settings before the handler runs (`check_task`)."""


def handler(
    task_type: TaskType, params_model: type[P], summary: str = "", *, precheck: Precheck | None = None
) -> Callable[[HandlerFn[P]], HandlerSpec[P]]:
    """Decorator that turns an async function into a `HandlerSpec` (collected from a family module's `HANDLERS`).
    `precheck` is the task's rule over params and settings, checked before it runs (shared ones: `.prechecks`)."""

    def wrap(fn: HandlerFn[P]) -> HandlerSpec[P]:
        summary_line = summary or (fn.__doc__ or "").strip().split("\n")[0]
        return HandlerSpec(task_type, params_model, fn, summary_line, precheck=precheck)

    return wrap


class KubeReader(Protocol):
    """What tasks may read from the Kubernetes API, over the agent's own connection (the operator's credentials and
    client): one access path for the agent and its tasks. Failures raise `TaskError` (retryable when running again may
    help; a 403 says which RBAC rule is missing)."""

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Every pod in `namespace` matching `label_selector` (all pages)."""
        ...


@dataclass
class TaskContext:
    """Per-run context handed to a handler by the engine."""

    task_id: str
    task_type: TaskType
    run: int
    resumes: int
    settings: AgentSettings
    log: logging.LoggerAdapter[logging.Logger]
    report: Callable[[Progress], None] = field(default=lambda progress: None)
    kube: KubeReader | None = None
    """The agent's Kubernetes API access; None when the agent runs without a cluster (local mode)."""
    deadline_cause: TaskError | None = None
    """Why the task would fail if its deadline hit now (see `explain_deadline`); None: a plain DeadlineExceeded."""

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def resumed(self) -> bool:
        """True when this run restarts work a previous process left unfinished."""
        return self.resumes > 0

    def explain_deadline(self, cause: TaskError | None) -> None:
        """Say what the deadline would really mean if it hit now (None clears it).

        A handler that waits on something external (the node's RPC, a peer) calls this whenever the reason for the
        wait changes, e.g. "the node's RPC has refused 57 requests, the last one: connection refused". If the task's
        `timeoutSeconds` ends the run, the engine fails it with this error's reason, message and hint (prefixed by
        the timeout) instead of a bare `DeadlineExceeded` whose hint says to raise the timeout.
        """
        self.deadline_cause = cause

    def progress(
        self, current: float | None = None, total: float | None = None, unit: str = "", message: str = ""
    ) -> None:
        """Report progress; the engine throttles what it forwards, so call it as often as convenient."""
        self.report(Progress(current=current, total=total, unit=unit, message=message))


class HandlerRegistry:
    """Task type -> HandlerSpec, with exactly one handler per type."""

    def __init__(self, specs: Iterable[HandlerSpec[Any]] = ()):
        self._specs: dict[TaskType, HandlerSpec[Any]] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: HandlerSpec[Any]) -> None:
        if spec.task_type in self._specs:
            raise ValueError(f"two handlers registered for task type {spec.task_type}")
        self._specs[spec.task_type] = spec

    def get(self, task_type: str) -> HandlerSpec[Any] | None:
        known = TaskType.parse(task_type)
        return self._specs.get(known) if known else None

    def types(self) -> list[TaskType]:
        return sorted(self._specs)

    def __contains__(self, task_type: object) -> bool:
        return isinstance(task_type, str) and self.get(task_type) is not None

    def __len__(self) -> int:
        return len(self._specs)

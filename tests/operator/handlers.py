"""A test-only task handler for the operator tests (registered in test agents only, never in agent/tasks/).

`gate` runs under the real type name `await-condition` (the agent, not the handler, is under test). It records every
start in `<home>/gate.log`, reports progress, and finishes only when the test creates `<home>/release-<label>` (or
fails when `<home>/fail-<label>` exists): files, so that it can be driven the same way in an agent running in this
process or in a subprocess that a test kills with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from agent.models import TaskError, TaskType
from agent.models.params import TaskParams
from agent.tasks import HandlerRegistry, HandlerSpec, TaskContext, default_registry

GATE_TYPE = TaskType.AWAIT_CONDITION


class GateParams(TaskParams):
    label: str


async def gate(params: GateParams, ctx: TaskContext) -> dict[str, Any]:
    log = ctx.home / "gate.log"
    with log.open("a") as sink:
        sink.write(f"start {params.label} {ctx.task_id} run={ctx.run} resumes={ctx.resumes} pid={os.getpid()}\n")
    step = 0
    try:
        while not (ctx.home / f"release-{params.label}").exists():  # no-deadline: a task; cancel/timeout end it
            if (ctx.home / f"fail-{params.label}").exists():
                raise TaskError(f"gate {params.label} told to fail", reason="GateFailed", retryable=True)
            step += 1
            ctx.progress(step, 1000, "steps", f"waiting for {params.label}")
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        with log.open("a") as sink:
            sink.write(f"cancelled {params.label} {ctx.task_id}\n")
        raise
    with log.open("a") as sink:
        sink.write(f"done {params.label} {ctx.task_id}\n")
    return {"label": params.label, "steps": step}


def test_registry() -> HandlerRegistry:
    """Every shipped handler, with `await-condition` replaced by the gate."""
    shipped = default_registry()
    specs = [shipped.get(task_type) for task_type in shipped.types() if task_type != GATE_TYPE]
    return HandlerRegistry([spec for spec in specs if spec is not None] + [HandlerSpec(GATE_TYPE, GateParams, gate)])


def gate_starts(home: Path, label: str | None = None) -> list[str]:
    """The `start` lines of the gate log (optionally of one label): one per handler run."""
    log = home / "gate.log"
    if not log.exists():
        return []
    return [
        line
        for line in log.read_text().splitlines()
        if line.startswith("start ") and (label is None or line.split()[1] == label)
    ]

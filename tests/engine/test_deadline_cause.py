"""A handler that explains what its wait is stuck on (`TaskContext.explain_deadline`) fails with that reason when the
task's deadline hits, instead of a bare DeadlineExceeded whose hint says to raise the timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.engine import Engine
from agent.models import Reason, Task, TaskError, TaskStatus, TaskType
from agent.models.params import TaskParams
from agent.models.settings import AgentSettings
from agent.store import SqliteStore
from agent.tasks import HandlerRegistry, HandlerSpec, TaskContext

ID = "6ba7b812-9dad-11d1-80b4-00c04fd430c8"


class WaitParams(TaskParams):
    explain: bool = True
    clear: bool = False


async def wait_forever(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
    if params.explain:
        ctx.explain_deadline(TaskError("the peer never answered (3 tries)", reason="PeerUnreachable", hint="check it"))
    if params.clear:
        ctx.explain_deadline(None)
    await asyncio.Event().wait()
    return {}


@pytest.mark.parametrize(
    ("params", "reason", "message", "hint"),
    [
        ({}, "PeerUnreachable", "exceeded its timeout of 1s: the peer never answered (3 tries)", "check it"),
        ({"explain": False}, Reason.DEADLINE_EXCEEDED, "exceeded its timeout of 1s", "raise spec.timeoutSeconds"),
        ({"clear": True}, Reason.DEADLINE_EXCEEDED, "exceeded its timeout of 1s", "raise spec.timeoutSeconds"),
    ],
    ids=["explained", "unexplained", "explanation-cleared"],
)
async def test_the_deadline_failure_carries_the_handlers_explanation(
    tmp_path: Path, settings: AgentSettings, params: dict[str, Any], reason: str, message: str, hint: str
) -> None:
    store = SqliteStore(tmp_path / "agent.db")
    engine = Engine(HandlerRegistry([HandlerSpec(TaskType.AWAIT_CONDITION, WaitParams, wait_forever)]), store, settings)
    try:
        await engine.submit(Task(id=ID, type=TaskType.AWAIT_CONDITION, params=params, timeout_seconds=1))
        result = await engine.wait(ID, timeout=30)
    finally:
        await engine.shutdown(grace=1)
        store.close()

    assert result.status is TaskStatus.FAILED
    assert result.reason == reason
    assert message in result.error
    assert hint in result.hint

"""`mark-ready` and `mark-not-ready`: the readiness gate seid waits on.

The handlers do no work of their own: the engine flips its ready flag when one of them *succeeds* (only a successful
mark-ready sets ready, only a successful mark-not-ready clears it), and restores the flag from the store's history at
start-up. A hold (mark-not-ready) left unfinished by a crash runs before anything else on the next start, and an older
mark-ready left unfinished is failed as Superseded instead of releasing the hold.

Note for controllers: a mark-ready task that already succeeded is a no-op when submitted again (the ID is an
idempotency key); after a hold, release it with a *new* mark-ready task.
"""

from __future__ import annotations

from typing import Any

from agent.models import TaskType
from agent.models.params.base import TaskParams

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


class MarkReadyParams(TaskParams):
    """`mark-ready` takes no params."""


class MarkNotReadyParams(TaskParams):
    """`mark-not-ready` takes no params."""


@handler(TaskType.MARK_READY, MarkReadyParams)
async def mark_ready(params: MarkReadyParams, ctx: TaskContext) -> dict[str, Any]:
    """Open the readiness gate: /healthz turns 200 and seid's entrypoint may start."""
    return {"ready": True}


@handler(TaskType.MARK_NOT_READY, MarkNotReadyParams)
async def mark_not_ready(params: MarkNotReadyParams, ctx: TaskContext) -> dict[str, Any]:
    """Close the readiness gate (a hold): /healthz turns 503 so a restarted seid parks at the gate."""
    return {"ready": False}


HANDLERS = [mark_ready, mark_not_ready]

"""Rows as the HTTP server may serialize them (shared by the agent's task views and the seictl-compatible API)."""

from __future__ import annotations

from agent.models import TaskResult
from agent.models.limits import MAX_PARAMS_DEPTH, json_depth_exceeds


def servable(result: TaskResult) -> TaskResult:
    """`result` with params or a result nested too deep to serialize replaced by a marker. Such rows cannot be made
    any more (the engine stores a marker instead), but a store written by an older agent may hold one, and one row
    must never turn the whole list into a 500."""
    update = {}
    for name in ("params", "result"):
        value = getattr(result, name)
        if value is not None and json_depth_exceeds(value, MAX_PARAMS_DEPTH):
            update[name] = {"$omitted": f"{name}: nested more than {MAX_PARAMS_DEPTH} levels deep"}
    return result.model_copy(update=update) if update else result

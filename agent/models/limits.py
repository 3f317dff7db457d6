"""Bounds on what a task may carry, checked before anything recursive touches it.

A NodeTask's `params` is free-form JSON (the CRD keeps unknown fields), and the API server accepts objects nested
thousands of levels deep. Python's JSON encoder, pydantic and our own walkers recurse once per level, so such an
object could raise `RecursionError` wherever it is first handled. `json_bounds_problem` walks a value *iteratively*
and reports the first bound it breaks, so the engine can fail the task `ParamsInvalid` (naming the limit) before the
value is validated, stored or served.

- `MAX_PARAMS_DEPTH = 32`: the deepest real params (config-patch's TOML merge patches, assemble-genesis' node list)
  are under 8 levels; 32 leaves room for any config file's nesting.
- `MAX_PARAMS_BYTES = 64 KiB` of compact JSON: the largest real params (a ceremony of a hundred validators, a
  config-apply with a few files) are a few KiB; a NodeTask's status must also stay far below etcd's 1.5 MiB.
- `MAX_RESULT_BYTES = 64 KiB` of compact JSON for a handler's result: it is copied into the NodeTask's status and
  served by `/v0/tasks`; a larger result fails the task `ResultTooLarge` instead of a status patch etcd refuses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

MAX_PARAMS_DEPTH = 32
MAX_PARAMS_BYTES = 64 * 1024
MAX_RESULT_BYTES = 64 * 1024
RECURSION_LIMIT = 30_000
"""The interpreter's recursion limit in the agent process (Python's default is 1,000). The Kubernetes API server
accepts JSON nested up to 10,000 levels; kopf decodes every watch event with `json.loads`, which recurses once per
level, so with the default limit one deep NodeTask killed the watch (and the agent, at every restart). 30,000 lets
any object the API server serves be decoded (measured: 20,000 levels decode and encode within the default 8 MiB
main-thread stack), after which the engine refuses it by the bounds above."""


def allow_deep_json() -> None:
    """Raise the recursion limit to `RECURSION_LIMIT` (never lower it); called at the start of `run` and `local`."""
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether `value` nests containers (dicts, lists, tuples) more than `max_depth` levels deep. Iterative: safe on
    values of any depth; stops at the first container past the bound."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list | tuple))
    return False


def json_bounds_problem(
    value: Any, *, what: str = "params", max_depth: int = MAX_PARAMS_DEPTH, max_bytes: int = MAX_PARAMS_BYTES
) -> str | None:
    """A message naming the broken bound (depth or serialized size) of `value`, or None when it is within both."""
    if json_depth_exceeds(value, max_depth):
        return f"{what}: nested more than {max_depth} levels deep (the limit is {max_depth})"
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    except (TypeError, ValueError, RecursionError) as error:
        return f"{what}: not serializable as JSON ({type(error).__name__})"
    if size > max_bytes:
        return f"{what}: {size} bytes as JSON, more than the limit of {max_bytes} bytes"
    return None

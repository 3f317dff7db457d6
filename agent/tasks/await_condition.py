"""`await-condition`: wait until the local node reaches a height (or has caught up), then optionally stop seid.

- `condition: height` holds when `/status` reports `latest_block_height >= targetHeight`; `condition: catchingUp`
  holds when it reports `catching_up == false` at a height of at least 2 (and, with `targetHeight`, the height too).
- `/status` is polled every `pollIntervalSeconds` with a `requestTimeoutSeconds` timeout. RPC errors are expected
  (seid restarting, still opening its databases) and tolerated: the task keeps polling, counts them, and shows the
  last one in its progress message. The wait is bounded by the task's `spec.timeoutSeconds` (the engine cancels the
  handler) and ends at once on cancel. A deadline that hits while the node does not answer fails the task
  `NodeUnreachable`, with the number of failed requests and the last RPC error; one that hits while the node answers
  but is behind says the last height seen.
- Progress is `current/target` in blocks.
- `action: SIGTERM_SEID`, once the condition holds: find seid (`SEI_BINARY`, default `seid`) in `/proc` (the pod
  needs `shareProcessNamespace`), send SIGTERM, and SIGKILL after `graceSeconds`. seid already gone counts as
  stopped; seid never found fails the task (the condition held, but the asked-for stop did not happen).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from agent.chain.process import find_process, stop_process
from agent.chain.rpc import NodeStatus, RpcClient, RpcError
from agent.models import TaskError, TaskType
from agent.models.params.addresses import RpcAddress
from agent.models.params.base import TaskParams

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


class AwaitConditionParams(TaskParams):
    """`await-condition`: block until the local node reaches a height or has caught up, then optionally stop seid."""

    condition: Literal["height", "catchingUp"] = Field(
        description="`height`: latest height >= targetHeight. `catchingUp`: the node reports catching_up == false "
        "(and, when targetHeight is given, is at or past it)."
    )
    target_height: int | None = Field(default=None, gt=0, description="Required for `height`; must be > 0.")
    action: Literal["", "SIGTERM_SEID"] = Field(
        default="", description="`SIGTERM_SEID`: once the condition holds, stop seid (SIGTERM, SIGKILL after grace)."
    )
    rpc_endpoint: RpcAddress | None = Field(default=None, description="Default: the agent's SEI_RPC_ENDPOINT.")
    poll_interval_seconds: float = Field(default=1.0, ge=0.05, le=60)
    request_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    grace_seconds: float = Field(default=30.0, ge=0, le=3600, description="SIGTERM to SIGKILL delay for the action.")

    @model_validator(mode="after")
    def _height_needs_target(self) -> AwaitConditionParams:
        if self.condition == "height" and self.target_height is None:
            raise ValueError("targetHeight is required when condition is 'height'")
        return self


SEID_PROCESS = "seid"
CAUGHT_UP_MIN_HEIGHT = 2
"""`catchingUp` also needs a height of at least 2 (as the Go sidecar): a node that just started with an empty store,
or has not begun state sync yet, reports `catching_up: false` at height 0 while it has caught up on nothing."""


def _holds(params: AwaitConditionParams, status: NodeStatus) -> bool:
    at_height = params.target_height is None or status.latest_height >= params.target_height
    if params.condition == "catchingUp":
        return at_height and not status.catching_up and status.latest_height >= CAUGHT_UP_MIN_HEIGHT
    return at_height


def _unreachable(endpoint: str, errors: int, since_answer: int, last: RpcError) -> TaskError:
    """What a deadline means while the node does not answer: unreachable, how often, and the last RPC error."""
    return TaskError(
        f"the node's RPC {endpoint} was unreachable: {since_answer} failed requests in a row "
        f"({errors} in total), the last one: {last.cause}",
        reason="NodeUnreachable",
        hint="check that the node is running and its RPC listens on the address given (rpc.laddr); "
        "a longer timeout will not help while it is down",
        retryable=True,
    )


def _behind(params: AwaitConditionParams, status: NodeStatus) -> TaskError:
    """What a deadline means while the node answers but the condition does not hold yet."""
    wanted = f"height {params.target_height}" if params.target_height is not None else "caught up"
    state = "catching up" if status.catching_up else "not catching up"
    return TaskError(
        f"the node answered but had not reached {wanted} (last seen: height {status.latest_height}, {state})",
        reason="DeadlineExceeded",
        hint="raise spec.timeoutSeconds if the node is making progress; check its peers and logs if it is not",
        retryable=True,
    )


async def _poll_until_it_holds(
    rpc: RpcClient, endpoint: str, params: AwaitConditionParams, ctx: TaskContext
) -> tuple[NodeStatus, int]:
    errors = 0
    since_answer = 0  # failed requests since the node last answered
    height: int | None = None
    while True:
        try:
            status = await rpc.status(seconds=params.request_timeout_seconds)
        except RpcError as error:
            errors += 1
            since_answer += 1
            if errors == 1 or errors % 100 == 0:
                ctx.log.info("node RPC not answering (%d times so far): %s", errors, error.message)
            ctx.explain_deadline(_unreachable(endpoint, errors, since_answer, error))
            ctx.progress(height, params.target_height, "blocks", f"waiting for the node's RPC: {error.cause}")
        else:
            since_answer = 0
            if _holds(params, status):
                ctx.explain_deadline(None)
                return status, errors
            height = status.latest_height
            ctx.explain_deadline(_behind(params, status))
            ctx.progress(height, params.target_height, "blocks", "catching up" if status.catching_up else "")
        await asyncio.sleep(params.poll_interval_seconds)


async def _stop_seid(grace_seconds: float, binary: str) -> dict[str, Any]:
    process = await asyncio.to_thread(find_process, binary)
    if process is None:
        raise TaskError(
            f"the condition holds, but no process named {binary!r} was found in /proc to stop",
            hint="the pod needs shareProcessNamespace: true so the agent can see seid",
        )
    outcome = await stop_process(process, grace_seconds=grace_seconds)
    return {"pid": outcome.pid, "signal": outcome.signal, "stopped": outcome.exited}


@handler(TaskType.AWAIT_CONDITION, AwaitConditionParams)
async def await_condition(params: AwaitConditionParams, ctx: TaskContext) -> dict[str, Any]:
    """Wait for a block height or for the node to catch up; optionally stop seid afterwards."""
    endpoint = params.rpc_endpoint or ctx.settings.rpc_endpoint
    async with RpcClient(endpoint) as rpc:
        status, errors = await _poll_until_it_holds(rpc, endpoint, params, ctx)
    ctx.progress(status.latest_height, params.target_height, "blocks", "condition holds")
    result: dict[str, Any] = {
        "condition": params.condition,
        "targetHeight": params.target_height,
        "height": status.latest_height,
        "catchingUp": status.catching_up,
        "rpcErrors": errors,
    }
    if params.action == "SIGTERM_SEID":
        result["seid"] = await _stop_seid(params.grace_seconds, Path(ctx.settings.seid_binary).name or SEID_PROCESS)
    return result


HANDLERS = [await_condition]

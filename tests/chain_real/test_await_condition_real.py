"""await-condition against a real simd node: real heights, a node stopped mid-wait and restarted, a node that stays
down until the task's deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.models import Reason, TaskStatus, TaskType
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import SimdChain
from tests.fixtures.ports import reserve_ports

pytestmark = pytest.mark.chain


async def test_height_condition_holds_at_a_real_height(simd_chain: SimdChain, chain_agent) -> None:
    node = simd_chain.validator().start()
    agent: InProcessAgent = chain_agent(node.home, rpc_endpoint=node.rpc_url)
    target = (node.height() or 0) + 4

    result = await agent.run(TaskType.AWAIT_CONDITION, {"condition": "height", "targetHeight": target})

    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.result is not None
    assert result.result["height"] >= target
    assert (node.height() or 0) >= target


async def test_catching_up_condition_holds_on_a_live_validator(simd_chain: SimdChain, chain_agent) -> None:
    node = simd_chain.validator().start()
    agent: InProcessAgent = chain_agent(node.home, rpc_endpoint=node.rpc_url)

    result = await agent.run(TaskType.AWAIT_CONDITION, {"condition": "catchingUp"})

    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.result is not None and result.result["catchingUp"] is False


async def test_node_stopped_mid_wait_and_restarted_is_waited_for(simd_chain: SimdChain, chain_agent) -> None:
    node = simd_chain.validator().start(wait_height=2)
    agent: InProcessAgent = chain_agent(node.home, rpc_endpoint=node.rpc_url)
    target = (node.height() or 0) + 8
    task_id = await agent.submit(
        TaskType.AWAIT_CONDITION,
        {"condition": "height", "targetHeight": target, "pollIntervalSeconds": 0.2},
        timeout_seconds=120,
    )
    await asyncio.to_thread(node.stop)
    await asyncio.sleep(1.5)  # several polls against a closed port
    row = await agent.engine.get(task_id)
    assert row is not None and row.status is TaskStatus.RUNNING

    await asyncio.to_thread(node.start, wait_height=None)
    result = await agent.wait(task_id)

    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.result is not None
    assert result.result["height"] >= target
    assert result.result["rpcErrors"] >= 3


async def test_node_down_until_the_deadline_fails_as_unreachable_with_the_last_error(
    simd_chain: SimdChain, chain_agent
) -> None:
    node = simd_chain.validator()  # made, never started: nothing listens on its RPC port
    agent: InProcessAgent = chain_agent(node.home, rpc_endpoint=node.rpc_url)
    began = time.monotonic()

    result = await agent.run(
        TaskType.AWAIT_CONDITION,
        {"condition": "height", "targetHeight": 5, "pollIntervalSeconds": 0.2},
        timeout_seconds=2,
    )

    assert time.monotonic() - began < 30
    assert result.status is TaskStatus.FAILED
    assert result.reason == "NodeUnreachable"
    assert result.error is not None
    assert node.rpc_url in result.error
    assert "unreachable" in result.error and "failed requests in a row" in result.error
    assert "cannot connect" in result.error  # the last RPC error itself
    assert "raise spec.timeoutSeconds" not in (result.hint or "")


async def test_node_behind_at_the_deadline_says_the_last_height_seen(simd_chain: SimdChain, chain_agent) -> None:
    node = simd_chain.validator().start()
    agent: InProcessAgent = chain_agent(node.home, rpc_endpoint=node.rpc_url)

    result = await agent.run(
        TaskType.AWAIT_CONDITION, {"condition": "height", "targetHeight": 10**9}, timeout_seconds=2
    )

    assert result.status is TaskStatus.FAILED
    assert result.reason == Reason.DEADLINE_EXCEEDED
    assert result.error is not None and "last seen: height" in result.error


def test_reserved_ports_are_distinct_and_bindable() -> None:
    import socket

    ports = reserve_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))

"""restart-seid on seid nodes run the way the chart runs them (the shipped entrypoint waiting at the agent's readiness
gate, restarted like a kubelet restarts a container): a full node, and a seed, which serves no RPC at all, so "back"
cannot mean "RPC answers" there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.chain.process import find_process
from agent.models import TaskStatus, TaskType
from agent.models.settings import AgentSettings
from tests.chain_real.conftest import InProcessAgent
from tests.chain_real.pod import NodeContainer, unique_binary
from tests.fixtures.chain import ProcessGroup
from tests.fixtures.waiting import poll_until

from .conftest import SEID_MARKS, SeidNet

pytestmark = SEID_MARKS


@pytest.mark.parametrize("mode", ["full", "seed"])
async def test_restart_seid_brings_a_seid_node_back(
    seid_net: SeidNet, chain_processes: ProcessGroup, tmp_path: Path, mode: str
) -> None:
    validator = seid_net.validator("val")
    await asyncio.to_thread(validator.start, wait_height=2)
    node = seid_net.follower(mode, mode, of=validator)
    bin_dir = tmp_path / "bin"
    binary = unique_binary(bin_dir, seid_net.binary)
    agent = InProcessAgent(
        AgentSettings(
            home=node.home,
            chain_id=node.chain_id,
            rpc_endpoint=node.rpc_url,
            seid_binary=binary,
            pod_name=f"{mode}-0",
            pod_namespace="t",
        )
    )
    container: NodeContainer | None = None
    try:
        await agent.serve()
        assert agent.server is not None
        container = NodeContainer(node, chain_processes, agent.server.port, bin_dir, binary).start()
        ready = await agent.run(TaskType.MARK_READY)
        assert ready.status is TaskStatus.COMPLETED, ready.error
        before = await asyncio.to_thread(
            poll_until, lambda: find_process(binary, subcommand="start"), what="seid started", timeout=60
        )

        restarted = await agent.run(TaskType.RESTART_SEID, {"graceSeconds": 60, "readyTimeoutSeconds": 120})

        assert restarted.status is TaskStatus.COMPLETED, (restarted.reason, restarted.error)
        assert restarted.result is not None
        assert restarted.result["pid"] == before.pid
        assert restarted.result["newPid"] not in (None, before.pid)
        assert find_process(binary, subcommand="start") is not None
    finally:
        if container is not None:
            await asyncio.to_thread(container.stop)
        await agent.close()

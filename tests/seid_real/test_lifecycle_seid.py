"""restart-seid and stop-seid on seid nodes run the way the chart runs them (the shipped entrypoint waiting at the
agent's readiness gate, restarted like a kubelet restarts a container): a full node, and a seed, which serves no RPC
at all (tests/fixtures/seid/rpc/seed-ports.json), so "back" and "stopped" cannot mean "RPC answers" or "RPC gone"."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from agent.chain.process import ProcessInfo, find_process
from agent.models import TaskStatus, TaskType
from agent.models.settings import AgentSettings
from tests.chain_real.conftest import InProcessAgent
from tests.chain_real.pod import NodeContainer, unique_binary
from tests.fixtures.chain import ProcessGroup, wait_for_height
from tests.fixtures.waiting import poll_until

from .conftest import SEID_MARKS, SeidNet, SeidNode

pytestmark = SEID_MARKS
MODES = ["full", "seed"]


class SeidPod:
    """A seid node of `mode` following a fresh single validator, in a container gated by its own agent."""

    def __init__(self, node: SeidNode, agent: InProcessAgent, container: NodeContainer, binary: str):
        self.node = node
        self.agent = agent
        self.container = container
        self.binary = binary

    def node_process(self) -> ProcessInfo | None:
        return find_process(self.binary, subcommand="start")

    async def running_node(self) -> ProcessInfo:
        """The node process once seid is up: a full node at height 1 (its RPC answers), a seed listening on P2P. A
        seid SIGTERMed while it still opens its databases can be left unable to start again ("failed to initialize
        database: database entry point either missing or corrupted", seen on a full node): not what an operator does."""
        found: ProcessInfo = await asyncio.to_thread(poll_until, self.node_process, what="seid started", timeout=90)
        if self.node.mode == "seed":
            await asyncio.to_thread(poll_until, self.p2p_listening, what="the seed's P2P port", timeout=90)
        else:
            await asyncio.to_thread(wait_for_height, self.node.rpc_url, 1, 90)
        return found

    def p2p_listening(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex((self.node.host, self.node.p2p_port)) == 0

    async def ok(self, task_type: TaskType, params: dict[str, object] | None = None) -> dict[str, object]:
        result = await self.agent.run(task_type, params)
        assert result.status is TaskStatus.COMPLETED, (task_type, result.reason, result.error)
        return result.result or {}


@pytest.fixture
async def seid_pod(
    seid_net: SeidNet, chain_processes: ProcessGroup, tmp_path: Path
) -> AsyncIterator[Callable[[str], Awaitable[SeidPod]]]:
    made: list[SeidPod] = []

    async def make(mode: str) -> SeidPod:
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
        await agent.serve()
        assert agent.server is not None
        container = NodeContainer(node, chain_processes, agent.server.port, bin_dir, binary).start()
        made.append(SeidPod(node, agent, container, binary))
        return made[-1]

    yield make
    for pod in made:  # before the process group's teardown: no restart may follow the last stop
        await asyncio.to_thread(pod.container.stop)
        await pod.agent.close()


@pytest.mark.parametrize("mode", MODES)
async def test_restart_seid_brings_a_seid_node_back(seid_pod: Callable[[str], Awaitable[SeidPod]], mode: str) -> None:
    pod = await seid_pod(mode)
    await pod.ok(TaskType.MARK_READY)
    before = await pod.running_node()

    restarted = await pod.ok(TaskType.RESTART_SEID, {"graceSeconds": 60, "readyTimeoutSeconds": 120})

    assert restarted["pid"] == before.pid
    assert restarted["newPid"] not in (None, before.pid)
    assert pod.node_process() is not None


@pytest.mark.parametrize("mode", MODES)
async def test_stop_seid_on_a_gated_seid_node_leaves_it_stopped(
    seid_pod: Callable[[str], Awaitable[SeidPod]], mode: str
) -> None:
    pod = await seid_pod(mode)
    await pod.ok(TaskType.MARK_READY)
    before = await pod.running_node()
    await pod.ok(TaskType.MARK_NOT_READY)

    stopped = await pod.ok(TaskType.STOP_SEID, {"graceSeconds": 60})

    assert stopped["pid"] == before.pid and stopped["alreadyStopped"] is False
    await asyncio.sleep(2)  # the container restarts at once and parks at the closed gate: no node comes back
    assert pod.node_process() is None

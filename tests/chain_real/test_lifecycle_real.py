"""stop-seid, restart-seid and reset-data against real simd processes started the way the chart's entrypoint starts
them (waiting at the agent's readiness gate, restarted like a kubelet restarts a container), and the original's
state-sync re-bootstrap recipe: mark-not-ready, stop-seid, reset-data, config-patch, configure-state-sync,
mark-ready, await caught up."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.chain.process import find_process
from agent.models import TaskStatus, TaskType
from agent.tasks import default_registry
from agent.tasks.lifecycle import RESTART_STATE_FILE
from tests.chain_real.conftest import InProcessAgent
from tests.chain_real.pod import NodeContainer, unique_binary
from tests.fixtures.chain import ProcessGroup, SimdChain, SimdNode, current_height, rpc_get, wait_for_height
from tests.fixtures.ports import reserve_ports
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.chain

SNAPSHOT_INTERVAL = 5


@dataclass
class Pod:
    node: SimdNode
    agent: InProcessAgent
    container: NodeContainer

    def node_process(self):  # the node's process as the agent sees it in /proc
        return find_process(self.container.binary, subcommand="start")

    async def wait_height(self, height: int, deadline: float = 90) -> int:
        return await asyncio.to_thread(wait_for_height, self.node.rpc_url, height, deadline)

    async def wait_parked(self, *, restarted_after: int, deadline: float = 30) -> None:
        """Until the node is down and its container, started again after its `restarted_after`-th start, waits at the
        gate (the bash loop is alive, no node process). The start count matters: right after the node exits, the old
        container process is still alive for a moment and would look parked."""
        give_up = time.monotonic() + deadline
        while time.monotonic() < give_up:
            if (
                self.container.starts > restarted_after
                and self.node_process() is None
                and current_height(self.node.rpc_url) is None
                and self.container.process.running
            ):
                return
            await asyncio.sleep(0.2)
        pytest.fail(f"{self.node.name} did not park at the readiness gate")


@pytest.fixture
async def pod_factory(
    chain_processes: ProcessGroup, chain_agent, tmp_path: Path
) -> AsyncIterator[Callable[[SimdNode], Awaitable[Pod]]]:
    containers: list[NodeContainer] = []

    async def make(node: SimdNode) -> Pod:
        bin_dir = tmp_path / "bin"
        binary = unique_binary(bin_dir, node.tools.simd)
        agent: InProcessAgent = chain_agent(node.home, rpc_endpoint=node.rpc_url, seid_binary=binary)
        await agent.serve()
        assert agent.server is not None
        container = NodeContainer(node, chain_processes, agent.server.port, bin_dir, binary).start()
        containers.append(container)
        return Pod(node, agent, container)

    yield make
    for container in containers:  # before the process group's teardown: no restart may follow the last stop
        await asyncio.to_thread(container.stop)


def serve_snapshots(node: SimdNode) -> None:
    node.edit_app(
        {"state-sync.snapshot-interval": SNAPSHOT_INTERVAL, "state-sync.snapshot-keep-recent": 0, "pruning": "nothing"}
    )


def digest_tree(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


async def ok(agent: InProcessAgent, task_type: TaskType, params: dict | None = None, **options) -> dict:
    result = await agent.run(task_type, params, **options)
    assert result.status is TaskStatus.COMPLETED, f"{task_type}: {result.reason}: {result.error}"
    return result.result or {}


async def test_state_sync_re_bootstrap_recipe_on_a_gated_node(simd_chain: SimdChain, pod_factory) -> None:
    source = simd_chain.validator("a")
    serve_snapshots(source)
    source.start()
    witness = simd_chain.follower("w", of=source).start(wait_height=None)
    pod = await pod_factory(simd_chain.follower("n", of=source))

    # The container waits at the gate until mark-ready, then the node syncs from the source.
    await asyncio.sleep(3)
    assert current_height(pod.node.rpc_url) is None and pod.node_process() is None
    await ok(pod.agent, TaskType.MARK_READY)
    await pod.wait_height(3)
    await ok(pod.agent, TaskType.AWAIT_CONDITION, {"condition": "catchingUp", "pollIntervalSeconds": 0.2})
    config_before = digest_tree(pod.node.config_dir)

    # The recipe.
    await ok(pod.agent, TaskType.MARK_NOT_READY)
    starts = pod.container.starts
    stopped = await ok(pod.agent, TaskType.STOP_SEID, {"graceSeconds": 60})
    assert stopped["signal"] == "SIGTERM" and stopped["alreadyStopped"] is False
    await pod.wait_parked(restarted_after=starts)  # the container was restarted and parks at the closed gate
    reset = await ok(pod.agent, TaskType.RESET_DATA)
    assert reset["wipedBytes"] > 0
    data = pod.node.home / "data"
    assert sorted(entry.name for entry in data.iterdir()) == ["priv_validator_state.json"]
    assert json.loads((data / "priv_validator_state.json").read_text())["height"] == "0"  # a full node never signed
    assert digest_tree(pod.node.config_dir) == config_before
    assert pod.agent.settings.store_path.exists()
    await ok(pod.agent, TaskType.CONFIG_PATCH, {"files": {"config.toml": {"statesync": {"discovery_time": "5s"}}}})
    await asyncio.to_thread(source.wait_for_height, 3 * SNAPSHOT_INTERVAL)
    configured = await ok(
        pod.agent,
        TaskType.CONFIGURE_STATE_SYNC,
        {"rpcServers": [source.rpc_url, witness.rpc_url], "trustHeightOffset": 3},
    )
    assert configured.get("alreadyConfigured") is not True  # reset-data removed the done-marker
    await ok(pod.agent, TaskType.MARK_READY)
    target = (source.height() or 0) + 2
    caught_up = await ok(
        pod.agent,
        TaskType.AWAIT_CONDITION,
        {"condition": "catchingUp", "targetHeight": target, "pollIntervalSeconds": 0.2},
        timeout_seconds=150,
    )

    assert caught_up["catchingUp"] is False and caught_up["height"] >= target
    earliest = int(rpc_get(pod.node.rpc_url, "status")["sync_info"]["earliest_block_height"])
    assert earliest > 1, "the node replayed from genesis instead of state-syncing"


async def test_restart_seid_stops_the_node_and_waits_for_it_to_come_back(simd_chain: SimdChain, pod_factory) -> None:
    pod = await pod_factory(simd_chain.validator("v"))
    await ok(pod.agent, TaskType.MARK_READY)
    await pod.wait_height(2)
    before = pod.node_process()
    assert before is not None

    restarted = await ok(pod.agent, TaskType.RESTART_SEID, {"graceSeconds": 60, "readyTimeoutSeconds": 90})

    assert restarted["pid"] == before.pid and restarted["signal"] == "SIGTERM"
    assert restarted["newPid"] not in (None, before.pid)
    assert not (pod.node.home / RESTART_STATE_FILE).exists()
    height = current_height(pod.node.rpc_url)
    assert height is not None
    await pod.wait_height(height + 2)  # the validator signs again after the restart


async def test_restart_seid_of_a_seed_without_rpc_is_judged_by_its_process_and_p2p_port(
    simd_chain: SimdChain, pod_factory
) -> None:
    """A seed serves no RPC (here: `p2p.seed_mode` and an empty `[rpc] laddr`, so the node starts no RPC server):
    "back" is a new node process with its P2P port accepting connections (issue 22 D6)."""
    source = simd_chain.validator("a")
    source.start()
    seed = simd_chain.follower("s", of=source)
    seed.edit_config({"p2p.seed_mode": True, "rpc.laddr": ""})
    pod = await pod_factory(seed)
    await ok(pod.agent, TaskType.MARK_READY)
    await wait_until(lambda: pod.node_process() is not None, what="the seed's process", timeout=30)
    before = pod.node_process()
    assert before is not None

    restarted = await ok(pod.agent, TaskType.RESTART_SEID, {"graceSeconds": 60, "readyTimeoutSeconds": 90})

    assert restarted["pid"] == before.pid and restarted["signal"] == "SIGTERM"
    assert restarted["newPid"] not in (None, before.pid)
    assert f"P2P 127.0.0.1:{seed.p2p_port} accepting" in restarted["back"]
    assert "rpc" not in restarted


async def test_restart_seid_resumed_after_a_crash_does_not_stop_the_node_that_came_back(
    simd_chain: SimdChain, pod_factory
) -> None:
    pod = await pod_factory(simd_chain.validator("v"))
    await ok(pod.agent, TaskType.MARK_READY)
    await pod.wait_height(2)
    first = pod.node_process()
    assert first is not None
    spec = default_registry().get(TaskType.RESTART_SEID)
    assert spec is not None
    params = spec.params_model.model_validate({"graceSeconds": 60, "readyTimeoutSeconds": 90})
    context = pod_context(pod, resumes=0)

    # Run 1 is "killed" (cancelled) once it has signalled and the node exited; the container brings the node back.
    running = asyncio.create_task(spec.handler(params, context))
    await wait_until(
        lambda: (pod.node.home / RESTART_STATE_FILE).exists() and pod.node_process() != first,
        what="run 1 to record its stop and the container to bring the node back",
        timeout=120,
        unless_done=running,
        interval=0.05,
    )
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await pod.wait_height((current_height(pod.node.rpc_url) or 0) + 1)
    back = pod.node_process()
    assert back is not None and back.pid != first.pid

    # The same run, resumed by a restarted agent: it must not stop the node that already came back.
    resumed = await spec.handler(params, pod_context(pod, resumes=1))

    assert resumed["resumed"] is True and resumed["pid"] == first.pid
    assert pod.node_process() == back
    assert resumed["newPid"] == back.pid
    assert not (pod.node.home / RESTART_STATE_FILE).exists()


def pod_context(pod: Pod, *, resumes: int):
    import logging

    from agent.tasks import TaskContext

    return TaskContext(
        task_id="11111111-1111-4111-8111-111111111111",
        task_type=TaskType.RESTART_SEID,
        run=1,
        resumes=resumes,
        settings=pod.agent.settings,
        log=logging.LoggerAdapter(logging.getLogger("test.restart"), {"task_id": "test"}),
    )


async def test_stop_seid_of_a_stopped_node_succeeds_and_of_an_invisible_running_node_fails(
    simd_chain: SimdChain, chain_agent, tmp_path: Path
) -> None:
    node = simd_chain.validator("v")
    binary = unique_binary(tmp_path / "bin", node.tools.simd)  # nothing runs under this name
    agent: InProcessAgent = chain_agent(node.home, rpc_endpoint=node.rpc_url, seid_binary=binary)

    stopped = await ok(agent, TaskType.STOP_SEID)
    assert stopped["alreadyStopped"] is True and stopped["pid"] is None

    node.start()  # runs as `<cache>/simd start`: its RPC answers, but no `<binary> start` process exists
    for task_type in (TaskType.STOP_SEID, TaskType.RESTART_SEID, TaskType.RESET_DATA):
        result = await agent.run(task_type)
        assert result.status is TaskStatus.FAILED
        assert result.reason == ("NodeRunning" if task_type is TaskType.RESET_DATA else "NodeNotVisible"), result.error
        assert node.rpc_url in result.error
    assert node.running


async def test_stop_seid_never_kills_a_node_that_ignores_sigterm(
    chain_processes: ProcessGroup, chain_agent, tmp_path: Path
) -> None:
    # Stands in for a node stuck in a commit: a process named like the node that ignores SIGTERM.
    bin_dir = tmp_path / "bin"
    binary = unique_binary(bin_dir, Path(sys.executable))
    work = tmp_path / "work"
    work.mkdir()
    (work / "start").write_text(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open('ready', 'w').close()\n"
        "time.sleep(300)\n"
    )
    stuck = chain_processes.start("stuck", [bin_dir / binary, "start"], cwd=work)
    await wait_until(lambda: (work / "ready").exists(), what="the stand-in node to start", interval=0.05)
    (tmp_path / "home").mkdir()
    (idle_port,) = reserve_ports(1)  # not consulted: the process is visible
    agent: InProcessAgent = chain_agent(
        tmp_path / "home", rpc_endpoint=f"http://127.0.0.1:{idle_port}", seid_binary=binary
    )

    result = await agent.run(TaskType.STOP_SEID, {"graceSeconds": 1})

    assert result.status is TaskStatus.FAILED and result.reason == "StopTimedOut"
    assert "left running" in result.error and result.retryable
    assert stuck.running  # never SIGKILLed
    stuck.popen.kill()  # type: ignore[union-attr]
    stuck.wait_exit(10)


async def test_await_condition_stops_the_configured_node_binary_once_the_height_is_reached(
    simd_chain: SimdChain, pod_factory
) -> None:
    pod = await pod_factory(simd_chain.validator("v"))
    await ok(pod.agent, TaskType.MARK_READY)
    await pod.wait_height(2)
    first = pod.node_process()
    assert first is not None
    starts = pod.container.starts
    target = (current_height(pod.node.rpc_url) or 0) + 3
    waiting = asyncio.create_task(
        ok(
            pod.agent,
            TaskType.AWAIT_CONDITION,
            {"condition": "height", "targetHeight": target, "action": "SIGTERM_SEID", "graceSeconds": 60},
        )
    )
    await asyncio.sleep(0.5)
    await ok(pod.agent, TaskType.MARK_NOT_READY)  # so that the stopped node parks instead of coming back

    result = await waiting

    assert result["height"] >= target
    assert result["seid"] == {"pid": first.pid, "signal": "SIGTERM", "stopped": True}
    await pod.wait_parked(restarted_after=starts)

"""Store faults under the real engine, store and HTTP server: a full volume, another process's write lock, a kill.

Each test injects the fault into a real SQLite file (on a real tmpfs for the full volume) and checks what an operator
sees (probes, /v0/status) and that no outcome is lost once the fault ends, without restarting anything.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.models import Task, TaskStatus, TaskType
from agent.models.params import TaskParams
from agent.models.settings import AgentSettings
from agent.runtime import AgentRuntime
from agent.server import AgentServer
from agent.server.frontdoor import HttpApi
from agent.store import SqliteStore, StoreError, StoreInUse
from agent.tasks import HandlerRegistry, HandlerSpec, TaskContext
from agent.tasks.readiness import HANDLERS as READINESS_HANDLERS
from tests.faults.kit import Volume, WriteLock
from tests.fixtures.waiting import wait_until

GATED = TaskType.AWAIT_CONDITION
ID = "0e6f2bb0-5a43-4a5e-9d7e-6f0b7f1d2c01"
OTHER = "0e6f2bb0-5a43-4a5e-9d7e-6f0b7f1d2c02"
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=3)  # the readiness probe's timeoutSeconds in the chart


class GateParams(TaskParams):
    label: str = ""


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def handler(self, params: GateParams, ctx: TaskContext) -> dict[str, Any]:
        self.entered.set()
        await self.release.wait()
        return {"label": params.label}


class Node:
    """The agent runtime with its HTTP API (the process `run` starts, less the NodeTask watch)."""

    def __init__(self, runtime: AgentRuntime, server: AgentServer, gate: Gate) -> None:
        self.runtime, self.engine, self.server, self.gate = runtime, runtime.running_engine, server, gate

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as session, session.get(self.server.url + path) as r:
            return r.status, json.loads(await r.text())


async def open_node(db_path: Path, home: Path) -> Node:
    gate = Gate()
    registry = HandlerRegistry([HandlerSpec(GATED, GateParams, gate.handler), *READINESS_HANDLERS])
    settings = AgentSettings(home=home, db_path=db_path, shutdown_grace=1.0).model_copy(update={"http_port": 0})
    http = HttpApi(host="127.0.0.1", seictl=False)
    runtime = AgentRuntime(settings, [http], registry=registry)
    assert await runtime.start() is None  # the store recovery probe runs from here on
    assert http.server is not None
    return Node(runtime, http.server, gate)


async def close_node(node: Node) -> None:
    await node.runtime.stop()


async def test_full_volume_then_freed_the_finishing_task_is_recorded_without_a_restart(
    store_volume: Volume, tmp_path: Path
) -> None:
    node = await open_node(store_volume.path / "agent.db", tmp_path)
    try:
        await node.engine.wait(await node.engine.submit(Task(type=TaskType.MARK_READY)))
        assert (await node.get("/healthz"))[0] == 200
        await node.engine.submit(Task(id=ID, type=GATED, params={"label": "full"}))
        await node.gate.entered.wait()

        store_volume.fill()
        assert store_volume.full()
        node.gate.release.set()  # the handler finishes while the volume is full: its outcome cannot be stored
        await wait_until(
            lambda: not node.engine.store_health().ok, what="the store to report the full volume", timeout=20
        )

        status, body = await node.get("/healthz")
        assert status == 503 and "full" in body["reason"], body
        assert (await node.get("/livez"))[0] == 200  # a restart would not help: liveness holds
        status, body = await node.get("/v0/status")
        assert body["store"]["ok"] is False and "full" in body["store"]["error"]
        assert node.engine.is_running(ID)  # held in memory, not lost, not reported as done
        (row,) = node.engine.running_rows()
        assert row.progress is not None and "waiting for the task store" in row.progress.message

        store_volume.free()
        done = await asyncio.wait_for(node.engine.wait(ID), 20)
        assert (done.status, done.result) == (TaskStatus.COMPLETED, {"label": "full"})
        assert node.engine.store_health().ok
        assert (await node.get("/healthz"))[0] == 200
        stored = await node.engine.get(ID)
        assert stored is not None and stored.status is TaskStatus.COMPLETED
    finally:
        store_volume.free()
        await close_node(node)


@pytest.mark.slow
async def test_write_lock_held_past_busy_timeout_probes_answer_and_work_resumes_when_released(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "agent.db"
    node = await open_node(db_path, tmp_path)
    recovered = asyncio.Event()
    node.engine.store.on_recovered(recovered.set)
    lock = WriteLock(db_path)
    try:
        submit = asyncio.create_task(node.engine.submit(Task(id=ID, type=GATED)))
        # While the store's thread waits out busy_timeout (5 s), the loop keeps serving: every probe answers within
        # the readiness probe's 3 s timeout (aiohttp's timeout above fails the test otherwise).
        for _ in range(10):
            assert (await node.get("/livez"))[0] == 200
            await node.get("/healthz")
            await asyncio.sleep(0.3)
        with pytest.raises(StoreError, match="locked"):
            await submit  # refused, not silently dropped: the caller (the agent's reconcile) retries on recovery
        assert not node.engine.store_health().ok
        status, body = await node.get("/healthz")
        assert status == 503 and "locked" in body["reason"]
        assert not recovered.is_set()

        lock.release()
        await asyncio.wait_for(recovered.wait(), 10)  # noticed by the recovery probe, without a restart
        await node.engine.submit(Task(id=ID, type=GATED))
        node.gate.release.set()
        assert (await node.engine.wait(ID)).status is TaskStatus.COMPLETED
    finally:
        lock.release()
        await close_node(node)


def test_a_second_runner_on_the_same_store_is_refused_naming_the_holder(tmp_path: Path) -> None:
    db_path = tmp_path / "agent.db"
    with SqliteStore(db_path, exclusive=True):
        with pytest.raises(StoreInUse, match=r"in use by another process \(pid \d+"):
            SqliteStore(db_path, exclusive=True)
        with SqliteStore(db_path) as reader:  # readers (nodetask-agent tasks) are not refused
            assert reader.list() == []
    SqliteStore(db_path, exclusive=True).close()  # released by close


@pytest.mark.parametrize(("closes", "expected"), [(True, 0), (False, 1)])
def test_the_lock_file_counts_consecutive_unclean_stops(tmp_path: Path, closes: bool, expected: int) -> None:
    db_path = tmp_path / "agent.db"
    first = SqliteStore(db_path, exclusive=True, owner={"podUID": "a"})
    if closes:
        first.close()
    else:  # a killed process: its descriptor goes away without the clean-stop record
        assert first._owner_fd is not None
        import os

        os.close(first._owner_fd)
        first._owner_fd = None
    second = SqliteStore(db_path, exclusive=True, owner={"podUID": "b"})
    assert second.unclean_stops == expected
    assert second.previous_owner.get("podUID") == "a"
    second.close()


def test_local_mode_pointed_at_a_live_agents_home_refuses_instead_of_running_its_task_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli.main import main

    home = tmp_path / "home"
    home.mkdir()
    manifest = tmp_path / "ready.yaml"
    manifest.write_text(
        "apiVersion: sei.io/v1alpha1\nkind: NodeTask\nmetadata: {name: ready}\n"
        "spec: {targetPod: sei-node-0, type: mark-ready}\n"
    )
    with SqliteStore(home / "nodetask-agent.db", exclusive=True):  # the live agent
        assert main(["local", str(manifest), "--home", str(home)]) == 1
    out = capsys.readouterr().out
    assert "in use by another process" in out and "only one agent may run tasks from one store" in out
    with SqliteStore(home / "nodetask-agent.db") as reader:
        assert reader.list() == []  # nothing ran

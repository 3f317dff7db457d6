"""The HTTP server over real HTTP, backed by a real engine and a real SQLite store."""

from __future__ import annotations

import asyncio
import platform
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__ as agent_version
from agent.engine import Engine
from agent.models import Task, TaskType
from agent.models.params import TaskParams
from agent.models.settings import AgentSettings
from agent.server import AgentMetrics, AgentServer, redact
from agent.store import SqliteStore
from agent.tasks import HandlerRegistry, HandlerSpec, TaskContext
from agent.tasks.readiness import HANDLERS as READINESS_HANDLERS

# A controllable handler under a real type name (the server, not the handler, is under test).
SLOW = TaskType.AWAIT_CONDITION
LEAKY = TaskType.RESULT_EXPORT
ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


class SlowParams(TaskParams):
    total: int = 10


class Slow:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.reported = asyncio.Event()

    async def __call__(self, params: SlowParams, ctx: TaskContext) -> dict[str, Any]:
        ctx.progress(3, params.total, "blocks", "syncing")
        self.reported.set()
        await self.release.wait()
        return {"height": params.total}


async def leaky(params: TaskParams, ctx: TaskContext) -> dict[str, Any]:
    return {"nodeId": "abc", "validatorMnemonic": "word " * 24, "nested": {"privKey": "00ff"}}


class Agent:
    def __init__(self, engine: Engine, store: SqliteStore, server: AgentServer, slow: Slow) -> None:
        self.engine, self.store, self.server, self.slow = engine, store, server, slow
        self.session = aiohttp.ClientSession(base_url=server.url)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(path) as response:
            body = await response.json() if response.content_type == "application/json" else await response.text()
            return response.status, body

    async def run(self, task_type: str, task_id: str = ID, **fields: Any) -> None:
        await self.engine.submit(Task(id=task_id, type=task_type, **fields))
        await self.engine.wait(task_id)


@pytest.fixture
async def agent(tmp_path: Path, settings: AgentSettings) -> AsyncIterator[Agent]:
    slow = Slow()
    registry = HandlerRegistry(
        [HandlerSpec(SLOW, SlowParams, slow), HandlerSpec(LEAKY, TaskParams, leaky), *READINESS_HANDLERS]
    )
    store = SqliteStore(tmp_path / "agent.db")
    engine = Engine(registry, store, settings, progress_interval=0.0)
    metrics = AgentMetrics()
    metrics.bind(running=lambda: len(engine.running()), ready=engine.healthz, overdue=lambda: len(engine.overdue()))
    engine.add_listener(metrics.observe)
    server = AgentServer(engine, metrics, host="127.0.0.1", port=0, identity={"pod": "node-0", "namespace": "ns"})
    await server.start()
    agent = Agent(engine, store, server, slow)
    yield agent
    slow.release.set()
    await agent.session.close()
    await server.stop()
    await engine.shutdown(grace=1)
    store.close()


async def test_healthz_follows_the_readiness_gate(agent: Agent) -> None:
    assert (await agent.get("/healthz"))[0] == 503
    await agent.run(TaskType.MARK_READY)
    assert await agent.get("/healthz") == (200, {"status": "ready"})
    await agent.run(TaskType.MARK_NOT_READY, task_id="6ba7b811-9dad-11d1-80b4-00c04fd430c8")
    assert (await agent.get("/healthz"))[0] == 503


async def test_livez_fails_once_the_store_is_closed(agent: Agent) -> None:
    assert (await agent.get("/livez"))[0] == 200
    await agent.engine.store.close()
    assert (await agent.get("/livez")) == (503, {"status": "store unavailable"})


async def test_task_view_shows_live_progress_then_the_result(agent: Agent) -> None:
    await agent.engine.submit(Task(id=ID, type=SLOW, params={"total": 10}))
    await agent.slow.reported.wait()

    status, running = await agent.get(f"/v0/tasks/{ID.upper()}")
    assert status == 200
    assert running["phase"] == "Running" and running["status"] == "running"
    assert running["progress"] == {
        "current": 3.0,
        "total": 10.0,
        "unit": "blocks",
        "message": "syncing",
        "percent": 30.0,
        "summary": "3/10 blocks (30.0%) syncing",
    }

    agent.slow.release.set()
    await agent.engine.wait(ID)
    status, done = await agent.get(f"/v0/tasks/{ID}")
    assert (done["phase"], done["result"], done["reason"]) == ("Succeeded", {"height": 10}, "Succeeded")


@pytest.mark.parametrize(
    ("path", "code", "fragment"),
    [
        (f"/v0/tasks/{ID}", 404, "not found"),
        ("/v0/tasks/not-a-uuid", 400, "valid UUID"),
        ("/v0/tasks?limit=0", 400, "between 1 and 500"),
        ("/v0/tasks?limit=501", 400, "between 1 and 500"),
        ("/v0/tasks?limit=ten", 400, "integer"),
    ],
)
async def test_bad_or_unknown_requests_get_json_errors(agent: Agent, path: str, code: int, fragment: str) -> None:
    status, body = await agent.get(path)
    assert status == code
    assert fragment in body["error"]


async def test_task_list_is_newest_first_and_limited(agent: Agent) -> None:
    ids = [f"6ba7b81{n}-9dad-11d1-80b4-00c04fd430c8" for n in range(3)]
    for task_id in ids:
        await agent.run(TaskType.MARK_READY, task_id=task_id)

    _, everything = await agent.get("/v0/tasks")
    _, newest = await agent.get("/v0/tasks?limit=1")

    assert [task["id"] for task in everything["tasks"]] == list(reversed(ids))
    assert [task["id"] for task in newest["tasks"]] == [ids[-1]] and newest["count"] == 1


async def test_status_reports_readiness_running_count_and_identity(agent: Agent) -> None:
    await agent.engine.submit(Task(id=ID, type=SLOW))
    await agent.slow.reported.wait()
    _, body = await agent.get("/v0/status")
    assert body["ready"] is False and body["running"] == 1
    assert body["agent"] == {"pod": "node-0", "namespace": "ns"}


async def test_secret_looking_result_keys_are_masked_in_the_read_api(agent: Agent) -> None:
    await agent.run(LEAKY)
    _, body = await agent.get(f"/v0/tasks/{ID}")
    assert body["result"] == {"nodeId": "abc", "validatorMnemonic": "[redacted]", "nested": {"privKey": "[redacted]"}}
    assert "word" not in str(body)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


async def test_metrics_count_submissions_failures_durations_and_running(agent: Agent) -> None:
    await agent.run(TaskType.MARK_READY)
    await agent.run(TaskType.MARK_READY, task_id="6ba7b811-9dad-11d1-80b4-00c04fd430c8", params={"bogus": 1})
    await agent.engine.submit(Task(id="6ba7b812-9dad-11d1-80b4-00c04fd430c8", type=SLOW))
    await agent.slow.reported.wait()

    status, text = await agent.get("/metrics")
    values = samples(text)

    assert status == 200
    assert values[("nodetask_submissions_total", (("type", "mark-ready"),))] == 2
    assert values[("nodetask_failures_total", (("reason", "ParamsInvalid"), ("type", "mark-ready")))] == 1
    assert values[("nodetask_finished_total", (("phase", "Succeeded"), ("type", "mark-ready")))] == 1
    assert values[("nodetask_duration_seconds_count", (("phase", "Succeeded"), ("type", "mark-ready")))] == 1
    assert values[("nodetask_running_tasks", ())] == 1
    assert values[("nodetask_ready", ())] == 1
    assert [name for name, _ in values if name.endswith("_created")] == []


async def test_metrics_include_the_process_the_runtime_and_the_build(agent: Agent) -> None:
    status, text = await agent.get("/metrics")
    values = samples(text)

    assert status == 200
    assert values[("process_resident_memory_bytes", ())] > 1 << 20  # this very process: a Python with the agent loaded
    assert values[("process_cpu_seconds_total", ())] > 0
    assert values[("process_open_fds", ())] > 0
    assert any(name == "python_gc_collections_total" for name, _ in values)
    assert any(name == "python_info" for name, _ in values)
    build = [labels for name, labels in values if name == "nodetask_agent_build_info"]
    assert build == [(("python_version", platform.python_version()), ("version", agent_version))]
    assert values[("nodetask_agent_build_info", build[0])] == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"mnemonic": "a b c"}, {"mnemonic": "[redacted]"}),
        ({"keys": [{"private_key": "x", "pubKey": "y"}]}, {"keys": [{"private_key": "[redacted]", "pubKey": "y"}]}),
        ({"Passphrase": "p", "seeds": "id@host:26656"}, {"Passphrase": "[redacted]", "seeds": "id@host:26656"}),
        ("plain", "plain"),
        (None, None),
    ],
)
def test_redact_masks_secret_looking_keys_at_any_depth(value: Any, expected: Any) -> None:
    assert redact(value) == expected


async def test_a_failing_store_answers_503_naming_it_not_500(agent: Agent) -> None:
    agent.store.close()  # every later store call fails
    status, body = await agent.get("/v0/tasks")
    assert status == 503 and body["error"].startswith("task store unavailable") and "closed" in body["error"]
    assert (await agent.get(f"/v0/tasks/{uuid.uuid4()}"))[0] == 503

"""The agent side of the real chain tier: the real engine and SQLite store, in the test's process, on a real home.

`chain_agent(home, **settings)` makes an `InProcessAgent`: `await agent.run(TaskType.X, {...}, timeout_seconds=...)`
submits one task through the engine exactly as the operator would (params validated, deadline applied, store row
written) and returns the terminal `TaskResult`. `await agent.serve()` also starts the agent's HTTP server (readiness
gate at `/healthz`) on a free port. Everything is shut down at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.engine import Engine
from agent.models import Task, TaskResult, TaskType
from agent.models.settings import AgentSettings
from agent.runtime.metrics import AgentMetrics
from agent.server.app import AgentServer
from agent.store import SqliteStore
from agent.tasks import default_registry


class InProcessAgent:
    """One agent (engine + store, optionally its HTTP server) for one node home."""

    def __init__(self, settings: AgentSettings):
        self.settings = settings
        self.store = SqliteStore(settings.store_path)
        self.engine = Engine(default_registry(), self.store, settings, stop_grace=5.0)
        self.metrics = AgentMetrics()
        self.engine.add_listener(self.metrics.observe)
        self.server: AgentServer | None = None

    async def submit(
        self, task_type: TaskType, params: dict[str, Any] | None = None, *, timeout_seconds: int | None = None
    ) -> str:
        return await self.engine.submit(
            Task(id=str(uuid.uuid4()), type=task_type, params=params or {}, timeout_seconds=timeout_seconds)
        )

    async def wait(self, task_id: str, timeout: float = 180.0) -> TaskResult:
        return await self.engine.wait(task_id, timeout)

    async def run(
        self, task_type: TaskType, params: dict[str, Any] | None = None, *, timeout_seconds: int | None = 120
    ) -> TaskResult:
        """Submit and wait for the terminal row (the engine's deadline is `timeout_seconds`)."""
        return await self.wait(await self.submit(task_type, params, timeout_seconds=timeout_seconds))

    async def serve(self) -> str:
        """Start the HTTP server on a free loopback port; returns its base URL."""
        if self.server is None:
            self.server = AgentServer(self.engine, self.metrics, host="127.0.0.1", port=0)
            await self.server.start()
        return self.server.url

    async def close(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.engine.shutdown(grace=5)
        self.store.close()


@pytest.fixture
async def chain_agent() -> AsyncIterator[Callable[..., InProcessAgent]]:
    """`chain_agent(home, **settings)` -> an `InProcessAgent` for that home (chain_id defaults to `chain-real`)."""
    agents: list[InProcessAgent] = []

    def make(home: Path, **overrides: Any) -> InProcessAgent:
        values: dict[str, Any] = {"home": home, "chain_id": "chain-real", "pod_name": "node-0", "pod_namespace": "t"}
        values.update(overrides)
        agent = InProcessAgent(AgentSettings(**values))
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.close()

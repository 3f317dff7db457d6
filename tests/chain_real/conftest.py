"""The agent side of the real chain tier: the agent runtime (real engine and SQLite store) in the test's process, on a
real home.

`chain_agent(home, **settings)` makes an `InProcessAgent`: `await agent.run(TaskType.X, {...}, timeout_seconds=...)`
submits one task through the engine exactly as the operator would (params validated, deadline applied, store row
written) and returns the terminal `TaskResult`. `await agent.serve()` also starts the agent's HTTP API (readiness
gate at `/healthz`) on a free port. Everything is shut down at teardown.

The agents are `AgentRuntime`s with the HTTP API as front door, built without the runner's locks (`exclusive=False`):
some tests put a second agent, with its own store, on a validator's home on purpose (what the product refuses).
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
from agent.runtime import AgentRuntime
from agent.server.app import AgentServer
from agent.server.frontdoor import HttpApi
from agent.tasks import default_registry


class InProcessAgent:
    """One agent (the runtime: engine + store, and its HTTP API once `serve`d) for one node home."""

    def __init__(self, settings: AgentSettings):
        self.settings = settings
        self.http = HttpApi(host="127.0.0.1", seictl=False)
        # Port 0: the OS picks a free port (the variable itself refuses 0).
        runtime_settings = settings.model_copy(update={"http_port": 0, "shutdown_grace": 5.0})
        self.runtime = AgentRuntime(runtime_settings, [self.http], registry=default_registry(), exclusive=False)
        assert self.runtime.open() is None, f"the agent runtime did not open its store {settings.store_path}"
        self.engine: Engine = self.runtime.running_engine
        self._started = False

    @property
    def server(self) -> AgentServer | None:
        return self.http.server

    async def start(self) -> None:
        """The HTTP API and the runtime's loops (retention, the store's recovery probe); idempotent."""
        if not self._started:
            self._started = True
            assert await self.runtime.start() is None

    async def submit(
        self, task_type: TaskType, params: dict[str, Any] | None = None, *, timeout_seconds: int | None = None
    ) -> str:
        await self.start()
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
        """Start the HTTP API on a free loopback port; returns its base URL."""
        await self.start()
        assert self.server is not None
        return self.server.url

    async def close(self) -> None:
        await self.runtime.stop()


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

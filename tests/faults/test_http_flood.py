"""The HTTP server under a flood of idle, half-sent requests, and /v0/tasks under memory pressure.

Real sockets against the real server: the probes must keep answering within the readiness probe's timeout while far
more half-sent connections than the limit are held open, the server never holds more than its limit, and the
half-sent ones are closed after the idle timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.engine import Engine
from agent.models import Task, TaskType
from agent.models.settings import AgentSettings
from agent.server import AgentMetrics, AgentServer, app
from agent.server.limits import HEAVY_CONCURRENCY, ConnectionGuard, throttle_accept_errors
from agent.store import SqliteStore
from agent.tasks import default_registry

LIMIT = 32
FLOOD = 400
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=3)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AgentServer]:
    engine = Engine(default_registry(), SqliteStore(tmp_path / "agent.db"), AgentSettings(home=tmp_path))
    guard = ConnectionGuard(max_connections=LIMIT, idle_timeout=2.0)
    served = AgentServer(engine, AgentMetrics(), host="127.0.0.1", port=0, guard=guard)
    await served.start()
    yield served
    await served.stop()
    await engine.shutdown()
    await engine.store.close()


async def half_sent(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: agent\r\nX-Slow: ")  # the headers never end
    await writer.drain()
    return reader, writer


async def test_probes_answer_during_a_flood_of_half_sent_requests(server: AgentServer) -> None:
    flood = [await half_sent(server.port) for _ in range(FLOOD)]
    try:
        async with aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as session:
            for _ in range(20):
                async with session.get(server.url + "/livez") as answer:
                    assert answer.status == 200
                async with session.get(server.url + "/healthz") as answer:
                    assert answer.status == 503  # answered (no mark-ready yet), not timed out
                assert server.guard.server is not None
                assert len(server.guard.server.connections) <= LIMIT
        assert server.guard.evicted >= FLOOD - LIMIT
        # Every half-sent connection is closed by the server: evicted at the limit, or after the idle timeout.
        async with asyncio.timeout(20):
            for reader, _ in flood:
                assert await reader.read() == b""
    finally:
        for _, writer in flood:
            writer.close()


async def test_task_listing_is_bounded_in_concurrency_and_size(
    server: AgentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = server.app[app._CONTEXT].engine
    for _ in range(5):
        await engine.wait(await engine.submit(Task(type=TaskType.MARK_NOT_READY, params={})))
    monkeypatch.setattr(app, "LISTING_MAX_BYTES", 1500)
    async with aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as session:
        async with session.get(server.url + "/v0/tasks?limit=5") as answer:
            body = json.loads(await answer.text())
        assert answer.status == 200
        assert body["truncated"] is True and 1 <= body["count"] == len(body["tasks"]) < 5

        heavy = server.app[app._CONTEXT].heavy
        for _ in range(HEAVY_CONCURRENCY):
            await heavy.acquire()  # as many listings in progress as allowed
        try:
            async with session.get(server.url + "/v0/tasks") as answer:
                assert answer.status == 503 and answer.headers["Retry-After"] == "1"
            async with session.get(server.url + "/livez") as answer:
                assert answer.status == 200  # probes are never queued behind listings
        finally:
            for _ in range(HEAVY_CONCURRENCY):
                heavy.release()
        async with session.get(server.url + "/v0/tasks?limit=501") as answer:
            assert answer.status == 400


async def test_accept_resource_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    other: list[str] = []
    loop.set_exception_handler(lambda _, context: other.append(context["message"]))
    try:
        throttle_accept_errors(loop)
        with caplog.at_level(logging.ERROR, logger="agent.server.limits"):
            for _ in range(1000):  # what a descriptor flood makes asyncio report, thousands of times a second
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(24, "Too many open files"),
                    }
                )
            loop.call_exception_handler({"message": "something else"})
    finally:
        loop.set_exception_handler(previous)
    assert len([r for r in caplog.records if "out of system resource" in r.getMessage()]) == 1
    assert other == ["something else"]  # every other loop error still goes to the handler installed before

"""Slow request bodies against the seictl-compatible task API (B1, docs/reliability.md).

An attack held 300-400 POSTs whose bodies trickled in a byte at a time: each counted as a request in progress, so
the connection limit was reached with nothing evictable and every /healthz probe was reset for 20-40 s. Real sockets
against the real server (the app `seictl serve` builds, default connection bounds): while 400 such bodies are held
open, every probe on a fresh connection (as the kubelet makes them) answers within 1 s, in both authentication modes;
and a body that never completes is cut at the connection's deadline however steadily it trickles.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.engine import Engine
from agent.models.settings import AgentSettings
from agent.server import AgentMetrics, AgentServer, app
from agent.server.limits import ConnectionGuard
from agent.store import SqliteStore
from agent.tasks import default_registry
from tests.fixtures.waiting import wait_until

SLOW_BODIES = 400
PROBE_DEADLINE = 1.0
"""Seconds a probe may take while the slow bodies are held (the behavioural bound of the finding)."""
HOLD_SECONDS = 3.0
"""How long probes keep coming while every slow body is open (well inside the 10 s connection deadline)."""


async def _serving(tmp_path: Path, authn_mode: str, guard: ConnectionGuard | None = None) -> AgentServer:
    settings = AgentSettings(home=tmp_path, authn_mode=authn_mode)
    engine = Engine(default_registry(), SqliteStore(tmp_path / "agent.db"), settings)
    server = AgentServer(
        engine, AgentMetrics(), host="127.0.0.1", port=0, seictl_settings=settings, authn_mode=authn_mode, guard=guard
    )
    await server.start()
    return server


async def _stop(server: AgentServer) -> None:
    await server.stop()
    engine = server.app[app._CONTEXT].engine
    await engine.shutdown()
    await engine.store.close()


@pytest.fixture(params=["unauthenticated", "trusted-header"])
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[AgentServer]:
    served = await _serving(tmp_path, request.param)
    try:
        yield served
    finally:
        await _stop(served)


SLOW_POST = (
    b"POST /v0/tasks HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
    b"X-Remote-User: system:serviceaccount:sei:attacker\r\nContent-Length: 100000\r\n\r\n{"
)
"""A POST /v0/tasks with complete headers (the proxy's header too, so authentication lets it through) whose body
promises 100 kB."""


async def trickle(writer: asyncio.StreamWriter, closed: asyncio.Future[bytes], stop: asyncio.Event) -> None:
    """One more body byte every 0.2 s until the server closes the connection (`closed`) or `stop`."""
    while not stop.is_set() and not closed.done():
        writer.write(b" ")
        await asyncio.wait({closed}, timeout=0.2)


ATTACKER = """
import asyncio, sys

PORT, SLOTS, POST = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode().decode("unicode_escape").encode()


async def slot(opened):
    first = True
    while True:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
            writer.write(POST)
            await writer.drain()
            if first:
                opened.release()
                first = False
            closed = asyncio.ensure_future(reader.read())
            while not closed.done():
                writer.write(b" ")
                await asyncio.wait({closed}, timeout=0.2)
        except OSError:
            pass
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(1.0)


async def main():
    opened = asyncio.Semaphore(0)
    slots = [asyncio.create_task(slot(opened)) for _ in range(SLOTS)]
    for _ in range(SLOTS):
        await opened.acquire()
    print("opened", flush=True)
    await asyncio.gather(*slots)


asyncio.run(main())
"""
"""The attack, from its own process as from another host: `SLOTS` slow bodies, each opened again whenever the server
closes it, a second later (a real attacker keeps the pressure); prints `opened` once every slot has sent its
headers."""


@pytest.fixture
async def attack(server: AgentServer) -> AsyncIterator[None]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ATTACKER,
        str(server.port),
        str(SLOW_BODIES),
        SLOW_POST.decode().encode("unicode_escape").decode(),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            assert await process.stdout.readline() == b"opened\n", "the attacker did not open its connections"
        await asyncio.sleep(0.5)  # let the server take up every request it accepted (not a timing assertion)
        yield
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.mark.slow
@pytest.mark.usefixtures("attack")
async def test_probes_answer_within_a_second_while_400_slow_bodies_are_held(
    server: AgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[tuple[str, int]] = []
    # A fresh connection per probe, as the kubelet's: it must find room although every slot holds a slow body.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        held_until = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < held_until:
            for path in ("/healthz", "/livez", "/v0/healthz", "/v0/livez"):
                try:
                    async with asyncio.timeout(PROBE_DEADLINE):
                        async with session.get(server.url + path) as answer:
                            await answer.read()
                            answers.append((path, answer.status))
                except (TimeoutError, aiohttp.ClientError) as error:
                    pytest.fail(f"probe {path} not answered within {PROBE_DEADLINE}s during the slow bodies: {error!r}")
    assert {path for path, _ in answers} == {"/healthz", "/livez", "/v0/healthz", "/v0/livez"}
    assert all(status in (200, 503) for _, status in answers), answers  # answered: 503 is "not ready yet"
    assert server.guard.evicted > 0, "the slow bodies were evicted to make room, as idle connections are"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "an attack is not one traceback per request"


async def test_a_body_that_never_completes_is_cut_at_the_connection_deadline(tmp_path: Path) -> None:
    guard = ConnectionGuard(idle_timeout=1.0)
    server = await _serving(tmp_path, "unauthenticated", guard)
    stop = asyncio.Event()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(SLOW_POST)
        await writer.drain()
        started = time.monotonic()
        closed = asyncio.ensure_future(reader.read())
        async with asyncio.timeout(10):  # a deadline for the test, far above the guard's 1 s
            await trickle(writer, closed, stop)
        assert closed.result() == b"", "no answer: the connection is closed, the request never handled"
        assert time.monotonic() - started >= 0.5, "closed by the deadline, not at once"
        writer.close()
        # Nothing was submitted: the handler never ran on a partial body.
        engine = server.app[app._CONTEXT].engine
        assert await engine.recent(10) == []
    finally:
        stop.set()
        await _stop(server)


@pytest.mark.slow
async def test_request_bodies_in_flight_are_bounded_together(tmp_path: Path) -> None:
    guard = ConnectionGuard(max_buffered=64 * 1024)
    server = await _serving(tmp_path, "unauthenticated", guard)
    writers = []
    try:
        # Two bodies of 48 KiB each, sent but for their last byte: the second finds the budget spent.
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(SLOW_POST.replace(b"100000", b"49154") + b" " * (48 * 1024))
            await writer.drain()
            writers.append((reader, writer))
        async with asyncio.timeout(10):
            answer = await writers[1][0].readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
        assert 0 < guard.buffered <= guard.max_buffered
        writers[0][1].close()
        await wait_until(lambda: guard.buffered == 0, what="the closed connection's body to be released")
    finally:
        for _, writer in writers:
            writer.close()
        await _stop(server)

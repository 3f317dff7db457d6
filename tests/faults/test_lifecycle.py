"""The agent process's lifecycle and its background loops: the shutdown order, and loops that cannot die.

The process is started against an API server that does not answer (a listening socket that never accepts), which is
itself a fault the agent must ride out: probes answer, the store is open, and a stop still goes through every step in
`SHUTDOWN_ORDER`, ending with a clean-stop record in the store's lock file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from agent.cli.run import agent_runtime
from agent.io.loops import LogThrottle, every, supervise
from agent.models.settings import AgentSettings
from agent.runtime import SHUTDOWN_ORDER
from agent.server.frontdoor import HttpApi
from agent.store import SqliteStore
from tests.faults.kit import silent_api


@pytest.fixture
def dead_api(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig naming an API server that accepts connections and never answers."""
    with silent_api(tmp_path) as kubeconfig:
        yield kubeconfig


async def test_stop_goes_through_every_step_in_order_and_records_a_clean_stop(tmp_path: Path, dead_api: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Port 0 (the OS picks one) is for tests only: the variable itself refuses it.
    settings = AgentSettings(
        home=home, pod_name="pod-0", pod_namespace="ns", pod_uid="uid-1", http_host="127.0.0.1", shutdown_grace=1.0
    ).model_copy(update={"http_port": 0})
    stop = asyncio.Event()
    process = agent_runtime(settings, kubeconfig=str(dead_api), stop=stop)
    assert await process.start() is None
    serving = asyncio.create_task(process.serve())
    (http,) = [door for door in process.doors if isinstance(door, HttpApi)]
    assert http.server is not None
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(http.server.url + "/livez") as answer:
        assert answer.status == 200  # probes answer while the API server does not
    stop.set()
    assert await asyncio.wait_for(serving, 30) == 0
    await process.stop()
    assert process.steps == list(SHUTDOWN_ORDER)
    with SqliteStore(settings.store_path, exclusive=True) as reopened:
        assert reopened.unclean_stops == 0
        assert reopened.previous_owner.get("podUID") == "uid-1"


async def test_supervise_restarts_a_loop_that_raises_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    again = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError(f"bug {len(runs)}")
        again.set()
        await asyncio.Event().wait()

    import agent.io.loops as loops

    original = loops.LOOP_BACKOFF_INITIAL
    loops.LOOP_BACKOFF_INITIAL = 0.01
    try:
        with caplog.at_level(logging.ERROR, logger="agent.io.loops"):
            task = asyncio.create_task(supervise("flaky", flaky, throttle=LogThrottle(interval=0)))
            await asyncio.wait_for(again.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        loops.LOOP_BACKOFF_INITIAL = original
    assert runs == [0, 1, 2]
    assert [record.getMessage().split(";")[0] for record in caplog.records] == ["background loop flaky failed"] * 2


async def test_every_survives_failing_steps_and_wakes_on_demand() -> None:
    calls: list[str] = []
    wake = asyncio.Event()

    async def step() -> None:
        calls.append("call")
        if len(calls) == 1:
            raise OSError("Too many open files")

    task = asyncio.create_task(every("step", 3600, step, first_delay=0, wake=wake))
    try:
        async with asyncio.timeout(10):
            while len(calls) < 1:  # no-deadline: bounded by the enclosing asyncio.timeout(10)
                await asyncio.sleep(0.01)
            wake.set()  # the failed step does not end the loop; waking runs the next one long before the hour
            while len(calls) < 2:  # no-deadline: bounded by the enclosing asyncio.timeout(10)
                await asyncio.sleep(0.01)
        assert not task.done()
    finally:
        task.cancel()


def test_log_throttle_lets_one_message_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    throttle = LogThrottle(interval=60, clock=lambda: now[0])
    assert throttle.allow() == 0
    assert [throttle.allow() for _ in range(1000)] == [None] * 1000
    now[0] = 61
    assert throttle.allow() == 1000

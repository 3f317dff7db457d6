"""The guarantees every front-door set shares, because they are the runtime's (`run`, `serve`, `seictl serve`, `local`).

Each set is built as its command builds it (`tests/faults/kit.py:front_doors`) and put through the same faults:

- the store write-locked by another process, or its volume full, while a task finishes: the outcome is held,
  `nodetask_store_up` reads 0 (and `/healthz` answers 503 where there is HTTP), and once the lock is released or the
  space freed the outcome is recorded and the gauge reads 1 again, without a restart;
- a stop (SIGTERM's flag) with a handler that ignores its cancellation: `NODETASK_SHUTDOWN_GRACE_SECONDS` bounds the
  wait, the steps the set has are taken in `SHUTDOWN_ORDER`, and the store records a clean stop;
- a second runner of any set on the same home, with another store, is refused and removes nothing (F16);
- every task listing a set serves (the agent's own, the Go sidecar's) is bounded in size and in listings at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.io.files import TEMP_SUFFIX
from agent.models import Task, TaskStatus, TaskType
from agent.models.params import TaskParams
from agent.runtime import SHUTDOWN_ORDER, AgentRuntime
from agent.store import SqliteStore
from agent.tasks import HandlerRegistry, HandlerSpec, TaskContext
from tests.faults.kit import (
    FRONT_DOOR_SETS,
    Volume,
    WriteLock,
    front_door_settings,
    front_doors,
    http_url,
    silent_api,
)
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.slow

GATED = TaskType.AWAIT_CONDITION
FIRST = "6b0f8f43-0d0e-4c39-9a43-1f7b2a5c0001"
STUBBORN = "6b0f8f43-0d0e-4c39-9a43-1f7b2a5c0002"
GRACE = 1.0
STEPS = {
    "run": SHUTDOWN_ORDER,
    "serve": ("engine", "background", "http-server", "store"),
    "seictl serve": ("engine", "background", "http-server", "store"),
    "local": ("engine", "background", "store"),
}


class GateParams(TaskParams):
    label: str = ""
    stubborn: bool = False
    blob: str = ""


class Gate:
    """`first` waits for `release`; a `stubborn` task ignores its cancellation for a minute."""

    def __init__(self) -> None:
        self.entered: dict[str, asyncio.Event] = {"first": asyncio.Event(), "stubborn": asyncio.Event()}
        self.release = asyncio.Event()

    async def handler(self, params: GateParams, ctx: TaskContext) -> dict[str, Any]:
        self.entered[params.label].set()
        if params.stubborn:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await asyncio.sleep(60)  # a cleanup far longer than the grace: the stop must not wait for it
            return {}
        await self.release.wait()
        return {"label": params.label}

    def registry(self) -> HandlerRegistry:
        return HandlerRegistry([HandlerSpec(GATED, GateParams, self.handler)])


def manifests(directory: Path) -> list[Path]:
    """The local plan: the gated task, then the stubborn one (the same tasks the other sets are given)."""
    directory.mkdir()
    for name, task_id, params in (
        ("01-first", FIRST, "{label: first}"),
        ("02-stubborn", STUBBORN, "{label: stubborn, stubborn: true}"),
    ):
        (directory / f"{name}.yaml").write_text(
            f"apiVersion: sei.io/v1alpha1\nkind: NodeTask\nmetadata: {{name: {name}}}\n"
            f"spec: {{targetPod: node-0, type: {GATED.value}, taskId: {task_id}, params: {params}}}\n"
        )
    return sorted(directory.iterdir())


class Fault:
    """The store locked by another process, or its volume full; `clear()` ends it."""

    def __init__(self, kind: str, store_path: Path, volume: Volume | None) -> None:
        self.kind, self.store_path, self.volume = kind, store_path, volume
        self._lock: WriteLock | None = None

    def inject(self) -> None:
        if self.kind == "locked":
            self._lock = WriteLock(self.store_path)
        else:
            assert self.volume is not None
            self.volume.fill()
            assert self.volume.full()

    def clear(self) -> None:
        if self._lock is not None:
            self._lock.release()
        if self.volume is not None:
            self.volume.free()


def store_up(runtime: AgentRuntime) -> float | None:
    return runtime.metrics.registry.get_sample_value("nodetask_store_up")


async def probe(url: str | None, path: str) -> int | None:
    if url is None:
        return None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session, session.get(url + path) as r:
        return r.status


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[Path]:
    with silent_api(tmp_path) as path:
        yield path


@pytest.fixture
async def started() -> AsyncIterator[Callable[[AgentRuntime], asyncio.Task[int]]]:
    """Runs runtimes in the background; any still running at the end is stopped."""
    runs: list[tuple[AgentRuntime, asyncio.Task[int]]] = []

    def start(runtime: AgentRuntime) -> asyncio.Task[int]:
        task = asyncio.create_task(runtime.run())
        runs.append((runtime, task))
        return task

    yield start
    for runtime, task in runs:
        runtime.stop_flag.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


@pytest.mark.parametrize("fault", ["locked", "full"])
@pytest.mark.parametrize("kind", FRONT_DOOR_SETS)
async def test_every_front_door_rides_out_a_store_fault_and_stops_within_the_grace_in_order(
    kind: str,
    fault: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    kubeconfig: Path,
    started: Callable[[AgentRuntime], asyncio.Task[int]],
) -> None:
    volume: Volume | None = request.getfixturevalue("store_volume") if fault == "full" else None
    home = (volume.path if volume is not None else tmp_path) / "home"
    home.mkdir()
    # A 4 MiB volume is far below the default free-space floor (NODETASK_MIN_FREE_BYTES): this test is about the
    # store's faults, so the floor is off (test_http_front_door.py covers the floor on this same volume).
    settings = front_door_settings(kind, home, shutdown_grace=GRACE, min_free_bytes=0)
    gate = Gate()
    runtime = front_doors(
        kind, settings, gate.registry(), kubeconfig=kubeconfig, manifests=manifests(tmp_path / "plan")
    )
    running = started(runtime)
    await wait_until(runtime.serving.is_set, what=f"{kind} to serve", unless_done=running)
    engine = runtime.running_engine
    if kind != "local":  # the local plan submits them itself, in this order
        await engine.submit(Task(id=FIRST, type=GATED, params={"label": "first"}))
    await asyncio.wait_for(gate.entered["first"].wait(), 10)
    url = http_url(runtime)
    assert store_up(runtime) == 1.0

    trouble = Fault(fault, settings.store_path, volume)
    try:
        trouble.inject()
        gate.release.set()  # the task finishes while its outcome cannot be stored
        await wait_until(lambda: not engine.store_health().ok, what="the store fault to be noticed", timeout=20)
        assert store_up(runtime) == 0.0
        assert await probe(url, "/healthz") in (None, 503)
        assert await probe(url, "/livez") in (None, 200)
        assert engine.is_running(FIRST)  # held, not lost
    finally:
        trouble.clear()
    done = await asyncio.wait_for(engine.wait(FIRST), 30)  # recorded once the fault ends, by the same process
    assert (done.status, done.result) == (TaskStatus.COMPLETED, {"label": "first"})
    await wait_until(lambda: store_up(runtime) == 1.0, what="nodetask_store_up back to 1")
    assert not running.done()

    if kind != "local":
        await engine.submit(Task(id=STUBBORN, type=GATED, params={"label": "stubborn", "stubborn": True}))
    await asyncio.wait_for(gate.entered["stubborn"].wait(), 10)
    runtime.stop_flag.set()  # what SIGTERM does
    await asyncio.wait_for(running, GRACE + 15)  # not the handler's minute: the grace bounds the wait
    assert runtime.steps == list(STEPS[kind])
    assert runtime.steps == [step for step in SHUTDOWN_ORDER if step in STEPS[kind]]
    with SqliteStore(settings.store_path, exclusive=True) as reopened:
        assert reopened.unclean_stops == 0
        row = reopened.get(STUBBORN)
        assert row is not None and row.status is TaskStatus.RUNNING  # left for the next start to resume


@pytest.mark.parametrize("kind", FRONT_DOOR_SETS)
async def test_a_second_runner_on_a_live_home_with_another_store_is_refused_and_removes_nothing(
    kind: str, tmp_path: Path, kubeconfig: Path, started: Callable[[AgentRuntime], asyncio.Task[int]]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    gate = Gate()
    live = front_doors("serve", front_door_settings("serve", home), gate.registry())
    running = started(live)
    await wait_until(live.serving.is_set, what="the live agent to serve", unless_done=running)
    in_flight = home / f"config.toml.{'x' * 8}{TEMP_SUFFIX}"
    in_flight.write_text("the live agent's write in progress")

    other = tmp_path / "other.db"
    second = front_doors(
        kind,
        front_door_settings(kind, home, db_path=other),
        gate.registry(),
        kubeconfig=kubeconfig,
        manifests=manifests(tmp_path / "plan"),
    )
    assert await asyncio.wait_for(second.run(), 30) == 1
    assert in_flight.exists()  # the live agent's temporary file is untouched
    assert not gate.entered["first"].is_set()  # nothing ran
    assert not running.done()


LISTINGS = {
    "run": ["/v0/tasks"],
    "serve": ["/v0/tasks", "/nodetask/v0/tasks"],
    "seictl serve": ["/v0/tasks", "/nodetask/v0/tasks"],
}


@pytest.mark.parametrize("kind", sorted(LISTINGS))
async def test_every_task_listing_is_bounded_in_size_and_concurrency(
    kind: str,
    tmp_path: Path,
    kubeconfig: Path,
    started: Callable[[AgentRuntime], asyncio.Task[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.server.limits import HEAVY_CONCURRENCY

    home = tmp_path / "home"
    home.mkdir()
    gate = Gate()
    gate.release.set()
    runtime = front_doors(kind, front_door_settings(kind, home), gate.registry(), kubeconfig=kubeconfig)
    running = started(runtime)
    await wait_until(runtime.serving.is_set, what=f"{kind} to serve", unless_done=running)
    engine = runtime.running_engine
    blob = "x" * 60_000  # 100 such rows: 6 MB of JSON, more than one answer may carry
    for _ in range(100):
        await engine.wait(await engine.submit(Task(type=GATED, params={"label": "first", "blob": blob})))
    url = http_url(runtime)
    assert url is not None

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for path in LISTINGS[kind]:
            async with session.get(url + path) as answer:
                assert answer.status == 200
                body = await answer.read()
            assert 0 < len(body) <= 4 * 1024 * 1024 + 1024, f"{path}: {len(body)} bytes"
            assert body.count(blob.encode()) >= 1

        # Listings that arrive while the limit is in use are refused at once, not queued.
        entered, release = asyncio.Semaphore(0), asyncio.Event()
        recent = engine.recent

        async def slow_recent(limit: int = 100) -> Any:
            entered.release()
            await release.wait()
            return await recent(limit)

        monkeypatch.setattr(engine, "recent", slow_recent)
        for path in LISTINGS[kind]:
            held = [asyncio.create_task(session.get(url + path)) for _ in range(HEAVY_CONCURRENCY)]
            try:
                for _ in range(HEAVY_CONCURRENCY):
                    await asyncio.wait_for(entered.acquire(), 10)
                async with session.get(url + path) as refused:
                    assert refused.status == 503, path
                    assert refused.headers.get("Retry-After") == "1"
            finally:
                release.set()
                for answer in await asyncio.gather(*held):
                    assert answer.status == 200
                    answer.release()
                release.clear()

"""The engine's disk budget (agent.engine.disk): a floor of free space on the home's volume and a budget for the
agent's own files there. The volume's free space comes from an injected `statvfs`; the agent's files are real."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.chain.broadcast import RECORD_DIR
from agent.engine import Engine
from agent.engine.disk import CACHE_SECONDS, DiskBudget
from agent.models import DiskBudgetExceeded, Reason, Task, TaskStatus, TaskType
from agent.models.params import TaskParams
from agent.models.settings import AgentSettings
from agent.store import SqliteStore
from agent.tasks import HandlerRegistry, HandlerSpec, TaskContext
from agent.tasks.readiness import HANDLERS as READINESS_HANDLERS
from tests.fixtures.waiting import wait_until

ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
WORK = TaskType.CONFIG_VALIDATE  # a real type name; the engine only cares that it is registered
BLOCK = 4096


class Volume:
    """The home's filesystem as `statvfs` reports it: `free` bytes available, each measurement counted."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.measured = 0

    def __call__(self, path: Path) -> os.statvfs_result:
        self.measured += 1
        blocks = self.free // BLOCK
        return os.statvfs_result((BLOCK, BLOCK, 1 << 20, blocks, blocks, 1000, 1000, 1000, 0, 255))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Params(TaskParams):
    label: str = ""


async def done(params: Params, ctx: TaskContext) -> dict[str, Any]:
    return {"label": params.label}


def _settings(home: Path, **changes: Any) -> AgentSettings:
    home.mkdir(parents=True, exist_ok=True)
    return AgentSettings(home=home, **changes)


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[list[Engine]]:
    engines: list[Engine] = []
    yield engines
    for engine in engines:
        await engine.shutdown(grace=1)
        await engine.store.close()


def _engine(opened: list[Engine], settings: AgentSettings, volume: Volume, clock: Clock | None = None) -> Engine:
    registry = HandlerRegistry([HandlerSpec(WORK, Params, done), *READINESS_HANDLERS])
    disk = DiskBudget(settings, statvfs=volume, clock=clock or Clock())
    engine = Engine(registry, SqliteStore(settings.store_path), settings, disk=disk)
    opened.append(engine)
    return engine


async def test_below_the_free_space_floor_a_new_task_is_refused_naming_the_setting_and_nothing_is_stored(
    tmp_path: Path, opened: list[Engine]
) -> None:
    settings = _settings(tmp_path / "home", min_free_bytes=10 * BLOCK)
    volume = Volume(free=9 * BLOCK)
    engine = _engine(opened, settings, volume)

    with pytest.raises(DiskBudgetExceeded) as refused:
        await engine.submit(Task(id=ID, type=WORK))
    error = refused.value
    assert error.reason == Reason.DISK_BUDGET_EXCEEDED and error.retryable
    assert f"{9 * BLOCK} bytes free" in error.message
    assert f"NODETASK_MIN_FREE_BYTES={10 * BLOCK}" in error.message
    assert await engine.get(ID) is None

    volume.free = 10 * BLOCK  # at the floor: room again (once the cached measurement expires)
    engine._disk.forget()
    result = await engine.wait(await engine.submit(Task(id=ID, type=WORK)), timeout=10)
    assert result.status is TaskStatus.COMPLETED


@pytest.mark.parametrize("task_type", [TaskType.MARK_NOT_READY, TaskType.MARK_READY])
async def test_readiness_tasks_are_never_refused_by_the_disk_budget(
    tmp_path: Path, opened: list[Engine], task_type: TaskType
) -> None:
    settings = _settings(tmp_path / "home", min_free_bytes=1 << 30, store_budget_bytes=1)
    engine = _engine(opened, settings, Volume(free=0))
    result = await engine.wait(await engine.submit(Task(type=task_type)), timeout=10)
    assert result.status is TaskStatus.COMPLETED


async def test_a_known_id_is_still_the_idempotent_no_op_when_the_budget_is_spent(
    tmp_path: Path, opened: list[Engine]
) -> None:
    settings = _settings(tmp_path / "home", min_free_bytes=BLOCK)
    volume = Volume(free=1 << 30)
    engine = _engine(opened, settings, volume)
    await engine.wait(await engine.submit(Task(id=ID, type=WORK)), timeout=10)
    volume.free = 0
    engine._disk.forget()
    assert await engine.submit(Task(id=ID, type=WORK)) == ID  # completed: nothing would start


async def test_over_the_store_budget_new_tasks_are_refused_and_retention_runs_at_once(
    tmp_path: Path, opened: list[Engine]
) -> None:
    settings = _settings(tmp_path / "home", retention_count=1000)
    engine = _engine(opened, settings, Volume(free=1 << 30))
    ids = [await engine.submit(Task(type=WORK, params={"label": str(n)})) for n in range(5)]
    for task_id in ids:
        await engine.wait(task_id, timeout=10)
    # Under the budget without the tx record, over it with it: a tx record counts toward the agent's files (the
    # margin leaves room for what the store itself writes meanwhile, its WAL included).
    budget = DiskBudget(settings.model_copy(update={"store_budget_bytes": 1})).usage().agent_bytes + 200_000
    records = settings.home / RECORD_DIR
    records.mkdir()
    (records / f"{ID}.json").write_bytes(b"x" * 1_000_000)
    settings_over = settings.model_copy(update={"store_budget_bytes": budget, "retention_count": 2})
    engine._settings = settings_over
    engine._disk = DiskBudget(settings_over, statvfs=Volume(free=1 << 30))
    with pytest.raises(DiskBudgetExceeded, match=f"NODETASK_STORE_BUDGET_BYTES={budget}") as refused:
        await engine.submit(Task(type=WORK))
    assert refused.value.value > budget
    # Retention ran at once, without waiting for finishes or the hourly prune: the newest two finished rows remain.
    await wait_until(lambda: engine._pruning is not None and engine._pruning.done(), what="the budget's prune")
    assert [row.id for row in await engine.recent(100)] == list(reversed(ids))[:2]

    (records / f"{ID}.json").unlink()  # back under the budget: the next submission measures again and runs
    result = await engine.wait(await engine.submit(Task(type=WORK)), timeout=10)
    assert result.status is TaskStatus.COMPLETED


async def test_a_flood_measures_the_volume_at_most_once_per_cache_period(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "home", min_free_bytes=BLOCK)
    volume, clock = Volume(free=0), Clock()
    budget = DiskBudget(settings, statvfs=volume, clock=clock)
    refusals = [budget.refusal() for _ in range(500)]
    assert all(refusal is not None for refusal in refusals) and volume.measured == 1
    clock.now += CACHE_SECONDS
    volume.free = 1 << 30
    assert budget.refusal() is None and volume.measured == 2


@pytest.mark.parametrize(
    ("changes", "free"),
    [
        ({"min_free_bytes": 0, "store_budget_bytes": 0}, 0),  # both off
        ({"min_free_bytes": BLOCK}, None),  # a home that cannot be measured is never evidence of a full volume
    ],
    ids=["bounds-off", "unmeasurable-home"],
)
def test_the_budget_refuses_only_on_evidence(tmp_path: Path, changes: dict[str, int], free: int | None) -> None:
    def statvfs(path: Path) -> os.statvfs_result:
        if free is None:
            raise FileNotFoundError(path)
        return Volume(free)(path)

    settings = _settings(tmp_path / "home", **changes)
    assert DiskBudget(settings, statvfs=statvfs).refusal() is None


def test_the_default_budget_reads_the_real_home(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "home", min_free_bytes=1)
    usage = DiskBudget(settings).usage()
    stats = os.statvfs(settings.home)
    assert usage.free_bytes is not None and 0 < usage.free_bytes <= stats.f_blocks * stats.f_frsize

"""The seictl-compatible task API as an attacker meets it (issue 21: B2, B6, B8/B9, the unbounded listing).

Real HTTP to the real app (`AgentServer` with the task API mounted, as `seictl serve` and `nodetask-agent serve` build
it), a real engine and SQLite store, real handlers:

- B2: without `SEI_SIDECAR_AUTHN_MODE` the task API binds loopback only, whatever host was asked; only the explicit
  `unauthenticated` serves every interface, with a WARNING at start, the mode in `/v0/status`, and every mutating
  request logged with its peer.
- B6: a NodeTask's task ID cannot be driven over HTTP (409 naming the NodeTask, nothing changes); a re-run that names
  no deadline keeps the task's own.
- B8/B9: queued + running tasks are capped (HTTP 429 naming NODETASK_MAX_TASKS, TaskRejected for the other front
  doors; readiness tasks never refused), and finished tasks are kept by count as well as by age.
- `GET /v0/tasks`: 64 parallel listings are served at most `HEAVY_CONCURRENCY` at a time (others 503 + Retry-After),
  each holding at most one page of rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.engine import Engine
from agent.models import Reason, ResourceRef, Task, TaskResult, TaskStatus, TaskType, TooManyTasks
from agent.models.settings import AgentSettings
from agent.server import AgentMetrics, AgentServer, app, seictl
from agent.server.limits import HEAVY_CONCURRENCY
from agent.store import SqliteStore
from agent.tasks import default_registry
from tests.faults.kit import Volume
from tests.fixtures.waiting import wait_until

ID_A = "5d0c6f0e-1d1c-4a7e-9c53-1f6f0b1f2a0a"
ID_B = "5d0c6f0e-1d1c-4a7e-9c53-1f6f0b1f2a0b"
OWNER = ResourceRef(namespace="sei", name="patch-app", uid="5d0c6f0e-0000-4000-8000-000000000001")
BROKEN_PATCH = {"files": {"app.toml": {"halt-height": 0}}}


def _settings(home: Path, **changes: Any) -> AgentSettings:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text('moniker = "node-0"\n')
    (home / "config" / "app.toml").write_text("this is = = not toml\n")  # config-patch of app.toml fails on it
    return AgentSettings(home=home, **changes)


class Door:
    """The task API over HTTP, its engine and server."""

    def __init__(self, server: AgentServer, engine: Engine, home: Path) -> None:
        self.server, self.engine, self.home = server, engine, home
        self.session = aiohttp.ClientSession(base_url=server.url)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        async with self.session.request(method, path, json=body) as answer:
            payload = await answer.read()
            parsed = json.loads(payload) if answer.content_type == "application/json" and payload else payload
            return answer.status, parsed, dict(answer.headers)


@pytest.fixture
async def door_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Door] = []

    async def open_door(host: str = "127.0.0.1", *, mounted: bool = True, **changes: Any) -> Door:
        settings = _settings(tmp_path / f"home-{len(opened)}", **changes)
        engine = Engine(default_registry(), SqliteStore(settings.store_path), settings)
        server = AgentServer(
            engine,
            AgentMetrics(),
            host=host,
            port=0,
            seictl_settings=settings if mounted else None,
            authn_mode=settings.authn_mode,
        )
        await server.start()
        door = Door(server, engine, settings.home)
        opened.append(door)
        return door

    try:
        yield open_door
    finally:
        for door in opened:
            await door.session.close()
            await door.server.stop()
            await door.engine.shutdown(grace=2)
            await door.engine.store.close()


# -------------------------------------------------------------------------------------------------- B2 open by default


@pytest.mark.parametrize(
    ("authn_mode", "mounted", "bound", "warning"),
    [
        ("unset", True, "127.0.0.1", "SEI_SIDECAR_AUTHN_MODE is not set: the task API listens on 127.0.0.1"),
        ("unauthenticated", True, "0.0.0.0", "SEI_SIDECAR_AUTHN_MODE=unauthenticated: the task API on 0.0.0.0"),
        ("trusted-header", True, "127.0.0.1", None),
        ("unset", False, "0.0.0.0", None),  # `run` without the task API: probes and read-only views, as before
    ],
    ids=["unset-loopback", "explicit-unauthenticated", "trusted-header", "no-task-api"],
)
async def test_the_task_api_is_served_beyond_loopback_only_when_unauthenticated_is_explicit(
    door_factory: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    authn_mode: str,
    mounted: bool,
    bound: str,
    warning: str | None,
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.server.app"):
        door = await door_factory("0.0.0.0", mounted=mounted, authn_mode=authn_mode)
    runner = door.server._runner
    assert runner is not None
    assert [address[0] for address in runner.addresses] == [bound]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(warning), warnings


@pytest.mark.parametrize("authn_mode", ["unset", "unauthenticated"])
async def test_status_shows_the_authentication_mode(door_factory: Callable[..., Any], authn_mode: str) -> None:
    door = await door_factory(authn_mode=authn_mode)
    for path in ("/v0/status", "/nodetask/v0/status"):
        status, body, _ = await door.call("GET", path)
        assert status == 200 and body["authn"] == authn_mode


async def test_every_mutating_request_is_logged_with_its_peer(
    door_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    door = await door_factory(authn_mode="unauthenticated")
    with caplog.at_level(logging.INFO, logger="agent.server.audit"):
        status, _, _ = await door.call("POST", "/v0/tasks", {"id": ID_A, "type": "mark-not-ready"})
        assert status == 201
        assert (await door.call("DELETE", f"/v0/tasks/{ID_B}"))[0] == 404
        assert (await door.call("GET", "/v0/tasks"))[0] == 200  # reads are not audited
    lines = [record.getMessage() for record in caplog.records if record.name == "agent.server.audit"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("POST /v0/tasks from 127.0.0.1:") and lines[0].endswith(
        "(authentication: unauthenticated): 201"
    )
    assert lines[1].startswith(f"DELETE /v0/tasks/{ID_B} from 127.0.0.1:") and lines[1].endswith(": 404")


# ------------------------------------------------------------------------------------------- B6 a NodeTask's task ID


async def test_http_resubmit_of_a_nodetasks_failed_task_is_refused(door_factory: Callable[..., Any]) -> None:
    door = await door_factory()
    owned = Task(id=ID_A, type="config-patch", params=BROKEN_PATCH, timeout_seconds=60, source=OWNER)
    await door.engine.submit(owned)
    failed = await door.engine.wait(ID_A, timeout=20)
    assert failed.status is TaskStatus.FAILED and failed.run == 1
    (door.home / "config" / "app.toml").write_text("# fixed\n")  # a re-run would now succeed: it must not happen

    status, body, _ = await door.call("POST", "/v0/tasks", {"id": ID_A, "type": "config-patch", "params": BROKEN_PATCH})
    assert status == 409
    assert "NodeTask sei/patch-app" in body["error"] and body["error"].startswith(Reason.TASK_OWNED)
    row = await door.engine.get(ID_A)
    assert row is not None and (row.status, row.run, row.timeout_seconds) == (TaskStatus.FAILED, 1, 60)
    # A running or finished NodeTask task is refused the same way, never answered as the HTTP caller's own.
    await door.engine.submit(Task(id=ID_B, type="mark-not-ready", source=OWNER))
    await door.engine.wait(ID_B, timeout=20)
    status, body, _ = await door.call("POST", "/v0/tasks", {"id": ID_B, "type": "mark-not-ready"})
    assert status == 409 and "NodeTask sei/patch-app" in body["error"]


async def test_a_rerun_that_names_no_deadline_keeps_the_tasks_own(door_factory: Callable[..., Any]) -> None:
    door = await door_factory()
    await door.engine.submit(Task(id=ID_A, type="config-patch", params=BROKEN_PATCH, timeout_seconds=45))
    assert (await door.engine.wait(ID_A, timeout=20)).status is TaskStatus.FAILED
    # The HTTP API carries no deadline: its re-submit of the failed ID runs it again within the original's.
    status, _, _ = await door.call("POST", "/v0/tasks", {"id": ID_A, "type": "config-patch", "params": BROKEN_PATCH})
    assert status == 201
    rerun = await door.engine.wait(ID_A, timeout=20)
    assert (rerun.run, rerun.timeout_seconds) == (2, 45)


# ---------------------------------------------------------------------------------------- B8/B9 bounded work per client


async def test_queued_and_running_tasks_are_capped_on_every_front_door(
    door_factory: Callable[..., Any], refused_port: Callable[..., int]
) -> None:
    door = await door_factory(max_tasks=2)
    waiting = {"condition": "height", "targetHeight": 10, "rpcEndpoint": f"http://127.0.0.1:{refused_port()}"}
    for task_id in (ID_A, ID_B):
        status, _, _ = await door.call(
            "POST", "/v0/tasks", {"id": task_id, "type": "await-condition", "params": waiting}
        )
        assert status == 201
    assert len(door.engine.running()) == 2

    status, body, headers = await door.call("POST", "/v0/tasks", {"type": "await-condition", "params": waiting})
    assert status == 429 and headers["Retry-After"] == "1"
    assert body["error"].startswith(Reason.TOO_MANY_TASKS) and "NODETASK_MAX_TASKS=2" in body["error"]
    # The other front doors (NodeTask, local) get a TaskRejected naming the cap; nothing is stored.
    with pytest.raises(TooManyTasks, match="NODETASK_MAX_TASKS=2"):
        await door.engine.submit(Task(type="await-condition", params=waiting, source=OWNER))
    assert len(await door.engine.recent(10)) == 2
    # At the cap: a known ID is still the idempotent no-op, and a hold is never refused.
    assert (await door.call("POST", "/v0/tasks", {"id": ID_A, "type": "await-condition", "params": waiting}))[0] == 201
    assert (await door.call("POST", "/v0/tasks", {"type": "mark-not-ready"}))[0] == 201
    # Room again once one ends.
    assert (await door.call("DELETE", f"/v0/tasks/{ID_A}"))[0] == 204
    await wait_until(lambda: len(door.engine.running()) == 1, what="the deleted task to stop")
    assert (await door.call("POST", "/v0/tasks", {"type": "await-condition", "params": waiting}))[0] == 201


async def test_finished_tasks_are_kept_by_count_as_well_as_by_age(tmp_path: Path) -> None:
    settings = _settings(tmp_path, retention_count=3)
    engine = Engine(default_registry(), SqliteStore(settings.store_path), settings)
    try:
        ids = []
        for number in range(8):
            ids.append(await engine.submit(Task(type="config-patch", params={"files": {"config.toml": {"x": number}}})))
            await engine.wait(ids[-1], timeout=20)
        await wait_until(lambda: engine._pruning is None or engine._pruning.done(), what="the count prune")
        kept = [row.id for row in await engine.recent(100)]
        assert kept == list(reversed(ids))[:3], "the newest three, whatever their age"
    finally:
        await engine.shutdown()
        await engine.store.close()


def test_prune_by_count_keeps_running_rows_and_readiness_history(tmp_path: Path) -> None:
    from agent.models import utcnow

    store = SqliteStore(tmp_path / "agent.db")
    try:
        rows = [
            TaskResult(id=f"5d0c6f0e-1d1c-4a7e-9c53-0000000000{n:02d}", type=kind, status=status, submitted_at=utcnow())
            for n, (kind, status) in enumerate(
                [
                    (TaskType.MARK_READY, TaskStatus.COMPLETED),
                    (TaskType.CONFIG_PATCH, TaskStatus.RUNNING),
                    (TaskType.CONFIG_PATCH, TaskStatus.FAILED),
                    (TaskType.CONFIG_PATCH, TaskStatus.COMPLETED),
                    (TaskType.CONFIG_PATCH, TaskStatus.COMPLETED),
                ]
            )
        ]
        store.save_many(rows)
        far_past = utcnow().replace(year=2000)
        assert store.prune(far_past, keep_newest=1) == 2  # the two older finished config-patches
        assert {row.id for row in store.list(10)} == {rows[0].id, rows[1].id, rows[4].id}
    finally:
        store.close()


# ------------------------------------------------------------------------------------------- GET /v0/tasks is bounded


async def test_parallel_task_listings_are_bounded_in_concurrency_and_rows_held(
    door_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    door = await door_factory()
    ids = [await door.engine.submit(Task(type="mark-not-ready")) for _ in range(25)]
    for task_id in ids:
        await door.engine.wait(task_id, timeout=20)
    monkeypatch.setattr(seictl, "LIST_PAGE", 10)
    in_flight, most, pages = 0, 0, []
    recent = door.engine.recent

    async def watched(limit: int = 100, *, after: TaskResult | None = None) -> list[TaskResult]:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.01)  # let the parallel listings overlap
            rows = await recent(limit, after=after)
            pages.append(len(rows))
            return rows
        finally:
            in_flight -= 1

    monkeypatch.setattr(door.engine, "recent", watched)
    answers = await asyncio.gather(*(door.call("GET", "/v0/tasks") for _ in range(64)))
    served = [body for status, body, _ in answers if status == 200]
    refused = [(body, headers) for status, body, headers in answers if status == 503]
    assert len(served) + len(refused) == 64 and served
    assert all(headers["Retry-After"] == "1" and "at most" in body["error"] for body, headers in refused)
    assert most <= HEAVY_CONCURRENCY, "listings beyond the bound were refused, not queued in memory"
    assert max(pages) <= 10, "a listing holds one page of rows at a time"
    newest_first = list(reversed(ids))
    assert all([task["id"] for task in body] == newest_first for body in served), "every page, in order"
    # The agent's own listing shares the same bound.
    heavy = door.server.app[app._CONTEXT].heavy
    for _ in range(HEAVY_CONCURRENCY):
        await heavy.acquire()
    try:
        assert (await door.call("GET", "/v0/tasks"))[0] == 503
        assert (await door.call("GET", "/nodetask/v0/tasks"))[0] == 503
    finally:
        for _ in range(HEAVY_CONCURRENCY):
            heavy.release()


async def test_an_http_flood_on_a_nearly_full_home_volume_is_refused_naming_the_floor_and_writes_nothing(
    store_volume: Volume,
) -> None:
    floor = 2 << 20
    settings = _settings(store_volume.path / "home", min_free_bytes=floor)
    # Leave less than the floor free, but room the store could still write into: the budget refuses, not the disk.
    (store_volume.path / "filler").write_bytes(b"\0" * (_free(store_volume) - floor + (256 << 10)))
    engine = Engine(default_registry(), SqliteStore(settings.store_path), settings)
    server = AgentServer(engine, AgentMetrics(), host="127.0.0.1", port=0, seictl_settings=settings)
    await server.start()
    door = Door(server, engine, settings.home)
    try:
        free = _free(store_volume)
        assert 0 < free < floor
        before = _sizes(settings.home)
        patch = {"type": "config-patch", "params": {"files": {"config.toml": {"x": 1}}}}
        answers = await asyncio.gather(*(door.call("POST", "/v0/tasks", patch) for _ in range(100)))
        for status, body, headers in answers:
            assert status == 507 and headers["Retry-After"] == "1", (status, body)
            assert body["error"].startswith(Reason.DISK_BUDGET_EXCEEDED)
            assert f"NODETASK_MIN_FREE_BYTES={floor}" in body["error"] and "bytes free" in body["error"]
        assert await engine.recent(10) == []
        assert _sizes(settings.home) == before, "a refused flood writes nothing into the home"
        # A hold is never refused, even here.
        assert (await door.call("POST", "/v0/tasks", {"type": "mark-not-ready"}))[0] == 201
    finally:
        await door.session.close()
        await server.stop()
        await engine.shutdown(grace=2)
        await engine.store.close()


def _free(volume: Volume) -> int:
    stats = os.statvfs(volume.path)
    return stats.f_bavail * stats.f_frsize


def _sizes(home: Path) -> dict[str, int]:
    """Every file under `home` and its size (SQLite's `-shm` index excluded: readers map it at a fixed size)."""
    return {str(path): path.stat().st_size for path in home.rglob("*") if path.is_file() and path.suffix != ".db-shm"}

"""Rules that need the agent's settings or a handler's registry are checked before a task runs, in `check_task`:
the engine before every run, the HTTP API's check and `local --check` share them (agent/tasks/prechecks.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.engine import Engine, check_task
from agent.models import ParamsInvalid, Reason, ResourceRef, Task, TaskStatus, TaskType
from agent.models.settings import AgentSettings
from agent.server.seictl import RequestRefused, parse_task_request
from agent.store import SqliteStore
from agent.tasks import default_registry

NO_BUCKET = AgentSettings(home=Path("/nonexistent"), chain_id="test-chain")
WITH_BUCKET = AgentSettings(home=Path("/nonexistent"), chain_id="test-chain", genesis_bucket="genesis")
NO_CHAIN = AgentSettings(home=Path("/nonexistent"))
RELOAD_PRUNING = (TaskType.CONFIG_RELOAD, {"fields": {"storage.pruning": "nothing"}})
UPLOAD = (TaskType.UPLOAD_GENESIS_ARTIFACTS, {"nodeName": "node-0"})


@pytest.mark.parametrize(
    ("task_type", "params", "settings", "problem"),
    [
        (*RELOAD_PRUNING, NO_BUCKET, r"params\.fields: \['storage\.pruning'\] are not hot-reloadable"),
        (TaskType.CONFIG_RELOAD, {"fields": {"logging.level": "debug"}}, NO_BUCKET, None),
        (TaskType.CONFIG_RELOAD, {"fields": {"logging.levle": "debug"}}, NO_BUCKET, r"unknown config key"),
        (*UPLOAD, NO_BUCKET, r"params\.bucket: not given, and SEI_GENESIS_BUCKET is not set"),
        (*UPLOAD, WITH_BUCKET, None),
        (TaskType.EXPORT_STATE, {"bucket": "mine"}, NO_BUCKET, None),
        (TaskType.EXPORT_STATE, {}, NO_BUCKET, r"params\.bucket"),
        (TaskType.SET_GENESIS_PEERS, {}, NO_BUCKET, r"params\.bucket: no bucket given and SEI_GENESIS_BUCKET"),
        (TaskType.SET_GENESIS_PEERS, {"bucket": "Bad_Bucket"}, NO_BUCKET, r"bucket"),
        (
            TaskType.SNAPSHOT_UPLOAD_ONCE,
            {},
            NO_BUCKET,
            r"params\.bucket: no bucket given and SEI_SNAPSHOT_BUCKET is not set",
        ),
        (TaskType.SNAPSHOT_UPLOAD_ONCE, {"bucket": "snaps"}, NO_BUCKET, None),
        (TaskType.SNAPSHOT_UPLOAD_ONCE, {"bucket": "snaps"}, NO_CHAIN, r"params\.prefix: not given"),
        (TaskType.SNAPSHOT_UPLOAD_ONCE, {"bucket": "snaps", "prefix": "p/"}, NO_CHAIN, None),
    ],
)
def test_check_task_applies_the_handlers_precheck_under_the_given_settings(
    task_type: TaskType, params: dict[str, Any], settings: AgentSettings, problem: str | None
) -> None:
    task = Task(type=task_type, params=params)
    if problem is None:
        check_task(default_registry(), task, settings)
    else:
        with pytest.raises(ParamsInvalid, match=problem):
            check_task(default_registry(), task, settings)


def test_without_settings_only_the_params_model_is_checked() -> None:
    check_task(default_registry(), Task(type=UPLOAD[0], params=UPLOAD[1]))


async def test_the_engine_fails_a_task_its_precheck_refuses_before_the_handler_runs(
    tmp_path: Path, settings: AgentSettings
) -> None:
    (tmp_path / "home" / "config").mkdir(parents=True, exist_ok=True)
    store = SqliteStore(tmp_path / "agent.db")
    engine = Engine(default_registry(), store, settings)
    try:
        source = ResourceRef(namespace="sei", name="reload")
        task_id = await engine.submit(Task(type=RELOAD_PRUNING[0], params=RELOAD_PRUNING[1], source=source))
        row = await engine.wait(task_id, timeout=10)
        assert (row.status, row.reason) == (TaskStatus.FAILED, Reason.PARAMS_INVALID)
        assert row.error.startswith("params.fields: ['storage.pruning'] are not hot-reloadable")
        with pytest.raises(ParamsInvalid, match=r"params\.fields"):  # the HTTP API's check says the same
            engine.check(Task(type=RELOAD_PRUNING[0], params=RELOAD_PRUNING[1]))
    finally:
        await engine.shutdown(grace=1)
        store.close()


def test_the_seictl_task_api_refuses_at_submission_what_a_precheck_refuses(tmp_path: Path) -> None:
    settings = AgentSettings(home=tmp_path)  # no SEI_GENESIS_BUCKET
    request = {"type": "assemble-and-upload-genesis", "params": {"accountBalance": "1usei", "nodes": [{"name": "v0"}]}}
    store = SqliteStore(tmp_path / "store.db")
    try:
        with pytest.raises(RequestRefused, match=r"params\.bucket: not given, and SEI_GENESIS_BUCKET is not set"):
            parse_task_request(json.dumps(request).encode(), settings, Engine(default_registry(), store, settings))
    finally:
        store.close()

"""An incremental config-apply on homes the real `seid init` writes now, every mode: only the overridden lines
change, every other byte of config.toml, app.toml and client.toml stays (the same cases as the recorded homes in
tests/tasks/test_config_seid_init.py, so a seid that writes its files differently is caught here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.models import TaskStatus, TaskType
from agent.models.settings import AgentSettings
from tests.chain_real.conftest import InProcessAgent
from tests.tasks.test_config_seid_init import INCREMENTAL_CASES, REFUSED, changed_lines

from .conftest import SEID_MARKS, bare_seid_home

pytestmark = SEID_MARKS
FILES = ("config.toml", "app.toml", "client.toml")


@pytest.mark.parametrize("case", INCREMENTAL_CASES)
@pytest.mark.parametrize("mode", ["validator", "full", "seed", "archive"])
async def test_an_incremental_apply_on_a_fresh_seid_init_home_keeps_every_other_byte(
    seid_binary: Path, tmp_path: Path, mode: str, case: str
) -> None:
    node = bare_seid_home(seid_binary, tmp_path / "home")
    node.seid("init", f"node-{mode}", "--chain-id", "seid-real", "--mode", mode)
    before = {name: (node.config_dir / name).read_bytes() for name in FILES}
    overrides, expected = INCREMENTAL_CASES[case]
    agent = InProcessAgent(AgentSettings(home=node.home, chain_id="seid-real", pod_name="node-0", pod_namespace="t"))
    try:
        result = await agent.run(TaskType.CONFIG_APPLY, {"incremental": True, "overrides": overrides})
    finally:
        await agent.close()

    after = {name: (node.config_dir / name).read_bytes() for name in FILES}
    if (mode, case) in REFUSED:
        assert (result.status, result.reason) == (TaskStatus.FAILED, "ConfigInvalid")
        assert after == before
        return
    assert result.status == TaskStatus.COMPLETED, result.error
    changes = {name: set(changed_lines(before[name].decode(), after[name].decode())) for name in FILES}
    assert {name: lines for name, lines in changes.items() if lines} == expected

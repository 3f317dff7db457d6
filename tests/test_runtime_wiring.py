"""The process is put together once: only the runtime builds a runner's engine and store (docs/design.md section 2).

A front door that built its own would drift from the others (it happened: `serve` once ran without the store's
recovery probe, so a lock released after 5 s wedged it for good); `tests/faults/test_front_doors.py` shows what the
runtime guarantees on every front door, this test that no front door can step around it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.models.settings import AgentSettings
from agent.runtime import AgentRuntime, FrontDoor

AGENT = Path(__file__).resolve().parents[1] / "agent"
BUILDERS = {
    "Engine(": {"runtime/process.py"},
    "SqliteStore(": {"runtime/process.py", "store/sqlite.py"},  # the store module's own memory_store()
}


@pytest.mark.parametrize("call", sorted(BUILDERS))
def test_only_the_runtime_builds_an_engine_or_a_runner_store(call: str) -> None:
    pattern = re.compile(rf"(?<![\w.]){re.escape(call)}")
    builders = set()
    for path in AGENT.rglob("*.py"):
        code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines() if "`" not in line)
        if pattern.search(code):
            builders.add(str(path.relative_to(AGENT)))
    assert builders == BUILDERS[call]


def test_a_process_has_at_most_one_main_front_door(tmp_path: Path) -> None:
    class Main(FrontDoor):
        main = True

    with pytest.raises(ValueError, match="at most one main front door"):
        AgentRuntime(AgentSettings(home=tmp_path), [Main(), Main()])

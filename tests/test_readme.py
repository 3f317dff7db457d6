"""The README's promises: every task type is in its task table with a reference page, and the two commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.models import TaskType
from agent.tasks import default_registry

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("task_type", [str(t) for t in TaskType])
def test_every_task_type_has_a_handler_a_readme_row_and_a_reference_page(task_type: str) -> None:
    assert default_registry().get(task_type) is not None
    assert f"| `{task_type}` |" in README
    page = REPO / "docs" / "tasks" / f"{task_type}.md"
    assert page.exists()
    assert "apiVersion: sei.io/v1alpha1" in page.read_text()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = re.findall(r"^\./(scripts/\S+)", README, flags=re.MULTILINE)
    assert commands[:2] == ["scripts/quickstart.sh", "scripts/test.sh"]
    assert "exec scripts/test.sh" in (REPO / ".ci" / "run").read_text()

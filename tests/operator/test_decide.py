"""The reconcile decision table (agent.operator.decide), row for row, without an API server.

Each case names the table row it exercises; the rows and their actions are read from docs/operator.md and from the
module's docstring, so the documented table, the code's table and these cases cannot drift apart."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from agent.models import TaskResult, TaskStatus
from agent.operator import decide as decide_module
from agent.operator.decide import Action, Situation, decide, written_by

ROOT = Path(__file__).resolve().parents[2]
TASK = "5d7c1a2b-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
ME = ("node-0", "c0ffee00-0000-4000-8000-000000000001", "session-now")
EARLIER = ("node-0", "c0ffee00-0000-4000-8000-000000000001", "session-before")
AUTHORS = frozenset({ME, EARLIER})
BOGUS_UID = ("node-0", "00000000-0000-4000-8000-00000000bad0", "session-now")
BOGUS_SESSION = ("node-0", ME[1], "forged")
OTHER_POD = ("node-1", ME[1], ME[2])


def status(phase: str, *, author: tuple[str, str, str] | None = ME, run: int = 1, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"phase": phase, "taskId": TASK, "run": run, "completedAt": "2026-12-07T10:00:00Z"}
    if author is not None:
        body["agent"] = {"pod": author[0], "podUID": author[1], "session": author[2]}
    return {**body, **extra}


def row(state: TaskStatus, *, run: int = 1, nonce: str | None = None) -> TaskResult:
    return TaskResult(id=TASK, type="mark-ready", status=state, run=run, retry_nonce=nonce)


RUNNING, COMPLETED, FAILED, CANCELLED = (
    row(TaskStatus.RUNNING),
    row(TaskStatus.COMPLETED),
    row(TaskStatus.FAILED),
    row(TaskStatus.CANCELLED),
)


@dataclass(frozen=True)
class Case:
    table_row: str
    situation: Situation
    expire: bool = False
    overwrite: bool = False


def case(table_row: str, *, expire: bool = False, overwrite: bool = False, **situation: Any) -> Case:
    return Case(table_row, Situation(task_id=TASK, authors=AUTHORS, **situation), expire, overwrite)


CASES: dict[str, Case] = {
    "deleted while running": case("deleted-running", deleted=True, row=RUNNING),
    "deleted while running, whatever its status says": case(
        "deleted-running", deleted=True, row=RUNNING, status=status("Succeeded", author=BOGUS_UID)
    ),
    "deleted after it finished": case("deleted-finished", deleted=True, row=COMPLETED, status=status("Succeeded")),
    "deleted with no row": case("deleted-finished", deleted=True),
    "another resource's work under the same ID": case("conflict", row=COMPLETED, conflict=True),
    "deleted, another resource's running work under the same ID": case(
        "deleted-finished", row=RUNNING, conflict=True, deleted=True
    ),
    "cancel while running": case("cancel-running", cancel=True, row=RUNNING, status=status("Running")),
    "cancel while running under a forged outcome: no TTL": case(
        "cancel-running", cancel=True, row=RUNNING, status=status("Succeeded", author=BOGUS_UID)
    ),
    "cancel before it started": case("cancel-new", cancel=True),
    "cancelled before it started, the agent's status seen again": case(
        "cancel-new", cancel=True, status=status("Cancelled"), expire=True
    ),
    "cancel before it started under a forged outcome": case(
        "cancel-new", cancel=True, status=status("Cancelled", author=BOGUS_SESSION), overwrite=True
    ),
    "cancel after it finished": case(
        "cancel-finished", cancel=True, row=COMPLETED, status=status("Succeeded"), expire=True
    ),
    "a new task": case("new"),
    "a new task with a status that is not terminal": case("new", status=status("Running", author=BOGUS_UID)),
    "a terminal status of another task ID": case("new", status=status("Succeeded", taskId="another")),
    "refused for now at submit (TooManyTasks), Pending": case(
        "refused-retryable", status=status("Pending", reason="TooManyTasks", completedAt=None)
    ),
    "refused for now, a status of an earlier session of this agent": case(
        "refused-retryable", status=status("Pending", author=EARLIER, reason="TooManyTasks")
    ),
    "refused for now, ended Failed by this agent: not an outcome, no TTL": case(
        "refused-retryable", status=status("Failed", reason="TooManyTasks")
    ),
    "a forged Failed TooManyTasks": case(
        "foreign-outcome", status=status("Failed", author=BOGUS_UID, reason="TooManyTasks"), overwrite=True
    ),
    "refused for now, since cancelled": case(
        "cancel-new", cancel=True, status=status("Pending", reason="TooManyTasks")
    ),
    "its own outcome, row pruned": case("own-outcome", status=status("Succeeded"), expire=True),
    "its own Failed outcome for another reason, row pruned": case(
        "own-outcome", status=status("Failed", reason="TaskFailed"), expire=True
    ),
    "an outcome of an earlier session of this agent, row pruned": case(
        "own-outcome", status=status("Failed", author=EARLIER), expire=True
    ),
    "a terminal status without an agent (F5)": case(
        "foreign-outcome", status=status("Succeeded", author=None), overwrite=True
    ),
    "a terminal status naming this pod with a bogus UID (F5)": case(
        "foreign-outcome", status=status("Succeeded", author=BOGUS_UID), overwrite=True
    ),
    "a terminal status naming this pod and UID with a bogus session (F5)": case(
        "foreign-outcome", status=status("Succeeded", author=BOGUS_SESSION), overwrite=True
    ),
    "a terminal status naming this pod with no UID or session": case(
        "foreign-outcome", status=status("Succeeded", author=("node-0", "", "")), overwrite=True
    ),
    "a terminal status written by another pod's agent": case(
        "foreign-outcome", status=status("Succeeded", author=OTHER_POD), overwrite=True
    ),
    "a new retryNonce on a failed task": case(
        "retry-nonce", row=row(TaskStatus.FAILED, nonce="1"), retry_nonce="2", status=status("Failed"), expire=True
    ),
    "a new retryNonce under a forged Failed status": case(
        "retry-nonce", row=row(TaskStatus.FAILED, nonce="1"), retry_nonce="2", status=status("Failed", author=BOGUS_UID)
    ),
    "a forged Succeeded on a running task (B5)": case(
        "forged-on-running", row=RUNNING, status=status("Succeeded", author=BOGUS_UID), overwrite=True
    ),
    "a forged Failed with a bogus session on a running task (B5)": case(
        "forged-on-running", row=RUNNING, status=status("Failed", author=BOGUS_SESSION), overwrite=True
    ),
    "a terminal status naming this very process on a running task": case(
        "forged-on-running", row=RUNNING, status=status("Succeeded"), overwrite=True
    ),
    "a forged Succeeded on a failed task": case(
        "forged-on-finished", row=FAILED, status=status("Succeeded", author=BOGUS_SESSION), overwrite=True
    ),
    "its own identity on the wrong phase of a finished task": case(
        "forged-on-finished", row=FAILED, status=status("Succeeded"), overwrite=True
    ),
    "its own identity on the wrong run of a finished task": case(
        "forged-on-finished", row=row(TaskStatus.COMPLETED, run=2), status=status("Succeeded", run=3), overwrite=True
    ),
    "running, the status says so": case("in-line", row=RUNNING, status=status("Running")),
    "running, no status yet": case("in-line", row=RUNNING),
    "finished, its own outcome shown": case("in-line", row=COMPLETED, status=status("Succeeded"), expire=True),
    "cancelled, its own outcome shown": case("in-line", row=CANCELLED, status=status("Cancelled"), expire=True),
    "finished, the status still says Running": case("in-line", row=COMPLETED, status=status("Running")),
    "the same retryNonce again on a failed task": case(
        "in-line", row=row(TaskStatus.FAILED, nonce="1"), retry_nonce="1", status=status("Failed"), expire=True
    ),
    "a late body of its own earlier run while the next runs": case(
        "in-line", row=row(TaskStatus.RUNNING, run=2), status=status("Failed", run=1)
    ),
}


def _table(text: str) -> dict[str, Action]:
    """row id -> action of the first Markdown table whose first column is `row`."""
    rows: dict[str, Action] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if re.match(r"\s*\|\s*row\s*\|", line):
            break
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.strip().startswith("|"):
            break
        if set(cells[0]) <= set("-"):
            continue
        action = re.search(r"[A-Z][A-Z_]+", cells[-1])
        assert action is not None, f"no action in table row {line!r}"
        rows[cells[0]] = Action(action.group(0))
    return rows


DOCUMENTED = {
    "docs/operator.md": _table((ROOT / "docs/operator.md").read_text()),
    "agent/operator/decide.py": _table(decide_module.__doc__ or ""),
}


@pytest.mark.parametrize("source", DOCUMENTED)
def test_the_documented_table_is_the_one_tested(source: str) -> None:
    table = DOCUMENTED[source]
    assert len(table) >= 10
    assert table == DOCUMENTED["docs/operator.md"]
    assert set(table) == {c.table_row for c in CASES.values()}  # every row has a case, every case a row


@pytest.mark.parametrize("name", CASES)
def test_each_situation_gets_its_rows_action(name: str) -> None:
    expected = CASES[name]
    decision = decide(expected.situation)
    assert decision.row == expected.table_row
    assert decision.action is DOCUMENTED["docs/operator.md"][expected.table_row]
    assert (decision.expire, decision.overwrite) == (expected.expire, expected.overwrite)


@pytest.mark.parametrize(
    "situation",
    [c.situation for c in CASES.values() if c.situation.status.get("phase") in ("Succeeded", "Failed", "Cancelled")],
)
def test_a_terminal_status_this_agent_did_not_write_never_skips_deletes_or_times_the_ttl(situation: Situation) -> None:
    forged = replace(situation, authors=frozenset({ME}) - {tuple(situation.status.get("agent", {}).values())})
    decision = decide(forged)
    assert not decision.expire
    assert decision.action is not Action.KEEP_OUTCOME
    if not forged.deleted and not forged.conflict and forged.row is None and not forged.cancel:
        assert decision.action is Action.SUBMIT


@pytest.mark.parametrize(
    ("author", "own"),
    [(ME, True), (EARLIER, True), (BOGUS_UID, False), (BOGUS_SESSION, False), (OTHER_POD, False), (None, False)],
)
def test_a_status_is_the_agents_only_when_pod_uid_and_session_all_match(
    author: tuple[str, str, str] | None, own: bool
) -> None:
    assert written_by(status("Succeeded", author=author), AUTHORS) is own

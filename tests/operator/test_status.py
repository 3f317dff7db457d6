"""Rendering a store row into a NodeTask status (pure functions, no cluster)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agent.engine import EventKind
from agent.models import InvalidTaskID, Progress, TaskResult, TaskStatus, UnsupportedType, utcnow
from agent.models.status import AgentIdentity, NodeTaskStatus
from agent.operator.kubeapi import ApiError
from agent.operator.status import Rendering, essentials, render_cancelled_before_start, render_rejection, render_status
from agent.operator.writer import backoff_delay

AGENT = AgentIdentity(pod="node-0", pod_uid="uid-0", session="s1")
ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
NOW = utcnow()


def row(**fields: Any) -> TaskResult:
    values: dict[str, Any] = {"id": ID, "type": "mark-ready", "status": TaskStatus.RUNNING, "started_at": NOW}
    values.update(fields)
    return TaskResult(**values)


def render(
    result: TaskResult, kind: EventKind | None = None, previous: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return render_status(result, kind, Rendering(AGENT, 3, NOW, previous or ()))


def condition_states(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


@pytest.mark.parametrize(
    ("fields", "kind", "phase", "reason", "accepted", "succeeded", "failed"),
    [
        ({}, EventKind.STARTED, "Running", "Running", "True", "False", "False"),
        ({"resumes": 1}, EventKind.RESUMED, "Running", "Resumed", "True", "False", "False"),
        (
            {"run": 2, "started_at": None, "reason": "Boom", "error": "boom"},
            EventKind.RETRYING,
            "Pending",
            "Retrying",
            "True",
            "False",
            "False",
        ),
        (
            {"status": TaskStatus.COMPLETED, "completed_at": NOW, "reason": "Succeeded", "result": {"ok": 1}},
            None,
            "Succeeded",
            "Succeeded",
            "True",
            "True",
            "False",
        ),
        (
            {
                "status": TaskStatus.FAILED,
                "completed_at": NOW,
                "reason": "ParamsInvalid",
                "error": "params.x: unknown field",
            },
            None,
            "Failed",
            "ParamsInvalid",
            "True",
            "False",
            "True",
        ),
        (
            {
                "status": TaskStatus.CANCELLED,
                "completed_at": NOW,
                "reason": "Cancelled",
                "error": "cancelled on request",
            },
            None,
            "Cancelled",
            "Cancelled",
            "True",
            "False",
            "True",
        ),
    ],
    ids=["running", "resumed", "retry-backoff", "succeeded", "failed", "cancelled"],
)
def test_phase_reason_and_conditions_follow_the_row(
    fields: dict[str, Any], kind: EventKind | None, phase: str, reason: str, accepted: str, succeeded: str, failed: str
) -> None:
    status = render(row(**fields), kind)

    assert (status["phase"], status["reason"]) == (phase, reason)
    states = condition_states(status)
    assert {name: states[name] for name in ("Accepted", "Succeeded", "Failed")} == {
        "Accepted": accepted,
        "Succeeded": succeeded,
        "Failed": failed,
    }
    terminal = phase in ("Succeeded", "Failed", "Cancelled")
    assert states["Finished"] == str(terminal)  # true for success and failure alike: one `kubectl wait` for both
    # kstatus: exactly one of Reconciling (in progress), Stalled (failed), Ready (current) is True.
    assert (states["Reconciling"], states["Stalled"], states["Ready"]) == (
        str(not terminal),
        failed if terminal else "False",
        succeeded,
    )
    assert [states[name] for name in ("Reconciling", "Stalled", "Ready")].count("True") == 1
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert status["observedGeneration"] == 3 and status["taskId"] == ID
    NodeTaskStatus.model_validate({k: v for k, v in status.items() if v is not None and k != "progress"})


def test_last_transition_time_is_kept_until_the_condition_flips() -> None:
    running = render(row(), EventKind.STARTED)
    later = NOW + timedelta(seconds=30)
    heartbeat = render_status(row(), None, Rendering(AGENT, 3, later, running["conditions"]))
    done = render_status(
        row(status=TaskStatus.COMPLETED, completed_at=later, reason="Succeeded"),
        EventKind.SUCCEEDED,
        Rendering(AGENT, 3, later, heartbeat["conditions"]),
    )

    times = lambda s: {c["type"]: c["lastTransitionTime"] for c in s["conditions"]}  # noqa: E731
    assert times(heartbeat) == times(running)
    assert times(done)["Accepted"] == times(running)["Accepted"] and times(done)["Failed"] == times(running)["Failed"]
    assert times(done)["Succeeded"] > times(running)["Succeeded"]


def test_a_new_run_clears_the_previous_runs_error_result_and_progress() -> None:
    status = render(row(run=2), EventKind.ACCEPTED)
    assert status["error"] is None and status["result"] is None and status["progress"] is None
    assert status["completedAt"] is None  # a merge patch deletes the previous completion time


def test_a_failure_keeps_the_result_it_carries() -> None:
    """A gov task's failure keeps `inclusionStatus` (`committed_failed`, `pending`) for the caller to branch on."""
    failed = row(status=TaskStatus.FAILED, completed_at=NOW, reason="InactiveProposal", error="x",
                 result={"inclusionStatus": "committed_failed", "code": 3})  # fmt: skip
    assert render(failed, EventKind.FAILED)["result"] == {"inclusionStatus": "committed_failed", "code": 3}
    assert render(row(status=TaskStatus.FAILED, completed_at=NOW, error="x"), EventKind.FAILED)["result"] is None


def test_progress_is_shown_while_running_and_only_its_summary_removed_at_the_end() -> None:
    running = render(
        row(progress=Progress(current=300, total=1000, unit="blocks", message="syncing")), EventKind.PROGRESS
    )
    done = render(row(status=TaskStatus.COMPLETED, completed_at=NOW, reason="Succeeded"), EventKind.SUCCEEDED)

    assert running["progress"] == {
        "current": 300,
        "total": 1000,
        "unit": "blocks",
        "percent": 30.0,
        "message": "syncing",
        "summary": "300/1000 blocks (30.0%) syncing",
    }
    assert running["message"] == "300/1000 blocks (30.0%) syncing"
    assert done["progress"] == {"summary": None}


def test_result_keys_that_look_secret_are_masked() -> None:
    status = render(
        row(status=TaskStatus.COMPLETED, completed_at=NOW, reason="Succeeded", result={"nodeId": "a", "mnemonic": "w"})
    )
    assert status["result"] == {"nodeId": "a", "mnemonic": "[redacted]"}


def test_long_error_messages_are_clipped() -> None:
    status = render(row(status=TaskStatus.FAILED, completed_at=NOW, reason="TaskFailed", error="x" * 10_000))
    assert len(status["message"]) == 1024 and len(status["error"]["message"]) == 4096


@pytest.mark.parametrize(
    ("error", "task_id"),
    [(InvalidTaskID("task-7"), None), (UnsupportedType("snapshot-verify", ["mark-ready"]), ID)],
    ids=["invalid-id", "unsupported-type"],
)
def test_rejections_are_failed_and_not_accepted(error: Exception, task_id: str | None) -> None:
    status = render_rejection(error, task_id, Rendering(AGENT, 1, NOW))  # type: ignore[arg-type]
    assert status["phase"] == "Failed" and status["reason"] == error.reason  # type: ignore[attr-defined]
    states = condition_states(status)
    assert {name: states[name] for name in ("Accepted", "Succeeded", "Failed")} == {
        "Accepted": "False",
        "Succeeded": "False",
        "Failed": "True",
    }
    assert "run" not in status and status["error"]["hint"]


def test_cancelled_before_start_latches_failed_with_reason_cancelled() -> None:
    status = render_cancelled_before_start(ID, Rendering(AGENT, 2, NOW))
    assert (status["phase"], status["reason"]) == ("Cancelled", "Cancelled")
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}["Failed"] == ("True", "Cancelled")


def test_essentials_ignore_heartbeat_and_progress() -> None:
    a = render(row(), EventKind.STARTED)
    b = render_status(row(progress=Progress(current=1)), None, Rendering(AGENT, 3, NOW + timedelta(minutes=1)))
    assert essentials(a) == essentials(b)
    assert essentials(a) != essentials(render(row(resumes=1)))


@pytest.mark.parametrize(
    ("status", "retryable", "gone"),
    [
        (0, True, False),
        (403, True, False),
        (404, False, True),
        (409, True, False),
        (422, False, False),
        (429, True, False),
        (503, True, False),
        (400, False, False),
    ],
)
def test_api_errors_are_classified_for_retries(status: int, retryable: bool, gone: bool) -> None:
    error = ApiError(status, "x")
    assert (error.retryable, error.gone) == (retryable, gone)
    assert error.cause == (str(status) if status else "connection")


@pytest.mark.parametrize(("failures", "low", "high"), [(1, 0.4, 0.6), (3, 1.6, 2.4), (20, 8.0, 12.0)])
def test_backoff_doubles_and_is_capped(failures: int, low: float, high: float) -> None:
    assert low <= backoff_delay(failures, cap=10.0) <= high


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": TaskStatus.COMPLETED, "completed_at": NOW, "reason": "Succeeded"}, "Succeeded"),
        (
            {"status": TaskStatus.FAILED, "completed_at": NOW, "reason": "ChecksumMismatch", "error": "x"},
            "ChecksumMismatch",
        ),
        ({"status": TaskStatus.CANCELLED, "completed_at": NOW, "reason": "Cancelled", "error": "x"}, "Cancelled"),
    ],
)
def test_finished_says_which_way_the_task_ended(fields: dict[str, Any], reason: str) -> None:
    finished = next(c for c in render(row(**fields))["conditions"] if c["type"] == "Finished")
    assert (finished["status"], finished["reason"]) == ("True", reason)


def test_rejected_and_cancelled_before_start_are_finished_and_stalled() -> None:
    for status in (
        render_rejection(UnsupportedType("x", ["mark-ready"]), None, Rendering(AGENT, 1, NOW)),
        render_cancelled_before_start(ID, Rendering(AGENT, 1, NOW)),
    ):
        states = condition_states(status)
        assert (states["Finished"], states["Stalled"], states["Reconciling"], states["Ready"]) == (
            "True",
            "True",
            "False",
            "False",
        )

"""The cap on queued and running tasks (`NODETASK_MAX_TASKS`) seen from NodeTasks, on the real API server.

A NodeTask refused `TooManyTasks` is not an outcome: it waits Pending (reason and message naming the cap, not accepted)
and runs once a task has finished (agent.operator.decide, row refused-retryable)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory
from tests.operator.handlers import GATE_TYPE, gate_starts
from tests.operator.kit import conditions, nodetask, status_of, wait_phase

pytestmark = [pytest.mark.kube, pytest.mark.slow]


def test_nodetasks_beyond_the_cap_wait_pending_and_run_once_a_task_finishes(agents: AgentFactory) -> None:
    pod = agents.pod("node-0")
    pod.extra_env["NODETASK_MAX_TASKS"] = "1"
    agents.thread(pod)
    ns = pod.ns

    ns.apply(*(nodetask(name, "node-0", GATE_TYPE.value, {"label": name}) for name in ("first", "second")))

    def refused_one() -> tuple[str, dict[str, Any]] | None:
        for name in ("first", "second"):  # the watch may deliver them in either order
            status = status_of(ns, name)
            if status.get("reason") == "TooManyTasks":
                return name, status
        return None

    waiting, refused = poll_until(refused_one, what="one NodeTask refused for now", timeout=30)
    running = "second" if waiting == "first" else "first"
    assert refused["phase"] == "Pending" and "NODETASK_MAX_TASKS=1" in refused["message"]
    assert "completedAt" not in refused and refused["error"]["retryable"] is True
    assert conditions(refused)["Accepted"] == ("False", "TooManyTasks")
    assert poll_until(lambda: gate_starts(pod.home, running), what=f"{running} to start", timeout=30)
    assert gate_starts(pod.home, waiting) == []  # nothing runs beyond the cap

    pod.release(running)
    assert wait_phase(ns, running, "Succeeded")["run"] == 1
    assert poll_until(lambda: gate_starts(pod.home, waiting), what=f"{waiting} to start once there is room", timeout=30)
    pod.release(waiting)
    finished = wait_phase(ns, waiting, "Succeeded")
    assert finished["run"] == 1 and conditions(finished)["Accepted"] == ("True", "Accepted")
    assert [len(gate_starts(pod.home, name)) for name in ("first", "second")] == [1, 1]

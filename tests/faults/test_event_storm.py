"""A storm of similar Events (a retry policy with no backoff) is aggregated before it reaches the API server.

Only the recorder's queue is inspected: aggregation happens when an Event is recorded, before any API call.
"""

from __future__ import annotations

from agent.models import ResourceRef
from agent.operator.writer import EventRecorder
from agent.runtime.metrics import AgentMetrics

REF = ResourceRef(namespace="ns", name="task", uid="uid-1", generation=1)
OTHER = ResourceRef(namespace="ns", name="other", uid="uid-2", generation=1)


def queued(recorder: EventRecorder) -> list[dict[str, object]]:
    bodies = []
    while not recorder._queue.empty():
        bodies.append(recorder._queue.get_nowait().body)
    return bodies


def test_similar_events_beyond_the_threshold_are_combined_with_a_count() -> None:
    now = [0.0]
    recorder = EventRecorder(api=None, metrics=AgentMetrics(), pod="pod-0", clock=lambda: now[0])  # type: ignore[arg-type]
    for run in range(1, 197):  # 196 Retrying Events in 20 s, as the attack made
        now[0] = run * 0.1
        recorder.record(REF, "Retrying", f"run {run} failed; retrying", warning=True)
    recorder.record(OTHER, "Retrying", "another object is not held back")
    first = queued(recorder)
    assert [body["count"] for body in first] == [1] * 10 + [1]
    assert first[-1]["involvedObject"]["uid"] == "uid-2"  # type: ignore[index]

    now[0] = 80.0  # the next one after `combined_every` stands for everything held back since
    recorder.record(REF, "Retrying", "run 197 failed; retrying", warning=True)
    (combined,) = queued(recorder)
    assert combined["count"] == 197 - 10
    assert str(combined["message"]).startswith("(combined from similar events, 187 since the last one): run 197")

    now[0] = 800.0  # a new window: posted as they come again
    recorder.record(REF, "Retrying", "run 198 failed; retrying", warning=True)
    assert [body["count"] for body in queued(recorder)] == [1]

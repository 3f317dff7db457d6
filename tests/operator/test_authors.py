"""Which agent processes count as "this agent" (agent.operator.authors) and whom its Events name (F6): no cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.models import ResourceRef
from agent.operator.authors import LIMIT, AuthorLedger, ledger_path, store_file
from agent.operator.writer import EventRecorder
from agent.server import AgentMetrics

FIRST = ("node-0", "uid-1", "session-1")
SECOND = ("node-0", "uid-1", "session-2")


def test_each_process_start_is_remembered_beside_the_store(tmp_path: Path) -> None:
    path = ledger_path(tmp_path / "nodetask-agent.db")
    assert path == tmp_path / "nodetask-agent.db.authors.json"
    first = AuthorLedger(path, FIRST)
    assert not first.existed and first.known == {FIRST}
    first.save()

    second = AuthorLedger(path, SECOND)
    second.save()

    assert second.existed and second.known == {FIRST, SECOND}
    assert AuthorLedger(path, ("node-0", "uid-1", "session-3")).known >= {FIRST, SECOND}
    assert path is not None and path.stat().st_mode & 0o077 == 0


def test_only_the_newest_starts_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "store.authors.json"
    path.write_text(json.dumps({"authors": [["node-0", "uid", f"s{n}"] for n in range(LIMIT + 5)]}))
    ledger = AuthorLedger(path, FIRST)
    ledger.save()
    kept = AuthorLedger(path, FIRST).known
    assert len(kept) == LIMIT and FIRST in kept and ("node-0", "uid", "s0") not in kept


@pytest.mark.parametrize(
    "content", ["not json", '{"authors": "x"}', '{"authors": [["node-0", "", "s"], ["a"], 7]}', "[]"]
)
def test_an_unreadable_or_malformed_list_knows_only_the_current_process(tmp_path: Path, content: str) -> None:
    path = tmp_path / "store.authors.json"
    path.write_text(content)
    assert AuthorLedger(path, FIRST).known == {FIRST}


def test_an_in_memory_store_keeps_the_list_in_memory() -> None:
    assert ledger_path(":memory:") is None
    ledger = AuthorLedger(None, FIRST)
    ledger.save()
    ledger.adopt([SECOND])
    assert ledger.known == {FIRST, SECOND}


def test_adopting_takes_the_named_authors_once_and_saves_them(tmp_path: Path) -> None:
    path = tmp_path / "store.authors.json"
    ledger = AuthorLedger(path, SECOND)
    ledger.adopting = True
    ledger.adopt([FIRST, FIRST, SECOND])
    assert not ledger.adopting
    assert AuthorLedger(path, ("node-0", "uid-1", "session-3")).known >= {FIRST, SECOND}


def queued_body(recorder: EventRecorder) -> dict[str, Any]:
    body: dict[str, Any] = recorder._queue.get_nowait().body
    return body


@pytest.mark.parametrize(("kind", "api_version"), [("NodeTask", "sei.io/v1alpha1"), ("Pod", "v1")])
def test_every_event_names_the_agents_own_pod(kind: str, api_version: str) -> None:
    recorder = EventRecorder(api=None, metrics=AgentMetrics(), pod="node-0", pod_uid="uid-1")  # type: ignore[arg-type]
    recorder.record(
        ResourceRef(namespace="ns", name="x", uid="u"), "Started", "run 1", kind=kind, api_version=api_version
    )
    body = queued_body(recorder)
    assert body["reportingInstance"] == "node-0"
    assert body["related"] == {"apiVersion": "v1", "kind": "Pod", "name": "node-0", "namespace": "ns", "uid": "uid-1"}


def test_the_list_lives_beside_the_file_of_a_guarded_store(tmp_path: Path) -> None:
    from agent.store import SqliteStore
    from agent.store.guard import GuardedStore

    store = SqliteStore(tmp_path / "tasks.db")
    try:
        assert ledger_path(store_file(GuardedStore(store))) == tmp_path / "tasks.db.authors.json"
        assert ledger_path(store_file(SqliteStore(":memory:"))) is None
    finally:
        store.close()

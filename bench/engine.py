"""Engine throughput: no-op tasks submitted and completed per second through Engine + SqliteStore (a real file), next
to raw `sqlite3` doing the same row writes with the same pragmas, in one process and one run.

Each engine task costs two row writes (the INSERT of the running row at submit, the upsert of the completed row at the
end); the raw baseline performs exactly those two statements per task with the same columns, pragmas and commit
pattern (autocommit per statement), so the ratio isolates what the engine and the store layer add on top of SQLite.
Run it for both `synchronous` settings to see what FULL costs.

    .venv/bin/python bench/engine.py [--tasks 5000] [--repeat 3]

Prints a Markdown table (the one in docs/benchmarks.md) with the best of `--repeat` runs for each row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from agent.engine import Engine, EventKind, TaskEvent
from agent.models import Task, TaskType, format_timestamp, utcnow
from agent.models.settings import AgentSettings
from agent.store import SqliteStore
from agent.tasks import default_registry

COLUMNS = (
    "id, type, status, run, resumes, params, result, error, reason, hint, retryable, submitted_at, started_at, "
    "completed_at, timeout_seconds, retry_limit, retry_backoff_seconds, retry_nonce, source_namespace, source_name, "
    "source_uid, source_generation"
)


def engine_rate(directory: Path, tasks: int, synchronous: str) -> float:
    """Tasks per second through the engine: submit all, count completions as a listener (as the operator does)."""

    async def go() -> float:
        store = SqliteStore(directory / f"engine-{synchronous}-{uuid.uuid4().hex}.db", synchronous=synchronous)  # type: ignore[arg-type]
        engine = Engine(default_registry(), store, AgentSettings(home=directory), progress_interval=1.0)
        ids = [str(uuid.uuid4()) for _ in range(tasks)]
        finished = asyncio.Event()
        succeeded = 0

        def count(event: TaskEvent) -> None:
            nonlocal succeeded
            if event.kind is EventKind.SUCCEEDED:
                succeeded += 1
                if succeeded == tasks:
                    finished.set()

        engine.add_listener(count)
        start = time.perf_counter()
        for task_id in ids:
            await engine.submit(Task(id=task_id, type=TaskType.MARK_READY))
        await finished.wait()
        elapsed = time.perf_counter() - start
        assert all(row.status.value == "completed" for row in store.list(tasks))
        await engine.shutdown()
        store.close()
        return tasks / elapsed

    return asyncio.run(go())


def raw_rate(directory: Path, tasks: int, synchronous: str) -> float:
    """Tasks per second for the same two row writes per task through the stdlib sqlite3 module."""
    path = directory / f"raw-{synchronous}-{uuid.uuid4().hex}.db"
    SqliteStore(path).close()  # the store creates the real schema and indexes...
    connection = sqlite3.connect(path, isolation_level=None)  # ...and raw sqlite3 writes into it
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA busy_timeout=5000")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    placeholders = ", ".join("?" for _ in COLUMNS.split(","))
    insert = f"INSERT INTO task_results ({COLUMNS}) VALUES ({placeholders})"
    upsert = f"INSERT OR REPLACE INTO task_results ({COLUMNS}) VALUES ({placeholders})"
    start = time.perf_counter()
    for _ in range(tasks):
        task_id = str(uuid.uuid4())
        now = format_timestamp(utcnow())
        row = [task_id, "mark-ready", "running", 1, 0, "null", None, "", "", "", 0, now, now, None, None, 0, 10.0]
        row += [None, None, None, None, None]
        connection.execute(insert, row)
        done = list(row)
        done[2], done[6], done[8], done[13] = "completed", json.dumps({"ready": True}), "Succeeded", now
        connection.execute(upsert, done)
    elapsed = time.perf_counter() - start
    connection.close()
    return tasks / elapsed


def best(repeat: int, measure: Callable[[], float]) -> float:
    return max(measure() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        print(f"{args.tasks} no-op tasks per run, best of {args.repeat}\n")
        print("| synchronous | engine + store (tasks/s) | raw sqlite3, same writes (tasks/s) | ratio |")
        print("|---|---|---|---|")
        for synchronous in ("NORMAL", "FULL"):
            raw = best(args.repeat, lambda s=synchronous: raw_rate(directory, args.tasks, s))
            engine = best(args.repeat, lambda s=synchronous: engine_rate(directory, args.tasks, s))
            print(f"| {synchronous} | {engine:,.0f} | {raw:,.0f} | {engine / raw:.0%} |")


if __name__ == "__main__":
    main()

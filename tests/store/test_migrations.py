"""Databases the Go sidecar (seictl) left on a PVC open and migrate to our latest schema.

The seed files are built here with the stdlib `sqlite3` module from the reference's description of the Go schema
(section 2 of seictl-behaviour.md), independently of the store's own migration code, with the Go encoding: trimmed
RFC3339Nano timestamps and params `null` as text.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agent.models import RetryPolicy, TaskResult, TaskStatus, parse_timestamp
from agent.store import LATEST_VERSION, SqliteStore, StoreError
from agent.store import migrations as store_migrations

SEED_V1 = [
    """CREATE TABLE task_results (
        id TEXT PRIMARY KEY, type TEXT NOT NULL, status TEXT NOT NULL, params TEXT, schedule TEXT,
        error TEXT NOT NULL DEFAULT '', submitted_at TEXT NOT NULL, completed_at TEXT, next_run_at TEXT)""",
    "CREATE INDEX idx_task_results_submitted_at ON task_results (submitted_at DESC)",
    "CREATE INDEX idx_task_results_schedule ON task_results (next_run_at) WHERE schedule IS NOT NULL",
]
SEED_V2 = [
    "DROP INDEX idx_task_results_schedule",
    "ALTER TABLE task_results DROP COLUMN schedule",
    "ALTER TABLE task_results DROP COLUMN next_run_at",
]
SEED_V3 = ["ALTER TABLE task_results ADD COLUMN run INTEGER NOT NULL DEFAULT 1"]
SEED_V4 = ["ALTER TABLE task_results ADD COLUMN result TEXT"]
SEED_V5 = [
    """CREATE TABLE tx_markers (task_id TEXT PRIMARY KEY, tx_hash TEXT NOT NULL, tx_bytes BLOB,
        account_number INTEGER, sequence INTEGER, chain_id TEXT, created_at TEXT NOT NULL)"""
]
SEED_STEPS = [SEED_V1, SEED_V2, SEED_V3, SEED_V4, SEED_V5]

# (id, type, status, params, error, submitted_at, completed_at): the seed's v26 row shape, Go-encoded. Submission order
# by time is C, B, A, D (newest first), which the seed's text order got wrong: "...27Z" sorts after "...27.9Z".
A = "0e5c5a8a-0000-4000-8000-00000000000a"
B = "0e5c5a8a-0000-4000-8000-00000000000b"
C = "0e5c5a8a-0000-4000-8000-00000000000c"
D = "0e5c5a8a-0000-4000-8000-00000000000d"
GO_ROWS = [
    (A, "snapshot-restore", "completed", '{"bucket":"snaps","prefix":"pacific-1/"}', "", "2026-03-31T22:36:27Z",
     "2026-03-31T22:40:00.5Z"),
    (B, "mark-ready", "completed", "null", "", "2026-03-31T22:36:27.1234Z", "2026-03-31T22:36:28.123456789Z"),
    (C, "config-patch", "failed", '{"files":{"config.toml":{"p2p":{"seeds":"ñ@x:26656"}}}}',
     "config-patch: open config.toml: no such file", "2026-03-31T22:36:27.9Z", "2026-03-31T22:36:29Z"),
    (D, "mark-ready", "running", "null", "", "2026-03-31T22:36:26.999999999Z", None),
]  # fmt: skip
NEWEST_FIRST = [C, B, A, D]


def build_seed_file(path: Path, version: int, *, extra: Callable[[sqlite3.Connection], None] | None = None) -> None:
    """A database exactly as seictl at schema `version` (1, 2 = v0.0.26, 4, 5 = HEAD) would have left it."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("PRAGMA journal_mode=WAL")
        for step in SEED_STEPS[:version]:
            for statement in step:
                raw.execute(statement)
        columns = "id, type, status, params, error, submitted_at, completed_at"
        raw.executemany(f"INSERT INTO task_results ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)", GO_ROWS)
        if version == 1:
            raw.execute("UPDATE task_results SET schedule = '@hourly', next_run_at = '2026-04-01T00:00:00Z'")
        if version >= 3:
            raw.execute("UPDATE task_results SET run = 2 WHERE id = ?", (C,))
        if version >= 4:
            raw.execute("UPDATE task_results SET result = ? WHERE id = ?", ('{"sha256":"' + "ab" * 32 + '"}', A))
        if version >= 5:
            raw.execute(
                "INSERT INTO tx_markers VALUES (?, 'DEADBEEF', x'0a0b', 7, 42, 'pacific-1', '2026-03-31T22:36:30Z')",
                (C,),
            )
        if extra:
            extra(raw)
        raw.execute(f"PRAGMA user_version = {version}")


def expected_rows(version: int) -> dict[str, TaskResult]:
    """What the Go rows must read back as: their values, and our defaults for every column they did not have."""
    expected = {}
    for task_id, task_type, status, params, error, submitted, completed in GO_ROWS:
        expected[task_id] = TaskResult(
            id=task_id,
            type=task_type,
            status=TaskStatus(status),
            params=None if params == "null" else json.loads(params),
            error=error,
            submitted_at=parse_timestamp(submitted),
            completed_at=parse_timestamp(completed) if completed else None,
        )
    if version >= 3:
        expected[C] = expected[C].model_copy(update={"run": 2})
    if version >= 4:
        expected[A] = expected[A].model_copy(update={"result": {"sha256": "ab" * 32}})
    return expected


def raw_query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute(sql).fetchall()


def table_shape(path: Path) -> dict[str, tuple[Any, ...]]:
    """Column name -> (declared type, not null, default) of task_results."""
    rows = raw_query(path, "PRAGMA table_info(task_results)")
    return {name: (kind, notnull, default) for _, name, kind, notnull, default, _ in rows}


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_a_seed_database_migrates_to_the_latest_version_and_reads_back(tmp_path: Path, version: int) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, version)
    with SqliteStore(path) as opened:
        assert {row.id: row for row in opened.list()} == expected_rows(version)
        assert [row.id for row in opened.list()] == NEWEST_FIRST
        assert [row.id for row in opened.list_stale()] == [D]
        latest = opened.latest_by_type("mark-ready", status=TaskStatus.COMPLETED, order_by="completed_at")
        assert latest is not None and latest.id == B
    assert raw_query(path, "PRAGMA user_version") == [(LATEST_VERSION,)]
    shape = table_shape(path)
    assert "schedule" not in shape and "next_run_at" not in shape


def test_old_rows_get_our_defaults_for_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 2)
    with SqliteStore(path) as opened:
        row = opened.get(A)
    assert row is not None
    assert (row.run, row.resumes, row.reason, row.hint, row.retryable) == (1, 0, "", "", False)
    assert (row.started_at, row.timeout_seconds, row.retry_nonce, row.source, row.result) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert row.retry == RetryPolicy()


def test_go_timestamps_are_rewritten_fixed_width_so_text_order_is_time_order(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 2)
    SqliteStore(path).close()
    rows = raw_query(path, "SELECT id, submitted_at, completed_at FROM task_results ORDER BY submitted_at DESC")
    assert rows == [
        (C, "2026-03-31T22:36:27.900000Z", "2026-03-31T22:36:29.000000Z"),
        (B, "2026-03-31T22:36:27.123400Z", "2026-03-31T22:36:28.123456Z"),
        (A, "2026-03-31T22:36:27.000000Z", "2026-03-31T22:40:00.500000Z"),
        (D, "2026-03-31T22:36:26.999999Z", None),
    ]


def test_the_head_tx_markers_table_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 5)
    before = raw_query(path, "SELECT * FROM tx_markers")
    SqliteStore(path).close()
    assert (
        raw_query(path, "SELECT * FROM tx_markers")
        == before
        == [(C, "DEADBEEF", b"\x0a\x0b", 7, 42, "pacific-1", "2026-03-31T22:36:30Z")]
    )


@pytest.mark.parametrize("version", [1, 2, 5])
def test_a_migrated_table_has_the_shape_of_a_fresh_one(tmp_path: Path, version: int) -> None:
    fresh, migrated = tmp_path / "fresh.db", tmp_path / "migrated.db"
    SqliteStore(fresh).close()
    build_seed_file(migrated, version)
    SqliteStore(migrated).close()
    fresh_shape, migrated_shape = table_shape(fresh), table_shape(migrated)
    # The seed declared `id TEXT PRIMARY KEY` without NOT NULL; peewee adds it. Everything else must match exactly.
    assert fresh_shape.pop("id")[0] == migrated_shape.pop("id")[0] == "TEXT"
    assert list(migrated_shape.items()) == list(fresh_shape.items())
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
    assert raw_query(migrated, indexes) == raw_query(fresh, indexes)


def test_migrated_file_takes_new_rows_and_orders_them_among_the_old(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 4)
    between = "0e5c5a8a-0000-4000-8000-0000000000ff"
    with SqliteStore(path) as opened:
        opened.save(TaskResult(id=between, type="mark-ready", status=TaskStatus.RUNNING,
                               submitted_at=parse_timestamp("2026-03-31T22:36:27.5Z")))  # fmt: skip
        assert [row.id for row in opened.list()] == [C, between, B, A, D]


def test_a_file_migrated_once_is_not_changed_by_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 2)
    SqliteStore(path).close()
    dump = list(sqlite3.connect(path).iterdump())
    SqliteStore(path).close()
    assert list(sqlite3.connect(path).iterdump()) == dump


def test_rows_still_in_the_go_sidecars_write_ahead_log_are_migrated(tmp_path: Path) -> None:
    # The Go sidecar killed mid-flight leaves committed rows in sidecar.db-wal, not yet checkpointed into the file.
    origin, path = tmp_path / "origin" / "sidecar.db", tmp_path / "sidecar.db"
    origin.parent.mkdir()
    build_seed_file(origin, 2)
    with closing(sqlite3.connect(origin, isolation_level=None)) as go_process:
        go_process.execute("PRAGMA wal_autocheckpoint = 0")
        late = "0e5c5a8a-0000-4000-8000-0000000000ee"
        go_process.execute(
            "INSERT INTO task_results (id, type, status, params, error, submitted_at) VALUES (?, ?, ?, ?, ?, ?)",
            (late, "config-reload", "running", "null", "", "2026-03-31T22:37:00.25Z"),
        )
        shutil.copy(origin, path)
        shutil.copy(f"{origin}-wal", f"{path}-wal")
    with SqliteStore(path) as opened:
        assert [row.id for row in opened.list_stale()] == [D, late]


def test_without_drop_column_support_a_v1_file_is_refused_and_left_at_v1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 1)
    monkeypatch.setattr(store_migrations, "sqlite_version_info", lambda: (3, 34, 1))
    with pytest.raises(StoreError, match=rf"{path}.*version 2.*SQLite >= 3\.35.*3\.34\.1"):
        SqliteStore(path)
    assert raw_query(path, "PRAGMA user_version") == [(1,)]
    assert "schedule" in table_shape(path)


def test_old_sqlite_is_fine_for_files_that_need_no_drop_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_migrations, "sqlite_version_info", lambda: (3, 34, 1))
    seed, fresh = tmp_path / "seed.db", tmp_path / "fresh.db"
    build_seed_file(seed, 2)
    SqliteStore(seed).close()
    SqliteStore(fresh).close()
    assert raw_query(seed, "PRAGMA user_version") == raw_query(fresh, "PRAGMA user_version") == [(LATEST_VERSION,)]


def test_a_failing_step_is_rolled_back_and_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 4)
    real_step = dict(store_migrations.STEPS)[LATEST_VERSION]

    def crash_half_way(db: Any) -> None:
        real_step(db)  # every column added and timestamps rewritten ...
        raise sqlite3.OperationalError("disk I/O error")  # ... then the step dies before its commit

    steps = tuple(
        (version, crash_half_way if version == LATEST_VERSION else step) for version, step in store_migrations.STEPS
    )
    monkeypatch.setattr(store_migrations, "STEPS", steps)
    before = table_shape(path)
    with pytest.raises(StoreError, match="disk I/O error"):
        SqliteStore(path)
    assert raw_query(path, "PRAGMA user_version") == [(4,)]
    assert table_shape(path) == before
    assert raw_query(path, f"SELECT submitted_at FROM task_results WHERE id = '{A}'") == [("2026-03-31T22:36:27Z",)]
    monkeypatch.undo()
    with SqliteStore(path) as opened:
        assert [row.id for row in opened.list()] == NEWEST_FIRST


def test_step_10_adds_only_the_columns_that_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"

    def someone_added_two_of_ours(raw: sqlite3.Connection) -> None:
        raw.execute("ALTER TABLE task_results ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0")
        raw.execute("ALTER TABLE task_results ADD COLUMN reason TEXT NOT NULL DEFAULT ''")
        raw.execute("UPDATE task_results SET resumes = 3, reason = 'AgentRestarted' WHERE id = ?", (D,))

    build_seed_file(path, 5, extra=someone_added_two_of_ours)
    with SqliteStore(path) as opened:
        row = opened.get(D)
    assert row is not None and (row.resumes, row.reason) == (3, "AgentRestarted")


def test_an_unparseable_go_timestamp_is_kept_logged_and_its_row_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sidecar.db"

    def garble(raw: sqlite3.Connection) -> None:
        raw.execute("UPDATE task_results SET completed_at = 'Tue Mar 31 22:40:00 UTC 2026' WHERE id = ?", (A,))

    build_seed_file(path, 2, extra=garble)
    caplog.set_level(logging.WARNING, logger="agent.store")
    with SqliteStore(path) as opened:
        assert [row.id for row in opened.list()] == [C, B, D]
        with pytest.raises(StoreError, match=A):
            opened.get(A)
    assert A in caplog.text
    assert raw_query(path, f"SELECT completed_at FROM task_results WHERE id = '{A}'") == [
        ("Tue Mar 31 22:40:00 UTC 2026",)
    ]


def test_rows_a_rolled_back_go_sidecar_wrote_into_our_file_are_normalised_on_open(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    build_seed_file(path, 5)
    SqliteStore(path).close()
    late = "0e5c5a8a-0000-4000-8000-0000000000ee"
    with closing(sqlite3.connect(path)) as go_process, go_process:  # the Go insert names only its own columns
        go_process.execute(
            "INSERT OR REPLACE INTO task_results (id, type, status, params, error, submitted_at, completed_at, run, "
            "result) VALUES (?, 'mark-ready', 'completed', 'null', '', '2026-03-31T22:36:26Z', "
            "'2026-03-31T22:36:30Z', 1, NULL)",
            (late,),
        )
    with SqliteStore(path) as opened:
        # Go's "...26Z" sorts after D's "...26.999999Z" as text although it is older.
        assert [row.id for row in opened.list()] == [*NEWEST_FIRST, late]
    assert raw_query(path, f"SELECT submitted_at, completed_at FROM task_results WHERE id = '{late}'") == [
        ("2026-03-31T22:36:26.000000Z", "2026-03-31T22:36:30.000000Z")
    ]

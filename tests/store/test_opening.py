"""Opening a store: the settings it applies, the files it refuses, and what survives a reopen."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from agent.store import LATEST_VERSION, SqliteStore, StoreError, memory_store

from .conftest import make_result, task_id


def _pragma(store: SqliteStore, name: str) -> object:
    # The store's own connection: busy_timeout and synchronous are per connection, so only it can show them.
    return store._conn.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.mark.parametrize(("synchronous", "level"), [("NORMAL", 1), ("FULL", 2)])
def test_file_store_runs_in_wal_with_busy_timeout_and_the_chosen_synchronous(
    db_path: Path, synchronous: str, level: int
) -> None:
    with SqliteStore(db_path, synchronous=synchronous) as opened:  # type: ignore[arg-type]
        assert _pragma(opened, "journal_mode") == "wal"
        assert _pragma(opened, "busy_timeout") == 5000
        assert _pragma(opened, "synchronous") == level
    with closing(sqlite3.connect(db_path)) as other:  # WAL is a property of the file, seen by every connection
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_memory_store_applies_the_same_connection_settings() -> None:
    with memory_store() as opened:
        assert _pragma(opened, "journal_mode") == "memory"  # SQLite has no WAL for :memory:
        assert _pragma(opened, "busy_timeout") == 5000
        assert _pragma(opened, "synchronous") == 1


def test_default_synchronous_is_normal(db_path: Path) -> None:
    with SqliteStore(db_path) as opened:
        assert opened.synchronous == "NORMAL"


def test_an_unknown_synchronous_level_is_refused(db_path: Path) -> None:
    with pytest.raises(ValueError, match="'OFF'"):
        SqliteStore(db_path, synchronous="OFF")  # type: ignore[arg-type]
    assert not db_path.exists()


def test_a_fresh_file_is_created_at_the_latest_schema_version(db_path: Path) -> None:
    SqliteStore(db_path).close()
    with closing(sqlite3.connect(db_path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION


def test_reopening_a_file_keeps_its_rows_and_version(db_path: Path) -> None:
    with SqliteStore(db_path) as first:
        first.save(make_result(1, params={"kept": True}))
    with SqliteStore(db_path) as second:
        row = second.get(task_id(1))
        assert row is not None and row.params == {"kept": True}
    with closing(sqlite3.connect(db_path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION


def _missing_directory(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "no-such-dir" / "sidecar.db", "does not exist"


def _a_directory(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path, "is a directory"


def _under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "plain-file").write_text("x")
    return tmp_path / "plain-file" / "sidecar.db", "unable to open"


def _not_a_database(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "sidecar.db"
    path.write_bytes(b"this is not SQLite at all, just some text that is long enough to be a header" * 20)
    return path, "not a database"


@pytest.mark.parametrize("case", [_missing_directory, _a_directory, _under_a_file, _not_a_database])
def test_a_file_that_cannot_be_opened_raises_store_error_with_path_and_cause(
    tmp_path: Path, case: Callable[[Path], tuple[Path, str]]
) -> None:
    path, cause = case(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(StoreError, match=rf"cannot open task store {path}: .*{cause}"):
        SqliteStore(path)
    if before is not None:
        assert path.read_bytes() == before


def test_a_file_from_a_newer_schema_is_refused_unchanged(db_path: Path) -> None:
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.execute("CREATE TABLE task_results (id TEXT PRIMARY KEY, shape_from_the_future BLOB)")
        raw.execute("INSERT INTO task_results VALUES ('x', x'00')")
        raw.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match=rf"{db_path}.*schema version {LATEST_VERSION + 1} is newer"):
        SqliteStore(db_path)
    assert db_path.read_bytes() == before
    assert not Path(f"{db_path}-wal").exists()

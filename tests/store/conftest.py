"""Fixtures of the store tests: a store on a real file or in memory, and ways to build rows and reach the raw file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.models import TaskResult, TaskStatus, parse_timestamp
from agent.store import SqliteStore, memory_store

BASE_TIME = parse_timestamp("2026-03-31T22:36:27.000000Z")


def at(seconds: float) -> datetime:
    """A moment `seconds` after BASE_TIME (fractions allowed, so tests can place rows inside one second)."""
    return BASE_TIME + timedelta(seconds=seconds)


def task_id(number: int) -> str:
    """A canonical lowercase UUID that sorts by `number`."""
    return f"00000000-0000-4000-8000-{number:012d}"


def make_result(number: int = 1, **fields: Any) -> TaskResult:
    """A running config-patch row with ID `task_id(number)`, submitted `number` seconds after BASE_TIME."""
    values: dict[str, Any] = {
        "id": task_id(number),
        "type": "config-patch",
        "status": TaskStatus.RUNNING,
        "submitted_at": at(number),
    }
    values.update(fields)
    return TaskResult(**values)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sidecar.db"


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[SqliteStore]:
    """The store on a real file under tmp_path, and the `:memory:` store: every behaviour must hold for both."""
    opened = SqliteStore(db_path) if request.param == "file" else memory_store()
    yield opened
    opened.close()


@pytest.fixture
def file_store(db_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(db_path)
    yield opened
    opened.close()


@pytest.fixture
def raw_sql(db_path: Path) -> Callable[..., list[tuple[Any, ...]]]:
    """Run one statement on the store's file through a separate stdlib connection (as another program would)."""

    def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(db_path, timeout=5)) as connection, connection:
            return connection.execute(sql, params).fetchall()

    return run

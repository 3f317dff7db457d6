"""Rows another program wrote badly: bulk reads skip them with a warning, single-row reads refuse them by ID."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from agent.models import TaskStatus
from agent.store import SqliteStore, StoreError

from .conftest import at, make_result, task_id

SECRET = "abandon abandon abandon about"

# Column -> a value no TaskResult can come from, each with the secret nearby so that messages can be checked for it.
BAD_VALUES = {
    "params": '{"mnemonic": "' + SECRET + '", ',
    "result": '["' + SECRET + '"]',
    "submitted_at": "yesterday " + SECRET,
    "completed_at": "31/03/2026",
    "started_at": 1774996587,
    "status": "exploded",
    "run": "many",
    "retry_limit": 5000,
}


@pytest.fixture(params=sorted(BAD_VALUES))
def bad_column(
    request: pytest.FixtureRequest, file_store: SqliteStore, raw_sql: Callable[..., list[tuple[Any, ...]]]
) -> str:
    """Rows 1 and 3 are good mark-ready rows (3 running); row 2 (running, in between) gets one bad column."""
    for number in (1, 2, 3):
        file_store.save(make_result(number, type="mark-ready", params={"n": number}))
    file_store.save(make_result(1, type="mark-ready", status=TaskStatus.COMPLETED, completed_at=at(5)))
    column: str = request.param
    raw_sql(f"UPDATE task_results SET {column} = ? WHERE id = ?", (BAD_VALUES[column], task_id(2)))
    return column


def test_list_skips_an_unreadable_row_and_warns_naming_its_id_and_column(
    file_store: SqliteStore, bad_column: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.store")
    assert [row.id for row in file_store.list()] == [task_id(3), task_id(1)]
    assert task_id(2) in caplog.text
    assert bad_column.split("_")[0] in caplog.text


def test_list_stale_skips_an_unreadable_running_row(file_store: SqliteStore, bad_column: str) -> None:
    assert [row.id for row in file_store.list_stale()] == [task_id(3)]


def test_get_of_an_unreadable_row_raises_naming_its_id(file_store: SqliteStore, bad_column: str) -> None:
    with pytest.raises(StoreError, match=task_id(2)):
        file_store.get(task_id(2))
    assert file_store.get(task_id(1)) is not None


def test_latest_by_type_refuses_rather_than_falling_back_to_an_older_row(
    file_store: SqliteStore, raw_sql: Callable[..., list[tuple[Any, ...]]], bad_column: str
) -> None:
    if bad_column == "submitted_at":
        # A garbage timestamp also changes where the row sorts; make it the newest on purpose.
        raw_sql("UPDATE task_results SET submitted_at = 'zzz' WHERE id = ?", (task_id(2),))
    else:
        raw_sql("DELETE FROM task_results WHERE id = ?", (task_id(3),))
    with pytest.raises(StoreError, match=task_id(2)):
        file_store.latest_by_type("mark-ready")


def test_messages_about_unreadable_rows_never_contain_their_content(
    file_store: SqliteStore, bad_column: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    file_store.list()
    with pytest.raises(StoreError) as raised:
        file_store.get(task_id(2))
    assert SECRET not in str(raised.value)
    assert SECRET not in caplog.text

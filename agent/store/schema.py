"""The `task_results` table: its peewee model, and the conversion between a row and a `TaskResult`.

The model is the single definition of the columns. Its field order is the Go sidecar's column order followed by ours,
so a fresh file and a migrated Go file have the same table. The model is never bound to a database: each `SqliteStore`
renders queries from it against its own connection.

Encoding (compatible with the Go sidecar's database, so either can read the other's rows):
- `params` is JSON text; no params is the JSON text `null` (as the Go sidecar writes it). `result` is JSON text or
  SQL NULL.
- Timestamps are fixed-width UTC text (`format_timestamp`: `2026-03-31T22:36:27.123400Z`), so text order is time
  order; `parse_timestamp` also reads the Go sidecar's trimmed RFC3339Nano form.
- `retryable` is 0/1; `retry` is two columns; `source` is four columns, all NULL when the task has no resource.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

import peewee
from peewee import SQL
from pydantic import ValidationError

from agent.models import TaskResult, TaskStatus, format_timestamp, parse_timestamp

TABLE = "task_results"


class PeeweeDatabase(Protocol):
    """The part of `peewee.SqliteDatabase` the store uses, with types (peewee's stubs leave its methods untyped)."""

    database: str

    def connect(self, reuse_if_open: bool = ...) -> bool: ...
    def close(self) -> bool: ...
    def is_closed(self) -> bool: ...
    def connection(self) -> sqlite3.Connection: ...
    def execute_sql(self, sql: str, params: Sequence[Any] | None = ...) -> sqlite3.Cursor: ...
    def execute(self, query: Any) -> sqlite3.Cursor: ...
    def pragma(self, key: str, value: Any = ..., permanent: bool = ...) -> Any: ...
    def atomic(self, lock_type: str | None = ...) -> AbstractContextManager[Any]: ...
    def get_sql_context(self) -> Any: ...


class TaskRow(peewee.Model):
    """One task's row. Columns up to `result` are the Go sidecar's (schema v1-v4); the rest are ours (step 10)."""

    id = peewee.TextField(primary_key=True)
    type = peewee.TextField()
    status = peewee.TextField()
    params = peewee.TextField(null=True)
    error = peewee.TextField(constraints=[SQL("DEFAULT ''")])
    submitted_at = peewee.TextField()
    completed_at = peewee.TextField(null=True)
    run = peewee.IntegerField(constraints=[SQL("DEFAULT 1")])
    result = peewee.TextField(null=True)
    resumes = peewee.IntegerField(constraints=[SQL("DEFAULT 0")])
    reason = peewee.TextField(constraints=[SQL("DEFAULT ''")])
    hint = peewee.TextField(constraints=[SQL("DEFAULT ''")])
    retryable = peewee.BooleanField(constraints=[SQL("DEFAULT 0")])
    started_at = peewee.TextField(null=True)
    timeout_seconds = peewee.IntegerField(null=True)
    retry_limit = peewee.IntegerField(constraints=[SQL("DEFAULT 0")])
    retry_backoff_seconds = peewee.FloatField(constraints=[SQL("DEFAULT 10.0")])
    retry_nonce = peewee.TextField(null=True)
    source_namespace = peewee.TextField(null=True)
    source_name = peewee.TextField(null=True)
    source_uid = peewee.TextField(null=True)
    source_generation = peewee.IntegerField(null=True)

    class Meta:
        table_name = TABLE


FIELDS: tuple[Any, ...] = tuple(TaskRow._meta.sorted_fields)
"""Every column's peewee field, in table order: the order of `encode_row`'s tuple and of every SELECT."""

COLUMNS: tuple[str, ...] = tuple(field.column_name for field in FIELDS)

_INSERT_INTO = f'INSERT INTO "{TABLE}" ({", ".join(COLUMNS)}) VALUES ({", ".join("?" for _ in COLUMNS)})'
# The hot statements are rendered once: peewee's per-query compilation costs several times a raw row write, and the
# engine writes on every transition (see SqliteStore's docstring).
SAVE_SQL = _INSERT_INTO.replace("INSERT INTO", "INSERT OR REPLACE INTO", 1)
INSERT_SQL = f"{_INSERT_INTO} ON CONFLICT (id) DO NOTHING"
GET_SQL = f'SELECT {", ".join(COLUMNS)} FROM "{TABLE}" WHERE id = ?'


class UnreadableRow(Exception):
    """A stored row that does not decode into a `TaskResult` (bad JSON, timestamp, status... written by someone else).

    The message names the task ID and the column, never the column's content (params may hold anything, so the
    message must be safe for logs).
    """

    def __init__(self, task_id: str, problem: str):
        super().__init__(f"row {task_id!r} is unreadable: {problem}")
        self.task_id = task_id


class UnencodableResult(ValueError):
    """A `TaskResult` whose params or result cannot be stored as JSON."""


def _json_text(value: dict[str, Any] | None, task_id: str, column: str) -> str:
    try:
        # allow_nan=False: NaN/Infinity are not JSON and would be unreadable for every other client of the file.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise UnencodableResult(f"task {task_id}: {column} cannot be stored as JSON: {error}") from error


def _timestamp_text(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def encode_row(result: TaskResult) -> tuple[Any, ...]:
    """The row of `result`, in `COLUMNS` order. Raises `UnencodableResult` naming the task and the column."""
    source = result.source
    return (
        result.id,
        result.type,
        str(result.status),
        _json_text(result.params, result.id, "params"),
        result.error,
        format_timestamp(result.submitted_at),
        _timestamp_text(result.completed_at),
        result.run,
        None if result.result is None else _json_text(result.result, result.id, "result"),
        result.resumes,
        result.reason,
        result.hint,
        int(result.retryable),
        _timestamp_text(result.started_at),
        result.timeout_seconds,
        result.retry.limit,
        result.retry.backoff_seconds,
        result.retry_nonce,
        None if source is None else source.namespace,
        None if source is None else source.name,
        None if source is None else source.uid,
        None if source is None else source.generation,
    )


T = TypeVar("T")


def _column(task_id: str, column: str, convert: Callable[[Any], T], value: Any) -> T:
    """`convert(value)`, or `UnreadableRow` naming the column. Converters raise messages without the value."""
    try:
        return convert(value)
    except (ValueError, TypeError) as error:
        raise UnreadableRow(task_id, f"column {column}: {error}") from error


def _json_object(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    decoded = json.loads(value)  # JSONDecodeError is a ValueError; its message has a position, not the content
    if decoded is not None and not isinstance(decoded, dict):
        raise ValueError(f"JSON {type(decoded).__name__} where an object or null is expected")
    return decoded


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} where timestamp text is expected")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise ValueError("not an RFC 3339 timestamp") from None  # parse_timestamp's message quotes the text


def _optional_timestamp(value: Any) -> datetime | None:
    return None if value is None else _timestamp(value)


def _status(value: Any) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        raise ValueError(f"not one of {', '.join(TaskStatus)}") from None


def _source(namespace: str | None, name: str | None, uid: str | None, generation: int | None) -> dict[str, Any] | None:
    # A dict, not a ResourceRef, so that a validation error is located as `source.<field>` in the message.
    if namespace is None and name is None:
        return None
    return {"namespace": namespace or "", "name": name or "", "uid": uid or "", "generation": generation or 0}


def decode_row(row: Sequence[Any]) -> TaskResult:
    """The `TaskResult` of a row in `COLUMNS` order. Raises `UnreadableRow` naming the task ID and the column."""
    (
        task_id,
        task_type,
        status,
        params,
        error,
        submitted_at,
        completed_at,
        run,
        result,
        resumes,
        reason,
        hint,
        retryable,
        started_at,
        timeout_seconds,
        retry_limit,
        retry_backoff_seconds,
        retry_nonce,
        source_namespace,
        source_name,
        source_uid,
        source_generation,
    ) = row
    try:
        return TaskResult(
            id=task_id,
            type=task_type,
            status=_column(task_id, "status", _status, status),
            run=run,
            resumes=resumes,
            params=_column(task_id, "params", _json_object, params),
            result=_column(task_id, "result", _json_object, result),
            error=error,
            reason=reason,
            hint=hint,
            retryable=bool(retryable),
            submitted_at=_column(task_id, "submitted_at", _timestamp, submitted_at),
            started_at=_column(task_id, "started_at", _optional_timestamp, started_at),
            completed_at=_column(task_id, "completed_at", _optional_timestamp, completed_at),
            timeout_seconds=timeout_seconds,
            retry={"limit": retry_limit, "backoff_seconds": retry_backoff_seconds},
            retry_nonce=retry_nonce,
            source=_source(source_namespace, source_name, source_uid, source_generation),
        )
    except ValidationError as invalid:
        # Described without the offending input: a row's values may hold anything a submitter put in params.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc']) or 'row'}: {detail['msg']}"
            for detail in invalid.errors(include_url=False, include_input=False)
        )
        raise UnreadableRow(str(task_id), problems) from invalid

"""The task store on SQLite through peewee: `SqliteStore(path)` and `memory_store()`.

Where the file must live
    On block storage (a local disk or a ReadWriteOnce volume such as EBS), never on NFS/EFS or another network file
    system. The store runs in WAL mode, which relies on POSIX advisory locks and on a shared-memory index (`-shm`,
    mmap-ed by every connection); network file systems implement neither reliably, so two writers (the agent and a
    `sqlite3` shell, or an old and a new pod during a rollout) can both believe they hold the write lock and corrupt
    the database.

Settings (applied on every connection peewee opens, and read back in the tests)
    `journal_mode=WAL` (readers and the writer do not block each other; set once after the schema-version check,
    since it changes the file), `busy_timeout=5000` ms (wait for another process's write lock instead of failing), and
    `synchronous` = NORMAL (default) or FULL. With WAL, NORMAL keeps the database consistent on any crash and durable
    on a process crash; only an OS crash or power loss can drop the last commits, which the engine re-runs anyway
    (handlers are idempotent). FULL also fsyncs every commit. Kept a constructor option for the engine benchmark.

Threads and connections
    One store object holds one connection (`check_same_thread=False`, peewee with `thread_safe=False`, so peewee does
    not open a new connection per thread) and serialises every call with a lock. This is what makes `:memory:` work at
    all (each new connection to `:memory:` is a new, empty database), it makes the check-and-insert of `insert` atomic
    between threads (and SQLite's write lock makes it atomic between processes), and it costs nothing that matters at a
    node agent's rate of a few rows per second. Every statement runs in autocommit; `save_many`, `prune` and each
    migration step run in a transaction.

Speed
    The engine calls the store on its event loop for every transition, so the hot statements (`save`, `insert`, `get`)
    are rendered once from the peewee model and executed directly on the connection: peewee's per-query compilation
    costs several times a raw row write. The other operations use peewee's query builder. Rows are never written
    through peewee's `execute`, which logs bound values at DEBUG level: params must not reach a log.

One process per store (`exclusive=True`, used by `nodetask-agent run` and `local`)
    The process that runs tasks holds an exclusive `flock` on `<db>.lock` beside the database for as long as the
    store is open; a second runner on the same file (`nodetask-agent local` pointed at a live agent's home) is refused
    with `StoreInUse` naming the holder's PID, instead of running the same task a second time, concurrently. Readers
    (`nodetask-agent tasks`, tests) open without it. The lock file also records whether the previous runner stopped
    cleanly: `unclean_stops` counts the consecutive runner processes that ended without closing the store (killed,
    OOM-killed, crashed), which the engine uses to stop resuming a task that keeps killing the agent.

Unreadable rows (bad JSON, timestamps or statuses written by another program)
    `list` and `list_stale` skip such a row and log a warning naming its ID and column (one bad row must not hide the
    others, nor stop recovery of the rest). `get` and `latest_by_type` raise `StoreError` naming the ID: the caller
    asked about that very row, and readiness must never be restored from an older row because the newest one is
    unreadable. Text with unpaired UTF-16 surrogates (which SQLite cannot store) is written with U+FFFD in their place,
    so that a task's final state can always be recorded.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import peewee

from agent.io.files import TEMP_SUFFIX
from agent.models import TaskResult, TaskStatus, TaskType, format_timestamp

from . import migrations
from .base import OrderColumn, StoreError, StoreInUse
from .schema import (
    FIELDS,
    GET_SQL,
    INSERT_SQL,
    SAVE_SQL,
    PeeweeDatabase,
    TaskRow,
    UnencodableResult,
    UnreadableRow,
    decode_row,
    encode_row,
)

log = logging.getLogger(__name__)

MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 5000
_DB_ERRORS = (sqlite3.Error, peewee.PeeweeException)
_ORDER_FIELDS: dict[str, Any] = {"submitted_at": TaskRow.submitted_at, "completed_at": TaskRow.completed_at}
_ORDERS: tuple[OrderColumn, ...] = ("completed_at", "submitted_at")
# Readiness is restored at start-up from the newest completed row of these types, so prune always keeps it.
_READINESS_TYPES = (TaskType.MARK_READY, TaskType.MARK_NOT_READY)


def _of(task_id: str | None) -> str:
    return "" if task_id is None else f" of task {task_id}"


def _scrub(value: Any) -> Any:
    """`value` with unpaired surrogates replaced by U+FFFD (SQLite stores UTF-8, which cannot encode them)."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


class SqliteStore:
    """The task store in one SQLite file (or `:memory:`); see the module docstring for the decisions behind it."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        exclusive: bool = False,
        owner: dict[str, str] | None = None,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.path = str(path)
        self.synchronous = synchronous
        self._lock = threading.Lock()
        self._closed = False
        self._owner_fd: int | None = None
        self.unclean_stops = 0
        """Consecutive runner processes that ended without closing this store (0 unless `exclusive`)."""
        self.owner = dict(owner or {})
        """Recorded in the lock file for the next owner (e.g. the pod UID), beside the PID."""
        self.previous_owner: dict[str, Any] = {}
        """What the previous owner recorded (empty on the first exclusive open)."""
        if exclusive and self.path != MEMORY:
            self._take_ownership()
        self._db: PeeweeDatabase = peewee.SqliteDatabase(
            self.path,
            pragmas=[("busy_timeout", BUSY_TIMEOUT_MS), ("synchronous", synchronous)],
            timeout=BUSY_TIMEOUT_MS / 1000,
            thread_safe=False,
            autoconnect=False,
            check_same_thread=False,
        )
        try:
            self._conn: sqlite3.Connection = self._open()
        except BaseException:
            self._release_ownership(clean=False)
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r}, synchronous={self.synchronous!r})"

    # -- opening -----------------------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self._db.connect()
            migrations.refuse_newer(self._db)  # before WAL: a refused file is left exactly as it was
            self._use_wal()
            migrations.migrate(self._db)
            connection: sqlite3.Connection = self._db.connection()
            return connection
        except (StoreError, *_DB_ERRORS) as error:
            if not self._db.is_closed():
                self._db.close()
            raise StoreError(f"cannot open task store {self.path}: {self._explain(error)}") from error

    @property
    def lock_path(self) -> Path:
        return Path(f"{self.path}.lock")

    def _take_ownership(self) -> None:
        """Take `<db>.lock` exclusively (refusing with `StoreInUse` if another process holds it) and read how the
        previous owner stopped."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreError(f"cannot open task store lock {self.lock_path}: {error}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_owner(fd).get("pid", "unknown")
            os.close(fd)
            raise StoreInUse(
                f"task store {self.path} is in use by another process (pid {holder}, lock {self.lock_path}): only one "
                "agent may run tasks from one store; stop it first, or use another home/--db"
            ) from None
        previous = _read_owner(fd)
        if previous and previous.get("cleanStop") is not True:
            self.unclean_stops = int(previous.get("uncleanStops") or 0) + 1
        self.previous_owner = previous
        self._owner_fd = fd
        self._write_owner({"cleanStop": False, "uncleanStops": self.unclean_stops})

    def _write_owner(self, state: dict[str, Any]) -> None:
        # In place (never replaced: the flock belongs to this inode); a torn write reads as an unclean stop.
        assert self._owner_fd is not None
        data = json.dumps({**self.owner, "pid": os.getpid(), **state}).encode()
        os.ftruncate(self._owner_fd, 0)
        os.pwrite(self._owner_fd, data, 0)
        os.fsync(self._owner_fd)

    def _release_ownership(self, *, clean: bool) -> None:
        if self._owner_fd is None:
            return
        try:
            if clean:
                self._write_owner({"cleanStop": True, "uncleanStops": 0})
        except OSError as error:
            log.warning("task store %s: cannot record the clean stop in %s: %s", self.path, self.lock_path, error)
        finally:
            os.close(self._owner_fd)  # closing the descriptor releases the flock
            self._owner_fd = None

    def _use_wal(self) -> None:
        mode = str(self._db.pragma("journal_mode", "wal", permanent=True)).lower()
        expected = "memory" if self.path == MEMORY else "wal"
        if mode != expected:
            raise StoreError(f"journal_mode is {mode!r}, not 'wal' (is the file on block storage, not NFS/EFS?)")

    def _explain(self, error: Exception) -> str:
        """The cause, plus what SQLite's "unable to open database file" usually means here."""
        text = str(error)
        if "unable to open" in text and self.path != MEMORY:
            where = Path(self.path)
            if where.is_dir():
                text += " (the path is a directory)"
            elif not where.parent.is_dir():
                text += f" (directory {where.parent} does not exist)"
            elif not os.access(where.parent, os.W_OK):
                text += f" (directory {where.parent} is not writable)"
        return text

    # -- plumbing ----------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _access(self, action: str, task_id: str | None = None) -> Iterator[sqlite3.Connection]:
        """Hold the store's lock for one operation and turn database errors into `StoreError`."""
        with self._lock:
            if self._closed:
                raise StoreError(f"task store {self.path} is closed: cannot {action}{_of(task_id)}")
            try:
                yield self._conn
            except _DB_ERRORS as error:
                raise StoreError(f"task store {self.path}: {action}{_of(task_id)} failed: {error}") from error

    def _encode(self, result: TaskResult, action: str) -> tuple[Any, ...]:
        try:
            return encode_row(result)
        except UnencodableResult as error:
            raise StoreError(f"task store {self.path}: cannot {action} {error}") from error

    def _write(self, connection: sqlite3.Connection, sql: str, row: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return connection.execute(sql, row)
        except UnicodeEncodeError:
            log.warning(
                "task store %s: task %s has unpaired surrogates in its text; stored as U+FFFD", self.path, row[0]
            )
            return connection.execute(sql, tuple(_scrub(value) for value in row))

    def _fetch(self, action: str, query: Any) -> builtins.list[Sequence[Any]]:
        with self._access(action):
            rows: builtins.list[Sequence[Any]] = self._db.execute(query).fetchall()
            return rows

    def _decode(self, row: Sequence[Any]) -> TaskResult:
        try:
            return decode_row(row)
        except UnreadableRow as error:
            raise StoreError(f"task store {self.path}: {error}") from error

    def _readable(self, rows: Sequence[Sequence[Any]]) -> builtins.list[TaskResult]:
        results = []
        for row in rows:
            try:
                results.append(decode_row(row))
            except UnreadableRow as error:
                log.warning("task store %s: skipping %s", self.path, error)
        return results

    # -- the Store interface -----------------------------------------------------------------------------------------

    def save(self, result: TaskResult) -> None:
        """Insert or overwrite the row of `result.id` (every column; `progress` is not persisted)."""
        row = self._encode(result, "save")
        with self._access("save", result.id) as connection:
            self._write(connection, SAVE_SQL, row)

    def save_many(self, results: Sequence[TaskResult]) -> None:
        """`save` every row of `results` in one transaction (all or none): one commit instead of one per row, which
        is what a restart's 1,000 resumed rows cost otherwise."""
        rows = [self._encode(result, "save") for result in results]
        if not rows:
            return
        with self._access(f"save {len(rows)} tasks"), self._db.atomic():
            for row in rows:
                self._write(self._conn, SAVE_SQL, row)

    def insert(self, result: TaskResult) -> bool:
        """Insert `result` unless its ID exists; True if this call inserted it (atomic, see the module docstring)."""
        row = self._encode(result, "insert")
        with self._access("insert", result.id) as connection:
            return self._write(connection, INSERT_SQL, row).rowcount == 1

    def get(self, task_id: str) -> TaskResult | None:
        """The row of `task_id` or None; `StoreError` naming the ID when the row is unreadable."""
        with self._access("get", task_id) as connection:
            row = connection.execute(GET_SQL, (task_id,)).fetchone()
        return None if row is None else self._decode(row)

    def list(self, limit: int = 100, *, after: TaskResult | None = None) -> builtins.list[TaskResult]:
        """At most `limit` rows, newest `submitted_at` first (ties by ID); unreadable rows are skipped and logged.
        With `after`, the rows that come after that row in this order (a page of a longer listing)."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        query = TaskRow.select(*FIELDS)
        if after is not None:
            stamp = format_timestamp(after.submitted_at)
            query = query.where(
                (TaskRow.submitted_at < stamp) | ((TaskRow.submitted_at == stamp) & (TaskRow.id < after.id))
            )
        query = query.order_by(TaskRow.submitted_at.desc(), TaskRow.id.desc()).limit(limit)
        return self._readable(self._fetch("list tasks", query))

    def list_stale(self) -> builtins.list[TaskResult]:
        """Rows still `running`, oldest `submitted_at` first; unreadable rows are skipped and logged."""
        query = (
            TaskRow.select(*FIELDS)
            .where(TaskRow.status == TaskStatus.RUNNING.value)
            .order_by(TaskRow.submitted_at.asc(), TaskRow.id.asc())
        )
        return self._readable(self._fetch("list running tasks", query))

    def delete(self, task_id: str) -> bool:
        """Remove the row of `task_id`; whether there was one."""
        with self._access("delete", task_id):
            return bool(self._db.execute(TaskRow.delete().where(TaskRow.id == task_id)).rowcount > 0)

    def latest_by_type(
        self, task_type: str, *, status: TaskStatus | None = None, order_by: OrderColumn = "submitted_at"
    ) -> TaskResult | None:
        """The newest row of `task_type` (only with `status` when given) by `order_by`, ties by `submitted_at` then ID.

        Ordering by `completed_at` considers only rows that have completed. An unreadable newest row is a `StoreError`
        naming its ID, never a silent fall-back to an older row.
        """
        rows = self._fetch(f"find the latest {task_type}", _latest_query(task_type, status, order_by))
        return self._decode(rows[0]) if rows else None

    def prune(self, older_than: datetime, *, keep_newest: int | None = None) -> int:
        """Delete terminal rows that completed before `older_than` (a row without `completed_at` counts from its
        submission) and, with `keep_newest`, every terminal row but the `keep_newest` that finished last; `running`
        rows and the newest completed mark-ready and mark-not-ready (by completion and by submission) are always
        kept. Returns how many rows were deleted. `older_than` must be timezone-aware."""
        if older_than.tzinfo is None:
            raise ValueError("prune needs a timezone-aware datetime (a naive one would be read as local time)")
        if keep_newest is not None and keep_newest < 0:
            raise ValueError(f"keep_newest must be >= 0, not {keep_newest}")
        cutoff = format_timestamp(older_than)
        finished = peewee.fn.COALESCE(TaskRow.completed_at, TaskRow.submitted_at)
        with self._access("prune"), self._db.atomic():
            keep = [
                row[0]
                for task_type in _READINESS_TYPES
                for order_by in _ORDERS
                for row in self._db.execute(
                    _latest_query(task_type, TaskStatus.COMPLETED, order_by).select(TaskRow.id)
                ).fetchall()
            ]
            terminal = TaskRow.status != TaskStatus.RUNNING.value
            expired = finished < cutoff
            if keep_newest is not None:
                newest = (
                    TaskRow.select(TaskRow.id)
                    .where(terminal)
                    .order_by(finished.desc(), TaskRow.id.desc())
                    .limit(keep_newest)
                )
                expired = expired | TaskRow.id.not_in(newest)
            query = TaskRow.delete().where(terminal, expired, TaskRow.id.not_in(keep))
            deleted: int = self._db.execute(query).rowcount
        if deleted:
            beyond = f" or beyond the newest {keep_newest}" if keep_newest is not None else ""
            log.info("task store %s: pruned %d task(s) completed before %s%s", self.path, deleted, cutoff, beyond)
        return deleted

    def probe_write(self) -> None:
        """`StoreError` unless the write lock can be taken now and the volume accepts a 64 KiB file beside the
        database (a full volume does not stop `BEGIN IMMEDIATE`, only the writes after it)."""
        with self._access("take the write lock (probe)") as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                if self.path != MEMORY:
                    probe = Path(f"{self.path}.probe{TEMP_SUFFIX}")
                    try:
                        with probe.open("wb") as handle:
                            handle.write(b"\0" * 65536)
                            handle.flush()
                            os.fsync(handle.fileno())
                    except OSError as error:
                        problem = f"task store {self.path}: cannot write beside the database: {error}"
                        raise StoreError(problem) from error
                    finally:
                        probe.unlink(missing_ok=True)
            finally:
                connection.execute("ROLLBACK")

    def ping(self) -> bool:
        """Whether `SELECT 1` answers: False once closed or when the database fails."""
        with self._lock:
            if self._closed:
                return False
            try:
                return bool(self._conn.execute("SELECT 1").fetchone() == (1,))
            except sqlite3.Error as error:
                log.warning("task store %s: ping failed: %s", self.path, error)
                return False

    def close(self) -> None:
        """Close the connection (idempotent). Every later call raises `StoreError`; `ping` returns False."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.close()
            except _DB_ERRORS as error:
                self._release_ownership(clean=False)
                raise StoreError(f"task store {self.path}: close failed: {error}") from error
            self._release_ownership(clean=True)

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _read_owner(fd: int) -> dict[str, Any]:
    """The lock file's record of its last owner ({} when empty or unreadable)."""
    try:
        data = os.pread(fd, 4096, 0)
        state = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {"cleanStop": False}
    return state if isinstance(state, dict) else {"cleanStop": False}


def _latest_query(task_type: str, status: TaskStatus | None, order_by: OrderColumn) -> Any:
    if order_by not in _ORDER_FIELDS:
        raise ValueError(f"order_by must be one of {sorted(_ORDER_FIELDS)}, not {order_by!r}")
    query = TaskRow.select(*FIELDS).where(TaskRow.type == str(task_type))
    if status is not None:
        query = query.where(TaskRow.status == str(status))
    if order_by == "completed_at":
        query = query.where(TaskRow.completed_at.is_null(False))
    return query.order_by(_ORDER_FIELDS[order_by].desc(), TaskRow.submitted_at.desc(), TaskRow.id.desc()).limit(1)


def memory_store() -> SqliteStore:
    """A store in `:memory:` with the file store's behaviour (one shared connection, so every thread sees it)."""
    return SqliteStore(MEMORY)

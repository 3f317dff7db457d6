"""Schema versions of the task store, tracked in `PRAGMA user_version`, and the steps between them.

The file may have been written by the Go sidecar (seictl) on the same PVC, so its history is mirrored:

| version | written by       | change                                                                              |
|---------|------------------|-------------------------------------------------------------------------------------|
| 0       | nobody           | empty file                                                                          |
| 1       | seictl           | `task_results(id, type, status, params, schedule, error, submitted_at,              |
|         |                  | completed_at, next_run_at)`, index on `submitted_at DESC`, partial schedule index   |
| 2       | seictl (v0.0.26) | drops `schedule`, `next_run_at` and their index (ALTER TABLE DROP COLUMN: needs     |
|         |                  | SQLite >= 3.35, checked before the step runs)                                       |
| 3       | seictl           | `run INTEGER NOT NULL DEFAULT 1`                                                    |
| 4       | seictl           | `result TEXT` (NULL when there is no result)                                        |
| 5       | seictl (HEAD)    | table `tx_markers` (signed-tx idempotency). Left untouched; each marker is also     |
|         |                  | imported as the agent's tx record (`import_go_tx_markers`), so it is adopted         |
| 6-9     | reserved         | room for later seictl steps; a file at any of them still gets step 10               |
| 10      | this agent       | adds each of our columns that is missing (`resumes, reason, hint, retryable,        |
|         |                  | started_at, timeout_seconds, retry_limit, retry_backoff_seconds, retry_nonce,       |
|         |                  | source_*`), an index on `(type, submitted_at)`, and rewrites Go's trimmed           |
|         |                  | RFC3339Nano timestamps into our fixed-width form so text order is time order;       |
|         |                  | a running Go `snapshot-upload` (an endless loop there) gets `intervalSeconds`       |

Rules:
- Each step runs in its own transaction and sets `user_version` inside it, so a crash leaves the file at a whole
  version. Steps only add what is missing, so re-running one after an interrupted start is harmless.
- A fresh file (version 0, no table) is created at the latest version in one transaction, from the `TaskRow` model.
- A file at a version above `LATEST_VERSION` was written by newer code: it is refused before anything is changed
  (not even the journal mode), because this code cannot know what its columns mean.
- Timestamps that do not parse are left as they are (and logged with their task IDs); reads then report those rows
  as unreadable instead of the whole migration failing.
- A file already at our version still gets its foreign timestamps rewritten on open (`normalise_timestamps`): a Go
  sidecar rolled back onto the PVC can write to it (its inserts name their columns; ours have defaults).
- On every open, the Go sidecar's `tx_markers` (if the table exists) are imported as the agent's transaction records
  (`import_go_tx_markers`): a gov task the Go sidecar signed and broadcast is adopted by the agent, never signed again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import peewee

from agent.chain.broadcast import IMPORTED_FROM_GO, TxRecord, TxRecords
from agent.chain.cosmos.proto import MsgSubmitProposal, MsgVote, ProtoError, TxBody, TxRaw
from agent.chain.cosmos.tx import tx_hash
from agent.models import format_timestamp, parse_timestamp, utcnow
from agent.models.settings import AgentSettings, SettingsError

from .base import StoreError
from .schema import FIELDS, TABLE, PeeweeDatabase, TaskRow

log = logging.getLogger(__name__)

LATEST_VERSION = 10
DROP_COLUMN_SINCE = (3, 35, 0)

_SEED_V1_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT,
    schedule TEXT,
    error TEXT NOT NULL DEFAULT '',
    submitted_at TEXT NOT NULL,
    completed_at TEXT,
    next_run_at TEXT
)"""
_SEED_INDEX = f"CREATE INDEX IF NOT EXISTS idx_task_results_submitted_at ON {TABLE} (submitted_at DESC)"
_SEED_SCHEDULE_INDEX = (
    f"CREATE INDEX IF NOT EXISTS idx_task_results_schedule ON {TABLE} (next_run_at) WHERE schedule IS NOT NULL"
)
_TYPE_INDEX = f"CREATE INDEX IF NOT EXISTS idx_task_results_type_submitted_at ON {TABLE} (type, submitted_at)"

_FIXED_WIDTH = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_FIXED_GLOB = (
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z"
)
# A row with a timestamp not in our fixed-width form (three `?`: the glob above, once per timestamp column).
_FOREIGN_TIMESTAMP = (
    "submitted_at NOT GLOB ? OR (completed_at IS NOT NULL AND completed_at NOT GLOB ?) "
    "OR (started_at IS NOT NULL AND started_at NOT GLOB ?)"
)


def sqlite_version_info() -> tuple[int, ...]:
    """The SQLite library this Python links (a function so that tests can pretend to be an old one)."""
    return sqlite3.sqlite_version_info


def user_version(db: PeeweeDatabase) -> int:
    return int(db.pragma("user_version"))


def _columns(db: PeeweeDatabase) -> set[str]:
    return {row[1] for row in db.execute_sql(f"PRAGMA table_info({TABLE})").fetchall()}


def _add_column_if_missing(db: PeeweeDatabase, name: str, definition: str) -> None:
    if name not in _columns(db):
        db.execute_sql(f"ALTER TABLE {TABLE} ADD COLUMN {definition}")


def _v1_seed_table(db: PeeweeDatabase) -> None:
    db.execute_sql(_SEED_V1_TABLE)
    db.execute_sql(_SEED_INDEX)
    db.execute_sql(_SEED_SCHEDULE_INDEX)


def _v2_drop_schedule(db: PeeweeDatabase) -> None:
    db.execute_sql("DROP INDEX IF EXISTS idx_task_results_schedule")
    for column in ("schedule", "next_run_at"):
        if column not in _columns(db):
            continue
        if sqlite_version_info() < DROP_COLUMN_SINCE:
            raise StoreError(
                f"migration to schema version 2 drops column {column!r}, which needs SQLite >= "
                f"{'.'.join(map(str, DROP_COLUMN_SINCE))} (ALTER TABLE DROP COLUMN); this Python links SQLite "
                f"{'.'.join(map(str, sqlite_version_info()))}"
            )
        db.execute_sql(f"ALTER TABLE {TABLE} DROP COLUMN {column}")


def _v3_run(db: PeeweeDatabase) -> None:
    _add_column_if_missing(db, "run", "run INTEGER NOT NULL DEFAULT 1")


def _v4_result(db: PeeweeDatabase) -> None:
    _add_column_if_missing(db, "result", "result TEXT")


def _fixed_width_or_unchanged(text: str | int | float | bytes | None) -> str | int | float | bytes | None:
    if not isinstance(text, str) or _FIXED_WIDTH.fullmatch(text):
        return text
    try:
        return format_timestamp(parse_timestamp(text))
    except ValueError:
        return text


def _v10_agent_columns(db: PeeweeDatabase) -> None:
    existing = _columns(db)
    for field in FIELDS:
        if field.column_name not in existing:
            context = db.get_sql_context()
            definition, _ = context.sql(field.ddl(context)).query()
            db.execute_sql(f"ALTER TABLE {TABLE} ADD COLUMN {definition}")
    db.execute_sql(_SEED_INDEX)
    db.execute_sql(_TYPE_INDEX)

    normalise_timestamps(db)
    keep_go_upload_loops(db)


def _rows_with_foreign_timestamps(db: PeeweeDatabase) -> list[str]:
    rows = db.execute_sql(f"SELECT id FROM {TABLE} WHERE {_FOREIGN_TIMESTAMP}", (_FIXED_GLOB,) * 3).fetchall()
    return [str(row[0]) for row in rows]


def normalise_timestamps(db: PeeweeDatabase) -> None:
    """Rewrite timestamps that are not in our fixed-width form (the Go sidecar's trimmed RFC3339Nano) into it.

    Part of step 10, and run on every open of a file already at our version as well: a
    rolled-back Go sidecar can open our file, and the rows it writes carry its own format again. Only those rows are
    touched; timestamps that do not parse at all are left as they are and logged with their task IDs.
    """
    if not _rows_with_foreign_timestamps(db):
        return
    connection = db.connection()
    connection.create_function("nodetask_fixed_timestamp", 1, _fixed_width_or_unchanged, deterministic=True)
    try:
        db.execute_sql(
            f"UPDATE {TABLE} SET submitted_at = nodetask_fixed_timestamp(submitted_at), "
            "completed_at = nodetask_fixed_timestamp(completed_at), started_at = nodetask_fixed_timestamp(started_at) "
            f"WHERE {_FOREIGN_TIMESTAMP}",
            (_FIXED_GLOB,) * 3,
        )
    finally:
        connection.create_function("nodetask_fixed_timestamp", 1, None)
    unparsed = _rows_with_foreign_timestamps(db)
    if unparsed:
        log.warning(
            "task store %s: %d row(s) keep timestamps that do not parse and will be reported unreadable: %s",
            db.database,
            len(unparsed),
            ", ".join(unparsed[:20]) + (" ..." if len(unparsed) > 20 else ""),
        )


GO_UPLOAD_TYPE = "snapshot-upload"


def _go_upload_interval() -> int:
    """The Go sidecar's loop period: `SEI_SNAPSHOT_UPLOAD_INTERVAL` of this process (the pod's environment, which
    the Go sidecar ran with), parsed as the settings parse it; its default when unset or unusable."""
    variable = "SEI_SNAPSHOT_UPLOAD_INTERVAL"
    try:
        return AgentSettings.from_env({variable: os.environ.get(variable, "")}).snapshot_upload_interval_seconds
    except SettingsError:
        return int(AgentSettings.model_fields["snapshot_upload_interval_seconds"].default)


def keep_go_upload_loops(db: PeeweeDatabase) -> None:
    """Part of step 10: a `snapshot-upload` the Go sidecar left running is its endless loop (upload, sleep
    `SEI_SNAPSHOT_UPLOAD_INTERVAL`, repeat); ours loops only with `intervalSeconds`, so the row gets it and resumes
    as a loop instead of uploading once and completing. Rows of ours (already with the param) are left alone."""
    rows = db.execute_sql(
        f"SELECT id, params FROM {TABLE} WHERE type = ? AND status = 'running'", (GO_UPLOAD_TYPE,)
    ).fetchall()
    for task_id, text in rows:
        try:
            params = json.loads(text) if text else None
        except ValueError:
            continue  # unreadable params: the row fails on resume, naming them
        params = params if isinstance(params, dict) else {}
        if "intervalSeconds" in params:
            continue
        params["intervalSeconds"] = _go_upload_interval()
        db.execute_sql(f"UPDATE {TABLE} SET params = ? WHERE id = ?", (json.dumps(params), task_id))
        log.info(
            "task store %s: Go snapshot-upload loop %s resumes every %ds",
            db.database,
            task_id,
            params["intervalSeconds"],
        )


STEPS: tuple[tuple[int, Callable[[PeeweeDatabase], None]], ...] = (
    (1, _v1_seed_table),
    (2, _v2_drop_schedule),
    (3, _v3_run),
    (4, _v4_result),
    (LATEST_VERSION, _v10_agent_columns),
)


def refuse_newer(db: PeeweeDatabase) -> int:
    """The file's schema version; `StoreError` when it is newer than this code knows (nothing is changed)."""
    version = user_version(db)
    if version > LATEST_VERSION:
        raise StoreError(
            f"schema version {version} is newer than this agent knows (latest {LATEST_VERSION}); "
            "it was written by a newer agent: run that version or restore an older database"
        )
    return version


def _table_exists(db: PeeweeDatabase) -> bool:
    found: Any = db.execute_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone()
    return found is not None


def _create_latest(db: PeeweeDatabase) -> None:
    peewee.SchemaManager(TaskRow, cast(peewee.Database, db)).create_table(safe=False)
    db.execute_sql(_SEED_INDEX)
    db.execute_sql(_TYPE_INDEX)


def migrate(db: PeeweeDatabase) -> int:
    """Bring the open database to `LATEST_VERSION`; returns the version it started at. Raises `StoreError` for a
    newer file or an impossible step; a failing step is rolled back and leaves the file at the previous version."""
    start = refuse_newer(db)
    # What needs doing is checked again under the write lock (BEGIN IMMEDIATE): another process may be opening the
    # same file this instant (the agent starting on a fresh volume while `nodetask-agent tasks` reads it), and
    # whoever comes second must find the schema made, not create it again. An up-to-date file takes no lock.
    if start == 0 and not _table_exists(db):
        with db.atomic("IMMEDIATE"):
            if refuse_newer(db) == 0 and not _table_exists(db):
                _create_latest(db)
                db.pragma("user_version", LATEST_VERSION)
                return start
    previous = start
    for version, step in STEPS:
        if version <= start:
            continue
        with db.atomic("IMMEDIATE"):
            if version <= refuse_newer(db):
                continue
            step(db)
            db.pragma("user_version", version)
        log.info("task store %s: migrated schema from version %d to %d", db.database, previous, version)
        previous = version
    if start == LATEST_VERSION:
        with db.atomic():
            normalise_timestamps(db)
    import_go_tx_markers(db)
    return start


# --- the Go sidecar's tx_markers -----------------------------------------------------------------------------------

_MEMORY = ":memory:"


def _go_signer(tx_bytes: bytes) -> str:
    """The signer of a Go sidecar gov transaction: the voter of its MsgVote or the proposer of its MsgSubmitProposal
    (the Go pipeline sets them to the signing key's address); empty when the bytes say neither."""
    try:
        body = TxBody.decode(TxRaw.decode(tx_bytes).body_bytes)
        first = body.messages[0] if body.messages else None
        if first is not None and first.type_url == MsgVote.TYPE_URL:
            return MsgVote.decode(first.value).voter
        if first is not None and first.type_url == MsgSubmitProposal.TYPE_URL:
            return MsgSubmitProposal.decode(first.value).proposer
    except ProtoError:
        pass
    return ""


def _marker_record(row: tuple[Any, ...]) -> TxRecord:
    task_id, marker_hash, tx_bytes, account_number, sequence, chain_id, created_at, run = row
    raw = bytes(tx_bytes or b"")
    if not raw or tx_hash(raw) != str(marker_hash or "").upper():
        raise ValueError("its tx_hash is not the SHA-256 of its tx_bytes")
    try:
        created = format_timestamp(parse_timestamp(str(created_at)))
    except ValueError:
        created = format_timestamp(utcnow())
    return TxRecord(
        task_id=str(task_id).lower(),
        run=int(run or 1),
        params_hash=IMPORTED_FROM_GO,
        chain_id=str(chain_id or ""),
        signer=_go_signer(raw),
        account_number=int(account_number or 0),
        sequence=int(sequence or 0),
        tx_hash=tx_hash(raw),
        tx_bytes=raw,
        created_at=created,
    )


def import_go_tx_markers(db: PeeweeDatabase, home: Path | None = None) -> int:
    """Write each Go sidecar `tx_markers` row as the agent's tx record (`agent.chain.broadcast`), so that the gov
    task it belongs to adopts that transaction instead of signing a second one. Returns how many were written.

    `home` defaults to the store file's directory: the Go sidecar keeps `sidecar.db` in its home, and the agent's
    default store lives there too. A record that already exists (the agent's own, or imported before) is never
    replaced; a marker that does not hold together (hash not of its bytes, an unusable task ID) is logged and
    skipped. The table itself is left untouched, so a rolled-back Go sidecar still finds its markers.
    """
    if db.database == _MEMORY:
        return 0
    found: Any = db.execute_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tx_markers'").fetchone()
    if found is None:
        return 0
    run_column = "t.run" if "run" in _columns(db) else "1"
    rows = db.execute_sql(
        "SELECT m.task_id, m.tx_hash, m.tx_bytes, m.account_number, m.sequence, m.chain_id, m.created_at, "
        f"{run_column} FROM tx_markers m LEFT JOIN {TABLE} t ON t.id = m.task_id"
    ).fetchall()
    records = TxRecords(home if home is not None else Path(str(db.database)).resolve().parent)
    written = 0
    for row in rows:
        try:
            if records.path(str(row[0]).lower()).exists():
                continue
            record = _marker_record(tuple(row))
            records.save(record)
        except (ValueError, OSError) as error:
            log.warning("Go sidecar tx marker of task %s not imported: %s", row[0], error)
            continue
        written += 1
        log.info(
            "imported the Go sidecar's tx %s of task %s (sequence %d) as a tx record: the task adopts it",
            record.tx_hash,
            record.task_id,
            record.sequence,
        )
    return written

"""The task and its result: what the engine is asked to do and what the store remembers about it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from pydantic.alias_generators import to_camel

from .errors import InvalidTaskID
from .types import Phase, TaskStatus

_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_CANONICAL = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def normalize_task_id(task_id: str) -> str:
    """Canonical lowercase form of a task ID, or `InvalidTaskID`.

    Accepts the forms google/uuid `Parse` accepts (so every ID the Go sidecar took is taken): canonical 36 characters
    in any case, 32 bare hex digits, the braced 38-character form and the `urn:uuid:` form. The ID is canonicalised, so
    upper- and lowercase spellings of one UUID are one task.
    """
    text = task_id
    if len(text) == 45 and text[:9].lower() == "urn:uuid:":
        text = text[9:]
    elif len(text) == 38 and text[0] == "{" and text[-1] == "}":
        text = text[1:-1]
    if not (_CANONICAL.match(text) or _HEX32.match(text)):
        raise InvalidTaskID(task_id)
    return str(uuid.UUID(hex=text.replace("-", "")))


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """Fixed-width RFC 3339 UTC text with microseconds, so lexical order is time order.

    Trimmed trailing zeros (Go's RFC3339Nano) would sort `...27Z` after `...27.1Z`; fixed width does not.
    """
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Parse our fixed-width form and the Go sidecar's RFC3339Nano form (up to nanoseconds, trimmed zeros)."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})", text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    base, fraction, zone = match.groups()
    micros = (fraction or "0").ljust(9, "0")[:6]
    parsed = datetime.fromisoformat(f"{base}.{micros}{'+00:00' if zone == 'Z' else zone}")
    return parsed.astimezone(UTC)


class CamelModel(BaseModel):
    """Base for wire models: camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


MAX_RETRY_LIMIT = 100
"""Most automatic retries one task may ask for: beyond that a failure is not transient, and a human should look."""
MIN_RETRY_BACKOFF = 1.0
"""Floor of `backoffSeconds` (a smaller value, including 0, counts as this): `{limit: 1000, backoffSeconds: 0}` made
97 runs and 196 Events in 20 s. With the floor the waits grow 1, 2, 3... s, so 100 retries take over an hour."""


class RetryPolicy(CamelModel):
    """`spec.retry`: how often a failed run is retried automatically, and how long to wait between runs.

    The wait before run n+1 is `max(backoffSeconds, 1) * n`, capped at 300 s; at most 100 retries. Failures that
    cannot be helped by running again (ParamsInvalid, Superseded, ResultTooLarge) are never retried.
    """

    limit: int = Field(
        default=0,
        ge=0,
        le=MAX_RETRY_LIMIT,
        description=f"Automatic retries after a failed run (default 0, at most {MAX_RETRY_LIMIT}).",
    )
    backoff_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Wait before run n+1 is max(backoffSeconds, 1) x n seconds, capped at 300 (default 10).",
    )

    def delay_before(self, next_run: int) -> float:
        return min(max(self.backoff_seconds, MIN_RETRY_BACKOFF) * max(next_run - 1, 1), 300.0)


class ResourceRef(CamelModel):
    """The NodeTask resource a task came from (absent for local and HTTP submissions)."""

    namespace: str
    name: str
    uid: str = ""
    generation: int = 0


class Task(CamelModel):
    """A submission to the engine: type, ID and params, plus the NodeTask spec's execution options."""

    id: str | None = None
    type: str
    params: dict[str, Any] | None = None
    timeout_seconds: int | None = Field(default=None, ge=1)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    retry_nonce: str | None = None
    source: ResourceRef | None = None


class Progress(CamelModel):
    """Progress of a long task, as reported by its handler."""

    current: float | None = None
    total: float | None = None
    unit: str = ""
    message: str = ""

    @property
    def percent(self) -> float | None:
        if self.current is None or not self.total:
            return None
        return round(min(100.0, 100.0 * self.current / self.total), 1)

    def describe(self) -> str:
        """Short human form, for `kubectl get` and the local runner: `1.2 GiB/4.0 GiB (30.0%)`, `812/1000 blocks`."""
        parts: list[str] = []
        if self.current is not None:
            unit = f" {self.unit}" if self.unit and self.unit != "bytes" else ""
            if self.total is not None:
                parts.append(f"{_human(self.current, self.unit)}/{_human(self.total, self.unit)}{unit}")
            else:
                parts.append(f"{_human(self.current, self.unit)}{unit}")
            if self.percent is not None:
                parts.append(f"({self.percent}%)")
        if self.message:
            parts.append(self.message)
        return " ".join(parts)


def _human(value: float, unit: str) -> str:
    if unit != "bytes":
        return str(int(value)) if float(value).is_integer() else f"{value:g}"
    size = float(value)
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or suffix == "TiB":
            return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
        size /= 1024
    raise AssertionError("unreachable")


class TaskResult(CamelModel):
    """Everything the store keeps about one task (one row), and the read model of `/v0/tasks`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: str
    type: str
    status: TaskStatus
    run: int = 1
    resumes: int = 0
    params: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str = ""
    reason: str = ""
    hint: str = ""
    retryable: bool = False
    submitted_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    timeout_seconds: int | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    retry_nonce: str | None = None
    source: ResourceRef | None = None
    progress: Progress | None = None

    @property
    def phase(self) -> Phase:
        return Phase.of(self.status)

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @field_serializer("submitted_at", "started_at", "completed_at")
    def _serialize_time(self, moment: datetime | None) -> str | None:
        return format_timestamp(moment) if moment else None

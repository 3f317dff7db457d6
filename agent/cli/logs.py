"""Logging set-up: plain text for people, one JSON object per line for log pipelines (`--log-format json`, or
`NODETASK_LOG_FORMAT=json` when the flag is not given). A record's task fields (`agent.engine.transitions.LOG_FIELDS`:
task ID, type, run, reason, the NodeTask's namespace and name) are JSON keys, or `key=value` after a text line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from agent.engine.transitions import LOG_FIELDS


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {}
    for attribute, key in LOG_FIELDS.items():
        value = getattr(record, attribute, None)
        if value is not None and value != "":
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", <task fields>?, "exception"?}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`<time> <level> <logger>: <message>` and the record's task fields as ` key=value`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  (logging's name)
        text = super().formatMessage(record)
        fields = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        return f"{text} {fields}" if fields else text


def configure_logging(level: str, log_format: str, *, quiet: tuple[str, ...] = ()) -> None:
    """One handler on the root logger in `log_format`; records of the `quiet` loggers are dropped below ERROR."""
    handler = logging.StreamHandler()
    if quiet:
        handler.addFilter(lambda record: record.levelno >= logging.ERROR or record.name not in quiet)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

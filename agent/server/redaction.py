"""Masking of secret-looking values in what the HTTP server serves (defence in depth)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SECRET_KEY = re.compile(r"mnemonic|priv(ate)?[_-]?key|secret|passphrase|password", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """`value` with every entry under a secret-looking key masked, at any depth (defence in depth: handlers and
    controllers must not put secrets there in the first place)."""
    if isinstance(value, Mapping):
        return {key: REDACTED if _SECRET_KEY.search(str(key)) else redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value

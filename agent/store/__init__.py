"""The task store: every task's state in one SQLite file, so that a crash or restart loses nothing.

`SqliteStore(path)` opens (or creates) and migrates the file; `memory_store()` is the same on `:memory:`. Both
implement `Store`, the interface the engine is written against; every failure is a `StoreError`. The decisions
(block storage only, one serialised connection, unreadable rows) are in `agent.store.sqlite`, the schema versions
and the Go sidecar's history in `agent.store.migrations`, the row encoding in `agent.store.schema`.
"""

from .base import Store, StoreError, StoreInUse
from .guard import GuardedStore, StoreHealth
from .migrations import LATEST_VERSION
from .sqlite import SqliteStore, memory_store

__all__ = [
    "LATEST_VERSION",
    "GuardedStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoreInUse",
    "memory_store",
]

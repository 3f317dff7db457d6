"""The disk budget of the engine's submit path (docs/reliability.md, B8/B9).

Two bounds, each measured cheaply and at most once per `CACHE_SECONDS` (a flood of submissions costs one `statvfs`
and a few `stat`s per second, not per request):

- the free space of the home's filesystem (`statvfs(home)`: the bytes an unprivileged writer may still use) must stay
  at or above `settings.min_free_bytes`: seid shares that volume, and a node whose volume fills stops;
- the agent's own files in the home - the store, its `-wal` and `-shm` files, and the tx records (`nodetask-tx/`
  beside the home and beside the store) - must stay at or below `settings.store_budget_bytes`.

A bound set to 0 is off. A path that cannot be measured (a home that does not exist, an in-memory store) counts as
within the budget: the budget refuses work on evidence, never on a failed measurement.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.chain.broadcast import RECORD_DIR
from agent.models import DiskBudgetExceeded
from agent.models.settings import AgentSettings

CACHE_SECONDS = 1.0
"""A measurement is reused for this long."""

StatVfs = Callable[[Path], os.statvfs_result]


@dataclass(frozen=True)
class DiskUsage:
    free_bytes: int | None
    """Free bytes on the home's filesystem (None: not measurable)."""
    agent_bytes: int
    """Bytes of the agent's own files in the home: store, WAL, tx records."""


def _statvfs(path: Path) -> os.statvfs_result:
    return os.statvfs(path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _directory_size(path: Path) -> int:
    try:
        with os.scandir(path) as entries:
            return sum(entry.stat(follow_symlinks=False).st_size for entry in entries if entry.is_file())
    except OSError:
        return 0


class DiskBudget:
    """Measures the home (cached) and says whether a new task fits; `statvfs` and `clock` are injectable for tests."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        statvfs: StatVfs = _statvfs,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._statvfs = statvfs
        self._clock = clock
        self._measured: tuple[float, DiskUsage] | None = None

    def forget(self) -> None:
        """Drop the cached measurement (after retention freed space, the next submission measures again)."""
        self._measured = None

    def usage(self) -> DiskUsage:
        now = self._clock()
        if self._measured is not None and now - self._measured[0] < CACHE_SECONDS:
            return self._measured[1]
        usage = DiskUsage(free_bytes=self._free_bytes(), agent_bytes=self._agent_bytes())
        self._measured = (now, usage)
        return usage

    def _free_bytes(self) -> int | None:
        if not self._settings.min_free_bytes:
            return None
        try:
            stats = self._statvfs(self._settings.home)
        except OSError:
            return None
        return stats.f_bavail * stats.f_frsize

    def _agent_bytes(self) -> int:
        if not self._settings.store_budget_bytes:
            return 0
        store = self._settings.store_path
        files = sum(_size(Path(f"{store}{suffix}")) for suffix in ("", "-wal", "-shm"))
        record_dirs = {self._settings.home / RECORD_DIR, store.parent / RECORD_DIR}
        return files + sum(_directory_size(directory) for directory in record_dirs)

    def refusal(self) -> DiskBudgetExceeded | None:
        """The rejection for a new task now, or None when it fits."""
        usage = self.usage()
        floor = self._settings.min_free_bytes
        if floor and usage.free_bytes is not None and usage.free_bytes < floor:
            return DiskBudgetExceeded(
                "NODETASK_MIN_FREE_BYTES",
                f"the home's volume ({self._settings.home}) has {usage.free_bytes} bytes free, below its floor "
                f"NODETASK_MIN_FREE_BYTES={floor}",
                value=usage.free_bytes,
                limit=floor,
            )
        budget = self._settings.store_budget_bytes
        if budget and usage.agent_bytes > budget:
            return DiskBudgetExceeded(
                "NODETASK_STORE_BUDGET_BYTES",
                f"the agent's store and tx records in the home take {usage.agent_bytes} bytes, above its budget "
                f"NODETASK_STORE_BUDGET_BYTES={budget}",
                value=usage.agent_bytes,
                limit=budget,
            )
        return None

"""The record of which agent processes wrote NodeTask statuses from one store: what "this agent wrote it" means.

A NodeTask's `status.agent` names the pod, pod UID and session of the process that wrote it; anyone allowed to write
NodeTask status can put any name there. The agent therefore keeps its own list of the (pod, pod UID, session) triples
it ran as, in `<store>.authors.json` beside the store (one entry per process start, the newest `LIMIT` kept), and a
status counts as its own only when its triple is in that list (`agent.operator.decide`).

Upgrading from an agent version that kept no list: when the list is new but the store already holds rows, the
terminal statuses that name this pod at the first NodeTask list are taken as this agent's (`adopting`), once, so
that finished tasks whose rows were pruned do not run again. A store without a file (`:memory:`) keeps the list in
memory only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from agent.io.files import atomic_write

from .decide import Author

log = logging.getLogger(__name__)

LIMIT = 1000
"""Process starts remembered (a status written more than this many restarts ago no longer counts as the agent's)."""


def ledger_path(store_path: str | Path | None) -> Path | None:
    """Where the list of a store at `store_path` lives (None for an in-memory store)."""
    if store_path is None or str(store_path) in ("", ":memory:"):
        return None
    return Path(f"{store_path}.authors.json")


def store_file(store: object) -> str | None:
    """The file of `store` (a `SqliteStore`, or the `GuardedStore` around one), None when it has none."""
    inner = getattr(store, "store", store)
    path = getattr(inner, "path", None)
    return str(path) if path is not None else None


class AuthorLedger:
    """The agent processes that wrote statuses from this store, the current one included (module docstring)."""

    def __init__(self, path: Path | None, current: Author) -> None:
        self.path = path
        self.current = current
        self._authors: list[Author] = []
        self.existed = False
        """The list was there before this process (else this is the first start with this store, or an upgrade)."""
        self.adopting = False
        """Take the authors of the first list's terminal statuses naming this pod as this agent's (`adopt`)."""
        if path is not None:
            self._load(path)
        if current not in self._authors:
            self._authors.append(current)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            log.warning("cannot read %s (%s): earlier agent sessions are not known as this agent's", path, error)
            return
        self.existed = True
        entries = raw.get("authors") if isinstance(raw, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, list) and len(entry) == 3 and all(isinstance(part, str) and part for part in entry):
                self._authors.append((entry[0], entry[1], entry[2]))

    @property
    def known(self) -> frozenset[Author]:
        return frozenset(self._authors)

    def save(self) -> None:
        """Write the list (atomically); a failure is logged, and the list stays in memory for this process."""
        self._authors = self._authors[-LIMIT:]
        if self.current not in self._authors:
            self._authors.append(self.current)
        if self.path is None:
            return
        data = json.dumps({"authors": [list(author) for author in self._authors]}, indent=0)
        try:
            atomic_write(self.path, data + "\n", mode=0o600)
        except OSError as error:
            log.warning(
                "cannot record this agent session in %s (%s): after a restart, statuses this process writes will not "
                "be recognised as the agent's own once their store rows are gone",
                self.path,
                error,
            )

    def adopt(self, authors: Iterable[Author]) -> None:
        """Take `authors` as this agent's (the upgrade case of the module docstring), then stop adopting."""
        self.adopting = False
        new = [author for author in dict.fromkeys(authors) if author not in self._authors]
        if new:
            log.info("taking %d earlier agent session(s) named in finished NodeTasks as this agent's own", len(new))
            self._authors[:0] = new
            self.save()

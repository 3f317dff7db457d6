"""Atomic file writes, path containment and done-markers: the one place these mechanics live.

Every write that a node could read half-done goes through `atomic_write` (temp file in the same directory, fsync,
rename, fsync of the directory), so a crash leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from agent.models import ParamsInvalid

TEMP_SUFFIX = ".nodetask-agent.tmp"
"""Every temporary file the agent writes in the node's home ends with this, so that start-up can remove the ones a
killed process left behind (`clean_temporary_files`): an interrupted download of a multi-GB export must not stay."""
TEMP_DIRS = ("", "config", "data")
"""Where the agent's temporary files live, relative to the home (`data/`: top level only, it holds chain state)."""
_LEGACY_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$|^\.exported-state\.[a-z0-9_]{8}\.json$")
"""Temporary names of earlier versions (`.<name>.<8 random>.tmp`, `.exported-state.<8 random>.json`)."""


def clean_temporary_files(home: Path) -> list[Path]:
    """Remove the temporary files a killed process left in `home` (kill -9, OOM mid-write or mid-download); returns
    what was removed. A `config/.config.toml.<random>.nodetask-agent.tmp` is never renamed into place and nothing else
    would remove it; an interrupted download of a multi-GB export must not stay either.

    Call only while no handler runs (at start, with the store's exclusive lock held). Looks where the agent writes:
    `<home>`, every directory under `<home>/config` (small), the top of `<home>/data` (never the chain's databases'
    trees) and `<home>/keyring-*`. Unreadable directories are skipped.
    """
    directories = [home / relative for relative in TEMP_DIRS] + sorted(home.glob("keyring-*"))
    config = home / "config"
    if config.is_dir():
        directories += [path for path in config.rglob("*") if path.is_dir() and not path.is_symlink()]
    removed: list[Path] = []
    for directory in directories:
        try:
            entries = list(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.endswith(TEMP_SUFFIX) or _LEGACY_TEMP.match(entry.name)):
                continue
            try:
                if entry.is_file() and not entry.is_symlink():
                    entry.unlink()
                    removed.append(entry)
            except OSError:
                continue
    return removed


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _sealed_temp_beside(path: Path, mode: int) -> Iterator[tuple[IO[bytes], Path, Callable[[], None]]]:
    """A temp file in `path`'s directory: (handle, temp path, seal). `seal()` flushes, fsyncs and sets `mode`, after
    which the caller renames or links it into place; whatever is left of the temp file is removed on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    temp = Path(temp_name)

    def seal() -> None:
        handle.flush()
        os.fsync(handle.fileno())
        temp.chmod(mode)

    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, temp, seal
    finally:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces `path` only if the block exits without an exception."""
    with _sealed_temp_beside(path, mode) as (handle, temp, seal):
        yield handle
        seal()
        temp.replace(path)
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically (str is written as UTF-8)."""
    with atomic_writer(path, mode) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def write_once(path: Path, data: bytes | str, mode: int = 0o600) -> bool:
    """Write `path` only if it does not exist yet (key files are never replaced). Returns whether it wrote.

    Uses a hard link from a fully written temp file, which fails if the target exists, so two writers racing cannot
    both win and nobody ever sees a partial file.
    """
    if path.exists():
        return False
    with _sealed_temp_beside(path, mode) as (handle, temp, seal):
        handle.write(data.encode() if isinstance(data, str) else data)
        seal()
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
    fsync_dir(path.parent)
    return True


def contained_path(base: Path, relative: str, *, field: str) -> Path:
    """`base / relative`, refusing anything that would land outside `base` (absolute paths, `..`, symlinks out).

    Raises ParamsInvalid naming `field`, so a bad file name in params fails the task before anything is written.
    """
    if not relative or relative.strip() != relative:
        raise ParamsInvalid(f"{field}: file name {relative!r} is empty or has surrounding spaces")
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts or "\x00" in relative:
        raise ParamsInvalid(f"{field}: {relative!r} escapes {base.name}/ (absolute path or '..')")
    resolved_base = base.resolve()
    try:
        resolved = (resolved_base / candidate).resolve()
    except (RuntimeError, OSError) as error:
        # Python 3.11 raises RuntimeError for a symlink loop (3.13: OSError); either way the name cannot be used.
        raise ParamsInvalid(f"{field}: {relative!r} cannot be resolved: {error}") from None
    if resolved != resolved_base and resolved_base not in resolved.parents:
        raise ParamsInvalid(f"{field}: {relative!r} resolves outside {base.name}/ (through a symlink)")
    return base / candidate


"""What `_sealed_temp_beside` names its temp files: `.<target name>.<8 random characters>.tmp`."""


def marker_path(home: Path, name: str) -> Path:
    """The done-marker `<home>/.sei-sidecar-<name>-done`.

    These are the Go sidecar's names, on purpose: a node whose home the Go sidecar prepared is recognised as done and
    not, for example, restored from a snapshot a second time.
    """
    return home / f".sei-sidecar-{name}-done"


def has_marker(home: Path, name: str) -> bool:
    return marker_path(home, name).exists()


def write_marker(home: Path, name: str) -> None:
    """Write the done-marker; call it last, only after every effect of the task is durable."""
    atomic_write(marker_path(home, name), b"")

"""Tar archives compressed with gzip, lz4 or zstd: one streaming writer and one safe streaming extractor.

The codecs (zstandard, lz4) are imported when an archive is written or read, not with this module.

Both sides stream: nothing is held whole in memory or written to a temporary archive, so memory use does not grow
with the archive (file data moves in 1 MiB pieces; tar member lists are not accumulated).

Writing (`tar_chunks`): the listed files and directories under a root become a POSIX (pax) tar stream, compressed
on the fly, yielded as byte chunks for `S3Client.upload_blocking`. Regular files, directories and symlinks are
archived (mode and mtime kept, owner dropped); hard links are stored as separate regular files; sockets and fifos
are skipped. A file that shrinks while it is read fails the archive (`ArchiveSourceChanged`): a snapshot directory
must not change while it is uploaded.

Reading (`extract_stream`): the compression is detected from the stream's magic bytes (gzip, lz4 frame, zstd, or
plain tar), whatever the object's name says. Extraction goes into an *empty staging directory* chosen by the caller,
who renames it into place only after everything (including checksums) succeeded. Rules, each failing the whole
extraction with `ArchiveUnsafe` naming the member:

- names must be relative and must not contain `..`; a leading `./` is dropped and the root entry `.` is ignored;
  hidden files (`.foo`) are allowed (only `..` components are dangerous, not a leading dot);
- nothing is ever written *through* a symlink: every parent of a member must be a real directory;
- symlinks must be relative, may use `..` only as leading components, and must stay inside the destination
  (so no chain of links can lead out of it);
- hard links must point at a regular file this archive already extracted (they are created as hard links);
- devices, fifos and unknown member types are refused;
- a member may replace an earlier regular file of the same name (tar semantics), any other name clash is refused;
- modes are sanitised: regular files never get an execute bit (a snapshot is data; an executable restored from a
  bucket would be a foothold for running code), no setuid/setgid/sticky bits, no group/other write; owners always
  read and write (files) or read, write and enter (directories, which keep r-x for group/other so that seid, often
  another user in another container, can enter them). Ownership is not restored; mtimes of files are;
- at most `max_members` members (default `DEFAULT_MAX_MEMBERS`), and once `SMALL_MEMBER_GRACE` members were read
  their average size must be at least `MIN_AVERAGE_MEMBER_BYTES`: an archive of tens of thousands of empty files
  (75 KB compressed, half a minute of metadata churn) is refused early as `ArchiveUnsafe`;
- pax and GNU long-name headers larger than `MAX_HEADER_BYTES` are refused before they are read into memory
  ("huge header" attacks), and declared sizes are checked against `max_total_bytes` before any byte is written
  (an absurd member size fails with `InsufficientDisk` instead of filling the disk);
- member basenames listed in `skip_names` are not extracted at all (restore never writes `priv_validator_state.json`).

An archive whose stream ends early is `ArchiveCorrupt`: gzip and lz4 report a missing end-of-stream marker, and for
every format the tar end-of-archive blocks must be present (a zstd stream cut at a frame boundary is otherwise
indistinguishable from a complete one). A full disk (ENOSPC) is `InsufficientDisk`.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import queue
import stat
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol

from agent.models import TaskError

from .files import fsync_dir
from .s3.threads import check_cancel

ARCHIVE_UNSAFE = "ArchiveUnsafe"
ARCHIVE_CORRUPT = "ArchiveCorrupt"
ARCHIVE_SOURCE_CHANGED = "ArchiveSourceChanged"
INSUFFICIENT_DISK = "InsufficientDisk"

CHUNK = 1024 * 1024
PIPE_DEPTH = 16
"""Decompressed chunks buffered between the decompressing thread and the extracting thread (at most ~16 MiB)."""
FSYNC_THREADS = 4
"""Files flushed to disk at once during extraction (see `_Flusher`)."""
MAX_HEADER_BYTES = 1024 * 1024
"""Largest pax / GNU long-name header accepted; real ones are a few hundred bytes."""
DEFAULT_MAX_MEMBERS = 2_000_000
"""Members one extraction accepts. A multi-TB node's data directory (LevelDB/PebbleDB tables of 2-64 MiB, wasm
code, snapshots) has tens to a few hundred thousand files; two million leaves ample room."""
SMALL_MEMBER_GRACE = 10_000
MIN_AVERAGE_MEMBER_BYTES = 512
"""After `SMALL_MEMBER_GRACE` members, an archive whose members average less than this many bytes is refused: real
node data is dominated by MiB-sized tables, a flood of empty or tiny files is an attack on the extractor."""
_BLOCK = tarfile.BLOCKSIZE
_END_OF_ARCHIVE = 2 * _BLOCK


class Compression(StrEnum):
    """Archive compression; the value is the file-name extension after `.tar.` (`none` is a plain `.tar`)."""

    GZIP = "gz"
    LZ4 = "lz4"
    ZSTD = "zst"
    NONE = "none"

    @property
    def suffix(self) -> str:
        """`.tar.gz`, `.tar.lz4`, `.tar.zst` or `.tar`."""
        return ".tar" if self is Compression.NONE else f".tar.{self.value}"

    @property
    def content_type(self) -> str:
        return {
            Compression.GZIP: "application/gzip",
            Compression.LZ4: "application/x-lz4",
            Compression.ZSTD: "application/zstd",
            Compression.NONE: "application/x-tar",
        }[self]


def detect_compression(head: bytes) -> Compression | None:
    """The compression of a stream from its first bytes (at least 262 for plain tar), or None if unrecognised."""
    if head[:2] == b"\x1f\x8b":
        return Compression.GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return Compression.ZSTD
    if head[:4] == b"\x04\x22\x4d\x18":
        return Compression.LZ4
    if head[257:262] == b"ustar" or (len(head) >= _BLOCK and _plausible_v7_header(head[:_BLOCK])):
        return Compression.NONE
    return None


def _plausible_v7_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


# ------------------------------------------------------------------------------------------------------- writing


class _Codec(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Lz4Codec:
    def __init__(self) -> None:
        import lz4.frame

        self._compressor = lz4.frame.LZ4FrameCompressor(content_checksum=True)
        self._header: bytes = self._compressor.begin()

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._compressor.compress(data)
        if self._header:
            out, self._header = self._header + out, b""
        return out

    def flush(self) -> bytes:
        out: bytes = self._header + self._compressor.flush()
        self._header = b""
        return out


def _codec(compression: Compression, level: int | None) -> _Codec:
    if compression is Compression.GZIP:
        return zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
    if compression is Compression.ZSTD:
        import zstandard

        codec: _Codec = zstandard.ZstdCompressor(level=3 if level is None else level, write_checksum=True).compressobj()
        return codec
    if compression is Compression.LZ4:
        return _Lz4Codec()
    return _Identity()


@dataclass(frozen=True)
class _Entry:
    name: str
    path: Path
    info: os.stat_result


def _walk(root: Path, paths: Sequence[str]) -> Iterator[_Entry]:
    """Every entry under `root/path` for each path, parents before children, in sorted (reproducible) order."""
    for relative in paths:
        top = root / relative
        yield _Entry(relative, top, top.lstat())
        if not top.is_dir() or top.is_symlink():
            continue
        for directory, subdirectories, files in os.walk(top, onerror=_raise):  # never skip silently
            subdirectories.sort()
            base = Path(directory)
            for name in [*sorted(subdirectories), *sorted(files)]:
                entry = base / name
                yield _Entry(entry.relative_to(root).as_posix(), entry, entry.lstat())


def _raise(error: OSError) -> None:
    raise error


def tree_size(root: Path, paths: Sequence[str]) -> int:
    """Total bytes of the regular files `tar_chunks(root, paths, ...)` would archive."""
    return sum(entry.info.st_size for entry in _walk(root, paths) if stat.S_ISREG(entry.info.st_mode))


def _header(entry: _Entry) -> tarfile.TarInfo | None:
    info = tarfile.TarInfo(entry.name)
    mode = entry.info.st_mode
    info.mode = stat.S_IMODE(mode)
    info.mtime = int(entry.info.st_mtime)
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(mode):
        info.type = tarfile.REGTYPE
        info.size = entry.info.st_size
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = str(entry.path.readlink())
    else:
        return None  # sockets, fifos, devices: nothing a node snapshot needs
    return info


def tar_chunks(
    root: Path,
    paths: Sequence[str],
    compression: Compression,
    *,
    level: int | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Yield a compressed tar of `paths` (relative to `root`, recursively) as byte chunks.

    Blocking: iterate it in a worker thread. `progress(file_bytes_read)` is called as file data is read, so the
    total to compare with is `tree_size(root, paths)`.
    """
    try:
        yield from _tar_chunks(root, paths, _codec(compression, level), cancel, progress)
    except FileNotFoundError as error:
        raise TaskError(
            f"archiving {root}: {error.filename} disappeared while it was being archived",
            reason=ARCHIVE_SOURCE_CHANGED,
            hint="the directory changed during the upload (pruned?); run the task again",
            retryable=True,
        ) from error


def _tar_chunks(
    root: Path,
    paths: Sequence[str],
    codec: _Codec,
    cancel: threading.Event | None,
    progress: Callable[[int], None] | None,
) -> Iterator[bytes]:
    written = 0
    done = 0
    for entry in _walk(root, paths):
        check_cancel(cancel)
        info = _header(entry)
        if info is None:
            continue
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        written += len(header)
        if out := codec.compress(header):
            yield out
        if info.type != tarfile.REGTYPE:
            continue
        remaining = info.size
        with open(entry.path, "rb", buffering=0) as source:
            while remaining:
                check_cancel(cancel)
                data = source.read(min(CHUNK, remaining))
                if not data:
                    raise TaskError(
                        f"archiving {entry.path}: the file shrank from {info.size} bytes while it was being read",
                        reason=ARCHIVE_SOURCE_CHANGED,
                        hint="the snapshot directory changed during the upload; run the task again",
                        retryable=True,
                    )
                remaining -= len(data)
                done += len(data)
                if out := codec.compress(data):
                    yield out
                if progress is not None:
                    progress(done)
        padding = -info.size % _BLOCK
        written += info.size + padding
        if padding and (out := codec.compress(b"\0" * padding)):
            yield out
    trailer = _END_OF_ARCHIVE + (-(written + _END_OF_ARCHIVE) % tarfile.RECORDSIZE)
    yield codec.compress(b"\0" * trailer) + codec.flush()


# ------------------------------------------------------------------------------------------------------- reading


@dataclass
class ExtractSummary:
    """What an extraction wrote into the staging directory."""

    compression: Compression
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    file_bytes: int = 0
    skipped: list[str] = field(default_factory=list)


_EXTENDED_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses extended headers too large to be legitimate before tarfile reads them into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise _Unsafe(
                f"an extended header (type {self.type!r}) declares {self.size} bytes, more than the "
                f"{MAX_HEADER_BYTES} allowed"
            )
        processed: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return processed


class _Unsafe(Exception):
    """A hostile or malformed member (turned into a TaskError with reason ArchiveUnsafe)."""


class _Failed:
    """An exception raised on the decompressing thread, carried through the queue to the reading thread."""

    def __init__(self, error: BaseException):
        self.error = error


class _DecompressedPipe:
    """The decompressed tar stream, produced on a background thread and read back as a forward-only file.

    The thread reads the compressed `source` (and with it whatever reading it costs: the download, the hashing) and
    decompresses it into a bounded queue, so that work overlaps tar parsing and file writes on the reading thread;
    zstd, zlib, lz4, hashlib and socket reads release the GIL while they work. The reading side offers what
    tarfile's random-access mode needs (`read`, `tell`, and `seek` forward only), plus `read_view` for member data,
    which hands out slices of the decompressed chunks without copying them. Memory: at most `PIPE_DEPTH` chunks.
    After the decompressed stream ends, the thread reads `raw` to its end too (so a hashing source sees every byte).
    """

    def __init__(self, decompressed: IO[bytes], raw: _PeekReader, cancel: threading.Event | None):
        self._decompressed = decompressed
        self._raw = raw
        self._cancel = cancel
        self._queue: queue.Queue[memoryview | _Failed | None] = queue.Queue(maxsize=PIPE_DEPTH)
        self._stopping = threading.Event()
        self._current = memoryview(b"")
        self._position = 0
        self._ended = False
        self._thread = threading.Thread(target=self._produce, name="extract-decompress", daemon=True)
        self._thread.start()

    # ---- the decompressing thread

    def _produce(self) -> None:
        try:
            while data := self._decompressed.read(CHUNK):
                if not self._put(memoryview(data)):
                    return
            while self._raw.read(CHUNK):  # trailing bytes after the last frame, if any
                if self._stopping.is_set():
                    return
        except BaseException as error:  # handed to the reading thread, which raises it
            self._put(_Failed(error))
        else:
            self._put(None)

    def _put(self, item: memoryview | _Failed | None) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # ---- the reading thread

    def _next_chunk(self) -> bool:
        if self._ended:
            return False
        while True:
            check_cancel(self._cancel)
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                continue
        if item is None or isinstance(item, _Failed):
            self._ended = True
            if isinstance(item, _Failed):
                raise item.error
            return False
        self._current = item
        return True

    def read_view(self, size: int) -> memoryview:
        """Up to `size` bytes (fewer at a chunk boundary, empty at the end), as a view into the chunk: no copy."""
        if not self._current and not self._next_chunk():
            return memoryview(b"")
        view, self._current = self._current[:size], self._current[size:]
        self._position += len(view)
        return view

    def read(self, size: int | None = -1) -> bytes:
        pieces = []
        remaining = CHUNK if size is None or size < 0 else size
        while remaining > 0 and (view := self.read_view(remaining)):
            pieces.append(view)
            remaining -= len(view)
        return b"".join(pieces)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset < self._position:
            raise tarfile.StreamError(f"the tar stream can only move forward (to {offset} from {self._position})")
        while self._position < offset and self.read_view(offset - self._position):
            pass
        return self._position

    def close(self) -> None:
        """Stop the decompressing thread and wait for it (it never outlives the extraction)."""
        self._stopping.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            self._thread.join(0.05)


class _PeekReader(io.RawIOBase):
    """A forward-only reader whose first bytes can be looked at before they are consumed."""

    def __init__(self, source: IO[bytes]):
        super().__init__()
        self._source = source
        self._head = b""

    def readable(self) -> bool:
        return True

    def peek_head(self, size: int) -> bytes:
        while len(self._head) < size:
            data = self._source.read(size - len(self._head))
            if not data:
                break
            self._head += data
        return self._head

    def read(self, size: int | None = -1) -> bytes:
        if self._head:
            if size is None or size < 0 or size >= len(self._head):
                data, self._head = self._head, b""
            else:
                data, self._head = self._head[:size], self._head[size:]
            return data
        return self._source.read(CHUNK if size is None or size < 0 else size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


def _decompressing(source: _PeekReader, compression: Compression) -> IO[bytes]:
    if compression is Compression.GZIP:
        return gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[return-value]
    if compression is Compression.LZ4:
        import lz4.frame

        return lz4.frame.LZ4FrameFile(source, mode="rb")  # type: ignore[no-any-return]
    if compression is Compression.ZSTD:
        import zstandard

        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(
            source,  # type: ignore[arg-type]
            read_size=CHUNK,
            read_across_frames=True,
            closefd=False,
        )
        return reader
    return source  # type: ignore[return-value]


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path components of a member name, or `_Unsafe`. Empty for the archive root (`.` or `./`)."""
    if "\x00" in name:
        raise _Unsafe(f"member name {name!r} contains a NUL byte")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _Unsafe(f"member {name!r} has an absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _Unsafe(f"member {name!r} contains '..' and would escape the destination")
    return parts


def _check_symlink_target(parts: tuple[str, ...], target: str) -> None:
    """Relative, `..` only leading, and not climbing above the destination (see the module docstring)."""
    if not target or "\x00" in target or target.startswith("/"):
        raise _Unsafe(f"symlink {'/'.join(parts)!r} -> {target!r} is absolute or empty")
    components = [part for part in target.split("/") if part not in ("", ".")]
    ups = 0
    while ups < len(components) and components[ups] == "..":
        ups += 1
    if ".." in components[ups:]:
        raise _Unsafe(f"symlink {'/'.join(parts)!r} -> {target!r} uses '..' after a directory name")
    if ups > len(parts) - 1:
        raise _Unsafe(f"symlink {'/'.join(parts)!r} -> {target!r} points outside the destination")


def _sane_mode(mode: int, directory: bool) -> int:
    """Directories keep r-x for group/other (needed to enter them) and get rwx for the owner; regular files never get
    an execute bit (a snapshot holds data, and an executable file from a bucket is a foothold: issue 13), only
    rw for the owner and r for group/other when the archive had it. No setuid/setgid/sticky, no group/other write."""
    if directory:
        return (mode & 0o755) | 0o700
    return (mode & 0o644) | 0o600


class _Flusher:
    """Makes extracted files durable while extraction goes on, so the flush overlaps the download instead of
    following it (and, unlike `os.sync()`, flushes only this tree).

    The extracting thread starts each file's writeback as soon as the file is written (`start_writeback`: the kernel
    queues it and returns); `FSYNC_THREADS` threads then fsync the files, so several flushes are in flight at once.
    One fsync at a time keeps a disk at queue depth one, while `tar -x && sync` hands it everything at once.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Path | None] = queue.Queue(maxsize=4096)
        self._stopping = False
        self._error: OSError | None = None
        self._threads = [
            threading.Thread(target=self._run, name=f"extract-fsync-{n}", daemon=True) for n in range(FSYNC_THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            if self._stopping or self._error is not None:
                continue
            try:
                descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
            except OSError as error:
                self._error = error

    @staticmethod
    def start_writeback(descriptor: int) -> None:
        """Ask the kernel to start writing a just-written file back now, without waiting (Linux starts writeback
        of dirty pages on POSIX_FADV_DONTNEED; elsewhere this is a no-op and the fsync threads do all the work)."""
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)

    def add(self, path: Path) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(path)

    def _stop_threads(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def finish(self, directories: list[Path]) -> None:
        """Wait until every queued file is on disk, then flush the directories holding their names."""
        self._stop_threads()
        if self._error is not None:
            raise self._error
        for directory in directories:
            fsync_dir(directory)

    def abort(self) -> None:
        self._stopping = True
        self._stop_threads()


class _Extractor:
    def __init__(
        self,
        destination: Path,
        summary: ExtractSummary,
        *,
        max_total_bytes: int | None,
        skip_names: frozenset[str],
        cancel: threading.Event | None,
        flusher: _Flusher | None,
        max_members: int = DEFAULT_MAX_MEMBERS,
        pipe: _DecompressedPipe | None = None,
    ):
        self.destination = destination
        self.pipe = pipe
        self.flusher = flusher
        self.summary = summary
        self.max_total_bytes = max_total_bytes
        self.skip_names = skip_names
        self.cancel = cancel
        self.directories: set[tuple[str, ...]] = {()}
        self.regular_files: set[tuple[str, ...]] = set()
        self.declared = 0
        self.members = 0
        self.max_members = max_members

    def count(self, member: tarfile.TarInfo) -> None:
        """Apply the member-count and tiny-member bounds (see the module docstring)."""
        self.members += 1
        if self.members > self.max_members:
            raise _Unsafe(f"the archive has more than {self.max_members} members")
        if self.members >= SMALL_MEMBER_GRACE and self.declared + member.size < MIN_AVERAGE_MEMBER_BYTES * self.members:
            raise _Unsafe(
                f"the first {self.members} members hold {self.declared + member.size} bytes in all (under "
                f"{MIN_AVERAGE_MEMBER_BYTES} bytes on average): a flood of empty or tiny files is not node data"
            )

    def path(self, parts: tuple[str, ...]) -> Path:
        return self.destination.joinpath(*parts)

    def ensure_parents(self, parts: tuple[str, ...]) -> None:
        """Create missing parent directories; refuse a parent that is a symlink or not a directory."""
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            if prefix in self.directories:
                continue
            path = self.path(prefix)
            try:
                info = path.lstat()
            except FileNotFoundError:
                path.mkdir(mode=0o755)
                self.directories.add(prefix)
                continue
            if stat.S_ISLNK(info.st_mode):
                raise _Unsafe(f"member {'/'.join(parts)!r} would be written through the symlink {'/'.join(prefix)!r}")
            if not stat.S_ISDIR(info.st_mode):
                raise _Unsafe(f"member {'/'.join(parts)!r} needs {'/'.join(prefix)!r} to be a directory")
            self.directories.add(prefix)

    def clear_target(self, parts: tuple[str, ...], *, for_directory: bool) -> bool:
        """Make room for a member; True if a directory is already there (and one is wanted)."""
        path = self.path(parts)
        try:
            info = path.lstat()
        except FileNotFoundError:
            return False
        if for_directory and stat.S_ISDIR(info.st_mode):
            return True
        if not for_directory and stat.S_ISREG(info.st_mode):
            path.unlink()
            self.regular_files.discard(parts)
            return False
        raise _Unsafe(f"member {'/'.join(parts)!r} appears twice with different types")

    def member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.count(member)
        parts = _safe_parts(member.name)
        if not parts:
            return
        name = "/".join(parts)
        if parts[-1] in self.skip_names:
            self.summary.skipped.append(name)
            return
        if member.ischr() or member.isblk() or member.isfifo():
            raise _Unsafe(f"member {name!r} is a device or fifo")
        self.ensure_parents(parts)
        if member.isdir():
            if not self.clear_target(parts, for_directory=True):
                self.path(parts).mkdir(mode=0o700)
                self.summary.directories += 1
            self.path(parts).chmod(_sane_mode(member.mode, directory=True))
            self.directories.add(parts)
        elif member.isreg():
            self.regular_file(tar, member, parts)
        elif member.issym():
            _check_symlink_target(parts, member.linkname)
            self.clear_target(parts, for_directory=False)
            self.path(parts).symlink_to(member.linkname)
            self.summary.symlinks += 1
        elif member.islnk():
            target = _safe_parts(member.linkname)
            if target not in self.regular_files:
                raise _Unsafe(
                    f"hard link {name!r} -> {member.linkname!r} does not point at a file extracted from this archive"
                )
            self.clear_target(parts, for_directory=False)
            os.link(self.path(target), self.path(parts), follow_symlinks=False)
            self.regular_files.add(parts)
            self.summary.hardlinks += 1
        else:
            raise _Unsafe(f"member {name!r} has an unsupported type {member.type!r}")

    def member_data(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes | memoryview]:
        """A regular member's bytes, straight from the decompressed chunks (tarfile's own reader, for the rare
        sparse member, copies every piece two or three times)."""
        if member.sparse is not None or self.pipe is None:
            source = tar.extractfile(member)
            assert source is not None  # a regular member always has data
            while data := source.read(CHUNK):
                yield data
            return
        self.pipe.seek(member.offset_data)
        remaining = member.size
        while remaining and (view := self.pipe.read_view(min(remaining, CHUNK))):
            remaining -= len(view)
            yield view

    def regular_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        name = "/".join(parts)
        self.declared += member.size
        if self.max_total_bytes is not None and self.declared > self.max_total_bytes:
            raise TaskError(
                f"extracting into {self.destination}: member {name!r} declares {member.size} bytes, which brings the "
                f"archive to {self.declared} bytes, more than the {self.max_total_bytes} bytes available",
                reason=INSUFFICIENT_DISK,
                hint="free space on the volume, grow the PVC, or check that the archive is the intended one",
            )
        self.clear_target(parts, for_directory=False)
        path = self.path(parts)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            written = 0
            for data in self.member_data(tar, member):
                check_cancel(self.cancel)
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                written += len(data)
            if written != member.size:
                raise tarfile.ReadError(f"member {name!r} has {written} of {member.size} bytes")
            if self.flusher is not None:
                self.flusher.start_writeback(descriptor)
            os.fchmod(descriptor, _sane_mode(member.mode, directory=False))
            try:
                os.utime(descriptor, (member.mtime, member.mtime))
            except (OverflowError, ValueError, OSError):
                pass  # an absurd mtime is not worth failing a restore for
        finally:
            os.close(descriptor)
        if self.flusher is not None:
            self.flusher.add(path)
        self.regular_files.add(parts)
        self.summary.files += 1
        self.summary.file_bytes += written


def extract_stream(
    source: IO[bytes],
    destination: Path,
    *,
    max_total_bytes: int | None = None,
    skip_names: frozenset[str] = frozenset(),
    cancel: threading.Event | None = None,
    durable: bool = True,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> ExtractSummary:
    """Extract the (compressed) tar stream `source` into the empty directory `destination`, safely.

    Blocking: run it in a worker thread. Reads `source` to its end (so a hashing source sees every byte). With
    `durable`, every file and directory written is on disk (fsync) when this returns. On any failure `destination`
    may hold part of the archive: the caller removes the staging directory.
    """
    if any(destination.iterdir()):
        raise ValueError(f"extraction needs an empty staging directory, {destination} is not empty")
    peek = _PeekReader(source)
    compression = detect_compression(peek.peek_head(_BLOCK))
    if compression is None:
        raise TaskError(
            "the archive is not gzip, lz4, zstd or tar (unrecognised magic bytes)",
            reason=ARCHIVE_CORRUPT,
            hint="snapshots must be .tar.gz, .tar.lz4, .tar.zst or .tar",
        )
    summary = ExtractSummary(compression)
    flusher = _Flusher() if durable else None
    pipe = _DecompressedPipe(_decompressing(peek, compression), peek, cancel)
    extractor = _Extractor(
        destination,
        summary,
        max_total_bytes=max_total_bytes,
        skip_names=skip_names,
        cancel=cancel,
        flusher=flusher,
        max_members=max_members,
        pipe=pipe,
    )
    try:
        # Random-access mode over a forward-only pipe: tarfile only ever seeks forward, and member data is read
        # from the pipe's chunks directly (stream mode "r|" would copy every byte three times).
        with tarfile.open(fileobj=pipe, mode="r:", tarinfo=_BoundedTarInfo) as tar:  # type: ignore[call-overload]
            for member in tar:
                check_cancel(cancel)
                extractor.member(tar, member)
                # tarfile keeps every member it has seen; a snapshot can have millions.
                tar.members.clear()
            end = tar.offset
        while pipe.read_view(CHUNK):  # the rest of the stream: end-of-archive blocks and padding
            check_cancel(cancel)
        if pipe.tell() < end + _END_OF_ARCHIVE:
            raise tarfile.ReadError("the tar stream ends without its end-of-archive blocks (truncated)")
        if flusher is not None:
            pending: _Flusher = flusher
            flusher = None  # finished below: nothing left to abort
            pending.finish([extractor.path(parts) for parts in sorted(extractor.directories, key=len, reverse=True)])
    except _Unsafe as error:
        raise TaskError(
            f"refusing the archive: {error}",
            reason=ARCHIVE_UNSAFE,
            hint="the archive is malformed or hostile; nothing was moved into place",
        ) from error
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TaskError(
                f"extracting into {destination}: the volume is full ({error.strerror})",
                reason=INSUFFICIENT_DISK,
                hint="free space on the volume or grow the PVC; nothing was moved into place",
            ) from error
        if isinstance(error, gzip.BadGzipFile):
            raise _corrupt(error) from error
        raise
    except (tarfile.TarError, EOFError, zlib.error, _zstd_error()) as error:
        raise _corrupt(error) from error
    except RuntimeError as error:
        if "LZ4F" not in str(error):
            raise
        raise _corrupt(error) from error
    finally:
        pipe.close()
        if flusher is not None:
            flusher.abort()
    return summary


def _zstd_error() -> type[Exception]:
    import zstandard

    return zstandard.ZstdError


def _corrupt(error: BaseException) -> TaskError:
    return TaskError(
        f"the archive is corrupt or truncated: {type(error).__name__}: {error}",
        reason=ARCHIVE_CORRUPT,
        hint="re-upload the snapshot or pick another height; nothing was moved into place",
    )

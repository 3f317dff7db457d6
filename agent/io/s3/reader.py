"""Streaming downloads: a forward-only file object over one S3 object that resumes after a broken connection.

Streaming downloads survive a broken connection: the reader re-opens the object with a ranged GET from the last byte
received, pinned to the object's ETag (`If-Match`), so a replaced object fails instead of being spliced.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from agent.models import TaskError

from .errors import S3_UNAVAILABLE, connection_errors, s3_url
from .threads import OperationCancelled, check_cancel

if TYPE_CHECKING:
    from .client import S3Client

MiB = 1024 * 1024
READ_CHUNK = 1 * MiB
RESUME_ATTEMPTS = 5
RESUME_CREDIT = 8 * MiB
"""Bytes a resumed stream must deliver before its failures stop counting against `resume_attempts`."""
RANGE_SIZE = 8 * MiB
"""Bytes per ranged GET of `ParallelObjectReader` (large enough that per-request latency is noise)."""
PARALLEL_RANGES = 4
"""Ranged GETs in flight at once for one `ParallelObjectReader`."""


class S3ObjectReader(io.RawIOBase):
    """A blocking, forward-only file object over one S3 object that resumes after a broken connection.

    After a stream error (reset, truncated body, read timeout) it re-opens the object from the current offset with a
    ranged GET pinned by `If-Match` to the ETag first seen; the GET itself is retried by botocore on throttling and
    5xx. It gives up (`S3Unavailable`) after `resume_attempts` failures with less than `RESUME_CREDIT` bytes received
    between them, so a long download survives occasional resets but a link that keeps breaking fails in bounded time.
    A replaced object fails with `S3ObjectChanged`.

    With `byte_range=(start, end)` (and the object's `size` and `etag`, known from a HEAD) it reads only bytes
    `start..end-1`, every request pinned by `If-Match`; `ParallelObjectReader` runs several of these at once.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        byte_range: tuple[int, int] | None = None,
        size: int = 0,
        etag: str = "",
    ):
        super().__init__()
        self._s3 = client
        self.bucket = bucket
        self.key = key
        self._cancel = cancel
        self._progress = progress
        self._body: Any = None
        self._range = byte_range
        self.size = size
        self.etag = etag
        self.position = byte_range[0] if byte_range else 0
        self.resumes = 0
        self._failures = 0
        self._failed_at = 0

    def __enter__(self) -> S3ObjectReader:
        return self

    def readable(self) -> bool:
        return True

    def open(self) -> None:
        check_cancel(self._cancel)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if self.position or self._range:
            last = str(self._range[1] - 1) if self._range else ""
            arguments.update(Range=f"bytes={self.position}-{last}", IfMatch=self.etag)
        try:
            response = self._s3.client.get_object(**arguments)
        except Exception as error:
            raise self._s3._error(error, self.bucket, self.key, "reading") from error
        if not self.position and not self._range:
            self.size = int(response["ContentLength"])
            self.etag = str(response.get("ETag", ""))
        self._body = response["Body"]

    @property
    def _stop(self) -> int:
        return self._range[1] if self._range else self.size

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_CHUNK), b""))
        while True:
            check_cancel(self._cancel)
            if self.position >= self._stop or size == 0:
                return b""
            try:
                chunk = self._body.read(min(size, self._stop - self.position))
                if not chunk:
                    raise _incomplete_read(self.position, self._stop)
            except connection_errors() as error:
                if self.position - self._failed_at >= RESUME_CREDIT:
                    self._failures = 0
                self._failures += 1
                self._failed_at = self.position
                if self._failures > self._s3.resume_attempts:
                    raise TaskError(
                        f"reading {s3_url(self.bucket, self.key)}: the download broke off at byte {self.position} "
                        f"of {self.size} and {self._s3.resume_attempts} resumes failed "
                        f"({type(error).__name__}: {error})",
                        reason=S3_UNAVAILABLE,
                        hint="the connection to S3 keeps failing; check the network and retry the task",
                        retryable=True,
                    ) from error
                self._reopen_after(self._failures)
                continue
            self.position += len(chunk)
            if self._progress is not None:
                self._progress(self.position, self.size)
            return bytes(chunk)

    def _reopen_after(self, failures: int) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        self.resumes += 1
        deadline = time.monotonic() + min(0.2 * 2**failures, 5.0)
        while time.monotonic() < deadline:  # back off, but notice a cancel promptly
            check_cancel(self._cancel)
            time.sleep(0.05)
        self.open()

    def close(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None
        super().close()


class ParallelObjectReader(io.RawIOBase):
    """A blocking, forward-only file object over one S3 object, fetched as consecutive ranges by several GETs at once.

    One GET is limited by one TCP connection and by the server's per-request rate (real S3 serves roughly
    50-100 MB/s per connection); `connections` ranged GETs in flight multiply that, and reading the socket releases
    the GIL, so the download overlaps the caller's work (hashing, decompression, writing). The object's size and ETag
    come from a HEAD; every range is an `S3ObjectReader` pinned by `If-Match` to that ETag, with its own resumes, so a
    replaced object fails with `S3ObjectChanged` instead of being spliced. Ranges are handed out in order; memory is
    bounded by `connections + 1` ranges, whatever the object's size.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        range_size: int = RANGE_SIZE,
        connections: int = PARALLEL_RANGES,
    ):
        super().__init__()
        self._s3 = client
        self.bucket = bucket
        self.key = key
        self._cancel = cancel
        self._progress = progress
        self._range_size = range_size
        self._connections = connections
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[list[bytes]]] = deque()
        self._chunks: deque[bytes] = deque()
        self._next_start = 0
        self.size = 0
        self.etag = ""
        self.position = 0

    def __enter__(self) -> ParallelObjectReader:
        return self

    def readable(self) -> bool:
        return True

    def open(self) -> None:
        check_cancel(self._cancel)
        info = self._s3.head_blocking(self.bucket, self.key)
        self.size, self.etag = info.size, info.etag
        self._pool = ThreadPoolExecutor(max_workers=self._connections, thread_name_prefix="s3-range")
        self._schedule()

    def _schedule(self) -> None:
        assert self._pool is not None
        while len(self._pending) < self._connections and self._next_start < self.size:
            end = min(self._next_start + self._range_size, self.size)
            self._pending.append(self._pool.submit(self._fetch, self._next_start, end))
            self._next_start = end

    def _fetch(self, start: int, end: int) -> list[bytes]:
        reader = S3ObjectReader(
            self._s3, self.bucket, self.key, cancel=self._stop, byte_range=(start, end), size=self.size, etag=self.etag
        )
        chunks: list[bytes] = []
        with reader:
            reader.open()
            while chunk := reader.read(READ_CHUNK):
                chunks.append(chunk)
        return chunks

    def _next_range(self) -> bool:
        """Move the next range's chunks into `_chunks`; False at the end of the object."""
        if not self._pending:
            return False
        head = self._pending[0]
        while True:
            if self._cancel is not None and self._cancel.is_set():
                self._stop.set()
                raise OperationCancelled()
            try:
                chunks = head.result(timeout=0.2)
                break
            except FutureTimeout:
                continue
        self._pending.popleft()
        self._chunks.extend(chunks)
        self._schedule()
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_CHUNK), b""))
        check_cancel(self._cancel)
        while not self._chunks:
            if size == 0 or not self._next_range():
                return b""
        chunk = self._chunks.popleft()
        if len(chunk) > size:
            chunk, rest = chunk[:size], chunk[size:]
            self._chunks.appendleft(rest)
        self.position += len(chunk)
        if self._progress is not None:
            self._progress(self.position, self.size)
        return chunk

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Stop the range fetches and wait for their threads (nothing keeps reading after close)."""
        self._stop.set()
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
            for future in self._pending:  # failures after the reader was abandoned are not news
                if not future.cancelled():
                    future.exception()
            self._pool = None
        self._pending.clear()
        self._chunks.clear()
        super().close()


def _incomplete_read(position: int, size: int) -> BaseException:
    import botocore.exceptions

    error: BaseException = botocore.exceptions.IncompleteReadError(actual_bytes=position, expected_bytes=size)
    return error

"""Streaming downloads: a forward-only file object over one S3 object that resumes after a broken connection.

Streaming downloads survive a broken connection: the reader re-opens the object with a ranged GET from the last byte
received, pinned to the object's ETag (`If-Match`), so a replaced object fails instead of being spliced.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
RANGE_SIZE = 64 * MiB
"""Bytes per ranged GET of `ParallelObjectReader` (large enough that a request's fixed cost is noise)."""
PARALLEL_RANGES = 4
"""Ranged GETs in flight at once for one `ParallelObjectReader`."""
RANGE_BUFFER = 4
"""Chunks (of `READ_CHUNK`) a range fetch may hold before it waits for the reader."""


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


class _RangeStream:
    """One range being fetched: its chunks in order, `None` at its end, at most `RANGE_BUFFER` chunks held."""

    def __init__(self, start: int, end: int):
        self.start = start
        self.end = end
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=RANGE_BUFFER)
        self.future: Future[None] | None = None


class ParallelObjectReader(io.RawIOBase):
    """A blocking, forward-only file object over one S3 object, fetched as consecutive ranges by several GETs at once.

    One GET is limited by one TCP connection and by the server's per-request rate (real S3 serves roughly
    50-100 MB/s per connection); `connections` ranged GETs in flight multiply that, and reading the socket releases
    the GIL, so the download overlaps the caller's work (hashing, decompression, writing). The object's size and ETag
    come from a HEAD; every range is an `S3ObjectReader` pinned by `If-Match` to that ETag, with its own resumes, so a
    replaced object fails with `S3ObjectChanged` instead of being spliced.

    Ranges are large (`range_size`, 64 MiB: a GET has a fixed cost of tens of milliseconds on a busy machine, which
    8 MiB ranges pay eight times as often) and streamed: each range's fetch hands its chunks over through a queue of
    at most `RANGE_BUFFER` chunks and waits (holding its connection) while the reader is busy with earlier ranges.
    Memory is bounded by `connections x RANGE_BUFFER` chunks, whatever the object's or the range's size.
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
        self._ranges: deque[_RangeStream] = deque()
        self._current = b""
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
        while len(self._ranges) < self._connections and self._next_start < self.size:
            stream = _RangeStream(self._next_start, min(self._next_start + self._range_size, self.size))
            stream.future = self._pool.submit(self._fetch, stream)
            self._ranges.append(stream)
            self._next_start = stream.end

    def _fetch(self, stream: _RangeStream) -> None:
        reader = S3ObjectReader(
            self._s3,
            self.bucket,
            self.key,
            cancel=self._stop,
            byte_range=(stream.start, stream.end),
            size=self.size,
            etag=self.etag,
        )
        with reader:
            reader.open()
            while chunk := reader.read(READ_CHUNK):
                self._hand_over(stream, chunk)
        self._hand_over(stream, None)

    def _hand_over(self, stream: _RangeStream, chunk: bytes | None) -> None:
        while True:
            check_cancel(self._stop)
            try:
                stream.chunks.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next_chunk(self) -> bytes:
        """The next chunk of the object in order; empty at its end."""
        while self._ranges:
            head = self._ranges[0]
            if self._cancel is not None and self._cancel.is_set():
                self._stop.set()
                raise OperationCancelled()
            try:
                chunk = head.chunks.get(timeout=0.1)
            except queue.Empty:
                assert head.future is not None
                if head.future.done() and head.chunks.empty():
                    head.future.result()  # the fetch failed: raise its error
                    raise RuntimeError(f"range {head.start}-{head.end} of {self.key} ended without its end") from None
                continue
            if chunk is not None:
                return chunk
            self._ranges.popleft()
            self._schedule()
        return b""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_CHUNK), b""))
        check_cancel(self._cancel)
        if size == 0:
            return b""
        if not self._current:
            self._current = self._next_chunk()
        chunk, self._current = self._current[:size], self._current[size:]
        self.position += len(chunk)
        if self._progress is not None and chunk:
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
            self._pool.shutdown(wait=True, cancel_futures=True)
            for stream in self._ranges:  # failures after the reader was abandoned are not news
                if stream.future is not None and not stream.future.cancelled():
                    stream.future.exception()
            self._pool = None
        self._ranges.clear()
        self._current = b""
        super().close()


def _incomplete_read(position: int, size: int) -> BaseException:
    import botocore.exceptions

    error: BaseException = botocore.exceptions.IncompleteReadError(actual_bytes=position, expected_bytes=size)
    return error

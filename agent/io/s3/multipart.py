"""Multipart uploads of streams of unknown length: the part-size schedule and one upload that fills parts from a
chunk iterator, keeps a few in flight within a memory budget, and aborts on any failure.

Part sizes (`part_size_for_part`): parts start at `min_part_size` (8 MiB by default, or larger when a `size_hint`
says the object will be big) and double every 1,000 parts, capped at 5 GiB, so S3's 10,000-part limit is reached only
after about 7.8 TiB even with no hint; part uploads run concurrently with at most `INFLIGHT_BUDGET` bytes buffered, so
memory does not grow with the object size.

The producing thread (the one iterating the chunks: tar + compression) never waits for a part upload unless every
part buffer the budget allows (`MAX_PARALLEL_PARTS` sending, one queued, one being filled) is taken. Each byte is
copied once, from its chunk into a reused part buffer (a `bytearray`, which botocore hashes and sends as it is; a
`bytes` body is wrapped in a BytesIO and moved 16 KiB per Python call, and a fresh 8-64 MiB buffer per part costs
page faults): see docs/benchmarks.md, "Snapshots / Upload".
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.models import TaskError

from .errors import S3_ERROR, s3_url
from .threads import check_cancel

if TYPE_CHECKING:
    from .client import S3Client

MiB = 1024 * 1024
GiB = 1024 * MiB
S3_MIN_PART_SIZE = 5 * MiB
S3_MAX_PART_SIZE = 5 * GiB
S3_MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB
PARTS_PER_SIZE_STEP = 1_000
INFLIGHT_BUDGET = 256 * MiB
"""Upper bound on part bytes buffered at once by one upload (in flight plus the one being filled)."""
MAX_PARALLEL_PARTS = 4


@dataclass(frozen=True)
class UploadResult:
    key: str
    size: int
    parts: int
    etag: str = ""


def base_part_size(size_hint: int | None, minimum: int = DEFAULT_PART_SIZE) -> int:
    """The first part size: `minimum`, or larger so that `size_hint` bytes (plus 10 %) fit in 9,000 parts."""
    size = max(minimum, S3_MIN_PART_SIZE)
    if size_hint:
        size = max(size, math.ceil(size_hint * 1.1 / (S3_MAX_PARTS - PARTS_PER_SIZE_STEP)))
    return min(math.ceil(size / MiB) * MiB, S3_MAX_PART_SIZE)


def part_size_for_part(part_number: int, base: int) -> int:
    """Size of part `part_number` (from 1): `base`, doubling every 1,000 parts, capped at S3's 5 GiB."""
    doublings: int = (part_number - 1) // PARTS_PER_SIZE_STEP
    return min(base << doublings, S3_MAX_PART_SIZE)


def multipart_capacity(base: int) -> int:
    """How many bytes 10,000 parts hold under the schedule of `part_size_for_part`."""
    return sum(part_size_for_part(n, base) for n in range(1, S3_MAX_PARTS + 1))


class MultipartUpload:
    """One streaming upload: fills parts from the chunk iterator, uploads them in parallel, aborts on failure."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        content_type: str,
        size_hint: int | None,
        cancel: threading.Event | None,
        progress: Callable[[int, int | None], None] | None,
    ):
        self.s3 = client
        self.bucket = bucket
        self.key = key
        self.content_type = content_type
        self.base = base_part_size(size_hint, client.min_part_size)
        self.cancel = cancel
        self.progress = progress
        self.upload_id = ""
        self.sent = 0
        self._lock = threading.Lock()

    def run(self, chunks: Iterator[bytes]) -> UploadResult:
        parts = _PartFiller(chunks, self.cancel)
        first = parts.fill(bytearray(self.base))
        if parts.exhausted:
            self.s3.put_bytes_blocking(self.bucket, self.key, bytes(first), content_type=self.content_type)
            self._report(len(first))
            return UploadResult(self.key, len(first), 1)
        try:
            response = self.s3.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
        except Exception as error:
            raise self.s3._error(error, self.bucket, self.key, "starting multipart upload of") from error
        self.upload_id = str(response["UploadId"])
        try:
            return self._upload_parts(parts, first)
        except BaseException:
            self._abort()
            raise

    def _upload_parts(self, source: _PartFiller, first: bytearray) -> UploadResult:
        parts: dict[int, str] = {}
        in_flight: set[Future[bytearray]] = set()
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL_PARTS, thread_name_prefix="s3-part") as pool:
            try:
                total = self._send_parts(pool, source, first, parts, in_flight)
            except BaseException:
                for future in in_flight:  # queued parts of a failed upload are not sent; running ones finish
                    future.cancel()
                raise
        check_cancel(self.cancel)
        try:
            response = self.s3.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": parts[n]} for n in sorted(parts)]},
            )
        except Exception as error:
            raise self.s3._error(error, self.bucket, self.key, "completing multipart upload of") from error
        return UploadResult(self.key, total, len(parts), str(response.get("ETag", "")))

    def _send_parts(
        self,
        pool: ThreadPoolExecutor,
        source: _PartFiller,
        first: bytearray,
        parts: dict[int, str],
        in_flight: set[Future[bytearray]],
    ) -> int:
        """Queue `first` and every further part as soon as it is filled; returns the bytes sent. The producing
        thread (this one) waits only when every buffer the budget allows is queued or in flight."""
        spare: list[bytearray] = []
        buffer = first
        total = 0
        number = 1
        while buffer:
            total += len(buffer)
            in_flight.add(pool.submit(self._upload_part, number, buffer, parts))
            if source.exhausted:
                break
            number += 1
            if number > S3_MAX_PARTS:
                raise TaskError(
                    f"uploading {s3_url(self.bucket, self.key)}: more than {S3_MAX_PARTS} parts needed",
                    reason=S3_ERROR,
                    hint="the object is larger than the part schedule allows (7.8 TiB from 8 MiB parts)",
                )
            buffer = source.fill(self._free_buffer(part_size_for_part(number, self.base), in_flight, spare))
        while in_flight:
            _collect(in_flight, spare, block=True)
        return total

    def _free_buffer(self, size: int, in_flight: set[Future[bytearray]], spare: list[bytearray]) -> bytearray:
        """A buffer of `size` bytes to fill next: a sent part's buffer when one is free (no allocation, no page
        faults), a new one while the budget allows, else the first to come back from a finished upload."""
        buffers = max(2, min(MAX_PARALLEL_PARTS + 2, INFLIGHT_BUDGET // size))
        _collect(in_flight, spare, block=False)
        while True:
            while spare:
                buffer = spare.pop()
                if len(buffer) == size:
                    return buffer
                # else a buffer of the previous size step (parts double every 1,000): dropped, its memory freed
            if len(in_flight) + 1 < buffers:
                return bytearray(size)
            _collect(in_flight, spare, block=True)

    def _upload_part(self, number: int, data: bytearray, parts: dict[int, str]) -> bytearray:
        check_cancel(self.cancel)
        try:
            # A bytearray body goes to the socket in one `sendall` and into the SigV4 payload hash in one call.
            # (botocore wraps a `bytes` body in a BytesIO, which it then hashes 1 MiB and sends 16 KiB per Python
            # call, holding the GIL between calls: the producing thread's time.)
            response = self.s3.client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
            )
        except Exception as error:
            raise self.s3._error(error, self.bucket, self.key, f"uploading part {number} of") from error
        with self._lock:  # report under the lock, so watchers see a count that only grows
            parts[number] = str(response["ETag"])
            self.sent += len(data)
            self._report(self.sent)
        return data

    def _report(self, sent: int) -> None:
        if self.progress is not None:
            self.progress(sent, None)

    def _abort(self) -> None:
        # Best effort: a failed abort leaves parts that the bucket's lifecycle rule for incomplete uploads removes.
        with contextlib.suppress(Exception):
            self.s3.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


def _collect(in_flight: set[Future[bytearray]], spare: list[bytearray], *, block: bool) -> None:
    """Move the finished part uploads out of `in_flight` (waiting for one when `block`) and their buffers into
    `spare`; re-raises the first failure."""
    done = wait(in_flight, return_when=FIRST_COMPLETED).done if block else {f for f in in_flight if f.done()}
    in_flight -= done
    for future in done:
        spare.append(future.result())


class _PartFiller:
    """Copies the source's chunks into part buffers: one copy per byte, the rest of a chunk carried over to the next
    part as a view (never sliced into a new bytes object)."""

    def __init__(self, chunks: Iterator[bytes], cancel: threading.Event | None):
        self._chunks = chunks
        self._cancel = cancel
        self._carry = memoryview(b"")
        self.exhausted = False

    def fill(self, buffer: bytearray) -> bytearray:
        """Fill `buffer` completely, or up to the end of the source (then truncated to what was filled)."""
        filled = 0
        size = len(buffer)
        while filled < size:
            if not self._carry:
                check_cancel(self._cancel)
                chunk = next(self._chunks, None)
                if chunk is None:
                    self.exhausted = True
                    del buffer[filled:]  # in place: the last part's buffer shrinks, nothing is copied
                    return buffer
                self._carry = memoryview(chunk).cast("B")
            taken = min(size - filled, len(self._carry))
            buffer[filled : filled + taken] = self._carry[:taken]
            self._carry = self._carry[taken:]
            filled += taken
        if not self._carry:  # look ahead one chunk, so a source that ends exactly here makes this the last part
            check_cancel(self._cancel)
            chunk = next(self._chunks, None)
            if chunk is None:
                self.exhausted = True
            else:
                self._carry = memoryview(chunk).cast("B")
        return buffer

"""Multipart uploads of streams of unknown length: the part-size schedule and one upload that fills parts from a
chunk iterator, keeps a few in flight within a memory budget, and aborts on any failure.

Part sizes (`part_size_for_part`): parts start at `min_part_size` (8 MiB by default, or larger when a `size_hint`
says the object will be big) and double every 1,000 parts, capped at 5 GiB, so S3's 10,000-part limit is reached only
after about 7.8 TiB even with no hint; part uploads run concurrently with at most `INFLIGHT_BUDGET` bytes buffered, so
memory does not grow with the object size.
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

    def _fill(self, chunks: Iterator[bytes], pending: bytearray, size: int) -> bool:
        """Fill `pending` up to `size` bytes; returns False once the source is exhausted."""
        while len(pending) < size:
            check_cancel(self.cancel)
            chunk = next(chunks, None)
            if chunk is None:
                return False
            pending += chunk
        return True

    def run(self, chunks: Iterator[bytes]) -> UploadResult:
        pending = bytearray()
        more = self._fill(chunks, pending, self.base)
        if not more and len(pending) <= self.base:
            self.s3.put_bytes_blocking(self.bucket, self.key, bytes(pending), content_type=self.content_type)
            self._report(len(pending))
            return UploadResult(self.key, len(pending), 1)
        try:
            response = self.s3.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
        except Exception as error:
            raise self.s3._error(error, self.bucket, self.key, "starting multipart upload of") from error
        self.upload_id = str(response["UploadId"])
        try:
            return self._upload_parts(chunks, pending, more)
        except BaseException:
            self._abort()
            raise

    def _upload_parts(self, chunks: Iterator[bytes], pending: bytearray, more: bool) -> UploadResult:
        parts: dict[int, str] = {}
        in_flight: set[Future[None]] = set()
        total = 0
        number = 0
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL_PARTS, thread_name_prefix="s3-part") as pool:
            while pending or number == 0:
                number += 1
                if number > S3_MAX_PARTS:
                    raise TaskError(
                        f"uploading {s3_url(self.bucket, self.key)}: more than {S3_MAX_PARTS} parts needed",
                        reason=S3_ERROR,
                        hint="the object is larger than the part schedule allows (7.8 TiB from 8 MiB parts)",
                    )
                size = part_size_for_part(number, self.base)
                data = bytes(pending[:size])
                del pending[:size]
                total += len(data)
                parallel = max(1, min(MAX_PARALLEL_PARTS, INFLIGHT_BUDGET // size - 1))
                while len(in_flight) >= parallel:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                in_flight.add(pool.submit(self._upload_part, number, data, parts))
                del data
                if more and len(pending) < part_size_for_part(number + 1, self.base):
                    more = self._fill(chunks, pending, part_size_for_part(number + 1, self.base))
            for future in in_flight:
                future.result()
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

    def _upload_part(self, number: int, data: bytes, parts: dict[int, str]) -> None:
        check_cancel(self.cancel)
        try:
            response = self.s3.client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
            )
        except Exception as error:
            raise self.s3._error(error, self.bucket, self.key, f"uploading part {number} of") from error
        with self._lock:  # report under the lock, so watchers see a count that only grows
            parts[number] = str(response["ETag"])
            self.sent += len(data)
            self._report(self.sent)

    def _report(self, sent: int) -> None:
        if self.progress is not None:
            self.progress(sent, None)

    def _abort(self) -> None:
        # Best effort: a failed abort leaves parts that the bucket's lifecycle rule for incomplete uploads removes.
        with contextlib.suppress(Exception):
            self.s3.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)

"""S3 for the agent: one client, streaming both ways, errors that name `s3://bucket/key` and say why.

Configuration follows the AWS tools people already know:

- region: the `region` argument (a task param or `SEI_*_REGION`), else boto3's chain (`AWS_REGION`, profile);
- endpoint: the `endpoint_url` argument, else `settings.s3_endpoint_url` (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`),
  else AWS. S3-compatible stores (MinIO, Ceph, R2...) get path-style addressing, which all of them understand, and
  checksums only where the API requires them (boto3's newer default CRC headers break several of them);
- credentials: boto3's default chain (env, IRSA / Pod Identity web identity, instance profile); never passed in params;
- retries: botocore's `standard` mode (SlowDown, throttling, 5xx, connection errors, with backoff), 8 attempts,
  unless `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS` say otherwise (`adaptive` adds client-side rate limiting).

API (every `async` method runs boto3 in a worker thread, so the calling handler stays cancellable):

- `S3Client(region=..., endpoint_url=...)`, or `S3Client.from_settings(settings, region=...)`.
- `await get_bytes(bucket, key, max_bytes=...)`, `await get_json(...)`: small objects, fully in memory (bounded).
- `await put_bytes(bucket, key, data, content_type=...)`, `await put_json(bucket, key, value)`.
- `await exists(bucket, key)`, `await head(bucket, key) -> ObjectInfo`, `await list_objects(bucket, prefix)`,
  `await list_keys(bucket, prefix)`.
- `await download(bucket, key, sink, progress=...)`: streams an object into a binary writer or a callable.
- `async for chunk in iter_chunks(bucket, key, progress=...)`: the same as an async iterator of byte chunks.
- `await upload_stream(bucket, key, source, progress=..., size_hint=...)`: a reader, an iterable or an async
  iterable of byte chunks of unknown length into a multipart upload (a single PUT when it fits in one part);
  aborted on any failure.
- Blocking forms for pipelines that already run in a worker thread (see `run_blocking`): `open_reader(...)` returns a
  file-like `S3ObjectReader`; `upload_blocking(...)`.
- `run_blocking(fn)`: run `fn(cancel_event)` in a thread; cancelling the awaiting task sets the event and waits until
  `fn` has stopped (so nothing keeps writing after a handler was cancelled).

Streaming downloads survive a broken connection: the reader re-opens the object with a ranged GET from the last byte
received, pinned to the object's ETag (`If-Match`), so a replaced object fails instead of being spliced. Progress
callbacks receive `(bytes_done, total_or_None)` and, for the async methods, run on the event loop thread.

Multipart part sizes (`part_size_for_part`): parts start at `min_part_size` (8 MiB by default, or larger when a
`size_hint` says the object will be big) and double every 1,000 parts, capped at 5 GiB, so S3's 10,000-part limit is
reached only after about 7.8 TiB even with no hint; part uploads run concurrently with at most `INFLIGHT_BUDGET` bytes
buffered, so memory does not grow with the object size.

Every failure is a `TaskError` whose message names `s3://bucket/key`, the operation and the cause, with a distinct
reason per class: `S3NotFound` (no such bucket/key), `S3AccessDenied` (credentials, policy), `S3Unavailable` (SlowDown,
5xx, timeouts, connection errors; retryable), `S3ObjectChanged` (replaced mid-download; retryable), `S3ObjectTooLarge`
and `S3Error` (anything else).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import boto3
import botocore.exceptions
import urllib3.exceptions
from botocore.config import Config

from agent.models import TaskError
from agent.models.settings import AgentSettings

T = TypeVar("T")

S3_NOT_FOUND = "S3NotFound"
S3_ACCESS_DENIED = "S3AccessDenied"
S3_UNAVAILABLE = "S3Unavailable"
S3_OBJECT_CHANGED = "S3ObjectChanged"
S3_OBJECT_TOO_LARGE = "S3ObjectTooLarge"
S3_ERROR = "S3Error"

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
READ_CHUNK = 1 * MiB
DEFAULT_MAX_BYTES = 64 * MiB
RESUME_ATTEMPTS = 5
RESUME_CREDIT = 8 * MiB
"""Bytes a resumed stream must deliver before its failures stop counting against `resume_attempts`."""
PROGRESS_INTERVAL = 0.25

ByteProgress = Callable[[int, int | None], None]
"""`progress(bytes_done, total_bytes_or_None)`."""


class OperationCancelled(Exception):
    """Raised inside a worker thread when the task that owns it was cancelled (see `run_blocking`)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str = ""


@dataclass(frozen=True)
class UploadResult:
    key: str
    size: int
    parts: int
    etag: str = ""


class S3Failure(TaskError):
    """A failed S3 call; `code` is S3's error code (`NoSuchKey`, `NoSuchBucket`, `SlowDown`...) or empty."""

    def __init__(self, code: str, message: str, *, reason: str, hint: str = "", retryable: bool = False):
        super().__init__(message, reason=reason, hint=hint, retryable=retryable)
        self.code = code

    @property
    def missing_bucket(self) -> bool:
        return self.code == "NoSuchBucket"


def s3_url(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


# --------------------------------------------------------------------------------------------------------- errors

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "404", "NotFound"}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
}
_UNAVAILABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "500",
    "502",
    "503",
    "504",
}
_CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.HTTPClientError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


def s3_error(error: BaseException, bucket: str, key: str, action: str, endpoint: str = "") -> TaskError:
    """Translate a boto3/botocore exception into a `TaskError` naming `s3://bucket/key`, the action and the cause."""
    where = s3_url(bucket, key)
    if isinstance(error, TaskError):
        return error
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        text = str(details.get("Message") or code)
        cause = f"{code}: {text}" if text != code else code
        if code == "NoSuchBucket":
            return S3Failure(
                code,
                f"{action} {where}: bucket {bucket!r} does not exist ({cause})",
                reason=S3_NOT_FOUND,
                hint="check the bucket name, and the region and endpoint it lives in",
            )
        if code in _NOT_FOUND_CODES:
            return S3Failure(
                code,
                f"{action} {where}: object not found ({cause})",
                reason=S3_NOT_FOUND,
                hint="check the key and prefix (a prefix is used verbatim, so it usually ends with '/')",
            )
        if code in _DENIED_CODES:
            return S3Failure(
                code,
                f"{action} {where}: access denied ({cause})",
                reason=S3_ACCESS_DENIED,
                hint="check the pod's AWS credentials (IRSA / Pod Identity role) and the bucket policy",
            )
        if code in ("PreconditionFailed", "412"):
            return S3Failure(
                code,
                f"{action} {where}: the object was replaced while it was being read ({cause})",
                reason=S3_OBJECT_CHANGED,
                hint="run the task again to read the new object",
                retryable=True,
            )
        if code in _UNAVAILABLE_CODES:
            return S3Failure(
                code,
                f"{action} {where}: S3 is throttling or failing ({cause}) and retries did not help",
                reason=S3_UNAVAILABLE,
                hint="S3 or the endpoint is overloaded or down; retry later (spec.retry) or lower the request rate",
                retryable=True,
            )
        return S3Failure(code, f"{action} {where}: {cause}", reason=S3_ERROR)
    if isinstance(error, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return S3Failure(
            "",
            f"{action} {where}: no usable AWS credentials ({error})",
            reason=S3_ACCESS_DENIED,
            hint="give the pod credentials: IRSA / Pod Identity, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(error, botocore.exceptions.ParamValidationError):
        return S3Failure("", f"{action} {where}: invalid request ({error})", reason=S3_ERROR)
    if isinstance(error, botocore.exceptions.FlexibleChecksumError):
        return S3Failure(
            "",
            f"{action} {where}: the data received does not match the object's checksum ({error})",
            reason=S3_UNAVAILABLE,
            hint="the transfer was corrupted on the way; the task can be retried",
            retryable=True,
        )
    if isinstance(error, _CONNECTION_ERRORS):
        target = f" at {endpoint}" if endpoint else ""
        return S3Failure(
            "",
            f"{action} {where}: connection to S3{target} failed ({type(error).__name__}: {error})",
            reason=S3_UNAVAILABLE,
            hint="check the endpoint URL, network policy and DNS; the task can be retried",
            retryable=True,
        )
    if isinstance(error, botocore.exceptions.BotoCoreError):
        return S3Failure("", f"{action} {where}: {type(error).__name__}: {error}", reason=S3_ERROR)
    raise error


# ------------------------------------------------------------------------------------------------- thread helpers


async def run_blocking(fn: Callable[[threading.Event], T]) -> T:
    """Run `fn(cancel)` in a worker thread and return its result.

    When the awaiting task is cancelled, `cancel` is set and this waits for `fn` to return (it must check the event
    between chunks of work and raise `OperationCancelled`), then re-raises `CancelledError`: the caller's cleanup
    never races a thread that is still writing.
    """
    cancel = threading.Event()
    future = asyncio.ensure_future(asyncio.to_thread(fn, cancel))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved so asyncio does not log "exception was never retrieved"
        raise


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise OperationCancelled()


class ProgressRelay:
    """Carries byte counts from a worker thread to a callback on the event loop, throttled to a few per second."""

    def __init__(self, callback: ByteProgress | None, interval: float = PROGRESS_INTERVAL):
        self._callback = callback
        self._loop = asyncio.get_running_loop() if callback else None
        self._interval = interval
        self._last = 0.0

    def __call__(self, done: int, total: int | None, *, final: bool = False) -> None:
        if self._callback is None or self._loop is None:
            return
        now = time.monotonic()
        if final or now - self._last >= self._interval:
            self._last = now
            if _on_loop(self._loop):
                self._callback(done, total)
            else:
                self._loop.call_soon_threadsafe(self._callback, done, total)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# ------------------------------------------------------------------------------------------------------ part sizes


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


# ---------------------------------------------------------------------------------------------------------- client

_SESSION_LOCK = threading.Lock()


class S3Client:
    """A thread-safe S3 client for one region/endpoint (see the module docstring for the API)."""

    def __init__(
        self,
        *,
        region: str = "",
        endpoint_url: str = "",
        min_part_size: int = DEFAULT_PART_SIZE,
        max_attempts: int | None = None,
        retry_mode: str | None = None,
        resume_attempts: int = RESUME_ATTEMPTS,
    ):
        if min_part_size < S3_MIN_PART_SIZE:
            raise ValueError(f"min_part_size must be at least {S3_MIN_PART_SIZE} bytes (S3's minimum)")
        self.region = region
        self.endpoint_url = endpoint_url
        self.min_part_size = min_part_size
        self.resume_attempts = resume_attempts
        mode = retry_mode or os.environ.get("AWS_RETRY_MODE") or "standard"
        attempts = max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or 8)
        self._config = Config(
            retries={"mode": mode, "total_max_attempts": attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=MAX_PARALLEL_PARTS * 2 + 4,
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # boto3 >= 1.36 adds CRC checksums to every upload by default, which several S3-compatible stores reject
            # or mishandle; for them, send checksums only where the API requires one (snapshots carry a .sha256).
            request_checksum_calculation="when_required" if endpoint_url else "when_supported",
            response_checksum_validation="when_required" if endpoint_url else "when_supported",
        )
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: AgentSettings, *, region: str = "", endpoint_url: str = "") -> S3Client:
        """A client for `region` (or boto3's default) at `endpoint_url`, else the agent's configured endpoint."""
        return cls(region=region, endpoint_url=endpoint_url or settings.s3_endpoint_url)

    @property
    def client(self) -> Any:
        """The underlying boto3 client, created on first use (creation loads service models: ~50 ms)."""
        if self._client is None:
            with _SESSION_LOCK:
                if self._client is None:
                    session = boto3.session.Session()
                    self._client = session.client(
                        "s3",
                        region_name=self.region or None,
                        endpoint_url=self.endpoint_url or None,
                        config=self._config,
                    )
        return self._client

    def _error(self, error: BaseException, bucket: str, key: str, action: str) -> TaskError:
        return s3_error(error, bucket, key, action, self.endpoint_url)

    # ---- small objects

    def head_blocking(self, bucket: str, key: str) -> ObjectInfo:
        try:
            response = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as error:
            raise self._error(error, bucket, key, "reading metadata of") from error
        return ObjectInfo(key, int(response["ContentLength"]), str(response.get("ETag", "")))

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size and ETag of an object (`S3NotFound` when it does not exist)."""
        return await asyncio.to_thread(self.head_blocking, bucket, key)

    async def exists(self, bucket: str, key: str) -> bool:
        """Whether the object exists. A missing *bucket* is an error, not False."""
        try:
            await self.head(bucket, key)
        except S3Failure as error:
            if error.reason == S3_NOT_FOUND and not error.missing_bucket:
                # HEAD has no body, so a missing bucket also looks like a bare 404: ask the bucket itself.
                await asyncio.to_thread(self._check_bucket, bucket, key)
                return False
            raise
        return True

    def _check_bucket(self, bucket: str, key: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                error.response["Error"]["Code"] = "NoSuchBucket"
            raise self._error(error, bucket, key, "checking") from error
        except Exception as error:
            raise self._error(error, bucket, key, "checking") from error

    async def get_bytes(self, bucket: str, key: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        """The whole object; `S3ObjectTooLarge` when it is bigger than `max_bytes` (nothing is read then)."""

        def fetch(cancel: threading.Event) -> bytes:
            with self.open_reader(bucket, key, cancel=cancel) as reader:
                if reader.size > max_bytes:
                    raise TaskError(
                        f"reading {s3_url(bucket, key)}: object is {reader.size} bytes, more than the {max_bytes} "
                        "bytes this read allows",
                        reason=S3_OBJECT_TOO_LARGE,
                        hint="check that the key points at the intended object",
                    )
                return reader.read()

        return await run_blocking(fetch)

    async def get_json(self, bucket: str, key: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
        """The object parsed as JSON; a parse failure is a `TaskError` naming the object."""
        data = await self.get_bytes(bucket, key, max_bytes=max_bytes)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TaskError(f"parsing {s3_url(bucket, key)}: not valid JSON ({error})", reason=S3_ERROR) from error

    def put_bytes_blocking(
        self, bucket: str, key: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> None:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as error:
            raise self._error(error, bucket, key, "writing") from error

    async def put_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> None:
        """Write a small object in one PUT (botocore retries it as a whole)."""
        await asyncio.to_thread(self.put_bytes_blocking, bucket, key, data, content_type=content_type)

    async def put_json(self, bucket: str, key: str, value: Any, *, indent: int | None = None) -> None:
        """Write `value` as UTF-8 JSON (`application/json`)."""
        await self.put_bytes(bucket, key, json.dumps(value, indent=indent).encode(), content_type="application/json")

    def list_objects_blocking(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(str(item["Key"]), int(item["Size"]), str(item.get("ETag", ""))))
        except Exception as error:
            raise self._error(error, bucket, prefix, "listing") from error
        return sorted(found, key=lambda info: info.key)

    async def list_objects(self, bucket: str, prefix: str = "") -> list[ObjectInfo]:
        """Every object under `prefix` (all pages), sorted by key."""
        return await asyncio.to_thread(self.list_objects_blocking, bucket, prefix)

    async def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix` (all pages), sorted."""
        return [info.key for info in await self.list_objects(bucket, prefix)]

    # ---- streaming download

    def open_reader(
        self,
        bucket: str,
        key: str,
        *,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> S3ObjectReader:
        """Blocking: open the object for streaming reads (call from a worker thread)."""
        reader = S3ObjectReader(self, bucket, key, cancel=cancel, progress=progress)
        reader.open()
        return reader

    async def download(
        self,
        bucket: str,
        key: str,
        sink: IO[bytes] | Callable[[bytes], object],
        *,
        progress: ByteProgress | None = None,
        chunk_size: int = READ_CHUNK,
    ) -> ObjectInfo:
        """Stream the object into `sink` (a binary writer, or a callable taking each chunk); returns its info."""
        relay = ProgressRelay(progress)
        write = sink if callable(sink) else sink.write

        def pump(cancel: threading.Event) -> ObjectInfo:
            with self.open_reader(bucket, key, cancel=cancel, progress=relay) as reader:
                while chunk := reader.read(chunk_size):
                    write(chunk)
                relay(reader.position, reader.size, final=True)
                return ObjectInfo(key, reader.size, reader.etag)

        return await run_blocking(pump)

    async def iter_chunks(
        self, bucket: str, key: str, *, progress: ByteProgress | None = None, chunk_size: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        """Yield the object as byte chunks (each read in a worker thread); closing the iterator closes the stream."""
        relay = ProgressRelay(progress)
        cancel = threading.Event()
        reader = await asyncio.to_thread(self.open_reader, bucket, key, cancel=cancel, progress=relay)
        try:
            while chunk := await asyncio.to_thread(reader.read, chunk_size):
                yield chunk
            relay(reader.position, reader.size, final=True)
        finally:
            cancel.set()
            reader.close()

    # ---- streaming upload

    async def upload_stream(
        self,
        bucket: str,
        key: str,
        source: IO[bytes] | Iterable[bytes] | AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        size_hint: int | None = None,
        progress: ByteProgress | None = None,
    ) -> UploadResult:
        """Upload a stream of unknown length: a binary reader or an iterable of chunks (consumed in a worker thread),
        or an async iterable of chunks (driven on this event loop while parts upload from the worker thread)."""
        relay = ProgressRelay(progress)
        loop = asyncio.get_running_loop()
        try:
            result = await run_blocking(
                lambda cancel: self.upload_blocking(
                    bucket,
                    key,
                    _pull_async(source, loop, cancel) if isinstance(source, AsyncIterable) else _chunks_of(source),
                    content_type=content_type,
                    size_hint=size_hint,
                    cancel=cancel,
                    progress=relay,
                )
            )
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:  # an async generator left mid-way (failed upload) releases what it holds now
                with contextlib.suppress(Exception):
                    await close()
        relay(result.size, None, final=True)
        return result

    def upload_blocking(
        self,
        bucket: str,
        key: str,
        chunks: Iterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        size_hint: int | None = None,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> UploadResult:
        """Blocking: upload `chunks` as one object (call from a worker thread). See `upload_stream`."""
        return _MultipartUpload(self, bucket, key, content_type, size_hint, cancel, progress).run(iter(chunks))


def _pull_async(
    source: AsyncIterable[bytes], loop: asyncio.AbstractEventLoop, cancel: threading.Event
) -> Iterator[bytes]:
    """Iterate an async iterable from a worker thread by running each step on `loop`; stops promptly on cancel."""
    iterator = aiter(source)
    while True:
        step = asyncio.run_coroutine_threadsafe(_next_or_none(iterator), loop)
        while True:
            try:
                chunk = step.result(timeout=0.2)
                break
            except FutureTimeout:
                if cancel.is_set():
                    step.cancel()
                    raise OperationCancelled() from None
        if chunk is None:
            return
        yield chunk


async def _next_or_none(iterator: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return None


def _chunks_of(source: IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
    read = getattr(source, "read", None)
    if read is None:
        yield from source
        return
    while chunk := read(READ_CHUNK):
        yield chunk


class S3ObjectReader(io.RawIOBase):
    """A blocking, forward-only file object over one S3 object that resumes after a broken connection.

    After a stream error (reset, truncated body, read timeout) it re-opens the object from the current offset with a
    ranged GET pinned by `If-Match` to the ETag first seen; the GET itself is retried by botocore on throttling and
    5xx. It gives up (`S3Unavailable`) after `resume_attempts` failures with less than `RESUME_CREDIT` bytes received
    between them, so a long download survives occasional resets but a link that keeps breaking fails in bounded time.
    A replaced object fails with `S3ObjectChanged`.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ):
        super().__init__()
        self._s3 = client
        self.bucket = bucket
        self.key = key
        self._cancel = cancel
        self._progress = progress
        self._body: Any = None
        self.size = 0
        self.etag = ""
        self.position = 0
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
        if self.position:
            arguments.update(Range=f"bytes={self.position}-", IfMatch=self.etag)
        try:
            response = self._s3.client.get_object(**arguments)
        except Exception as error:
            raise self._s3._error(error, self.bucket, self.key, "reading") from error
        if not self.position:
            self.size = int(response["ContentLength"])
            self.etag = str(response.get("ETag", ""))
        self._body = response["Body"]

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
            if self.position >= self.size or size == 0:
                return b""
            try:
                chunk = self._body.read(min(size, self.size - self.position))
                if not chunk:
                    raise botocore.exceptions.IncompleteReadError(actual_bytes=self.position, expected_bytes=self.size)
            except _CONNECTION_ERRORS as error:
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


class _MultipartUpload:
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

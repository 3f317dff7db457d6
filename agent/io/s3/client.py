"""`S3Client`: the async facade handlers use (each call runs boto3 in a worker thread, so the calling handler stays
cancellable) and the blocking forms for pipelines that already run in a worker thread.

boto3 is imported when the first client is created, not when this module is imported: an agent that runs no S3 task
never loads it (boto3 and botocore are about a third of an idle agent's memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import IO, Any

from agent.models import TaskError
from agent.models.settings import AgentSettings

from .errors import S3_ERROR, S3_NOT_FOUND, S3_OBJECT_TOO_LARGE, S3Failure, error_code, s3_error, s3_url
from .multipart import DEFAULT_PART_SIZE, MAX_PARALLEL_PARTS, S3_MIN_PART_SIZE, MultipartUpload, UploadResult
from .reader import PARALLEL_RANGES, READ_CHUNK, RESUME_ATTEMPTS, ParallelObjectReader, S3ObjectReader
from .threads import ByteProgress, OperationCancelled, ProgressRelay, run_blocking

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str = ""


_SESSION_LOCK = threading.Lock()
_SESSION: Any = None
"""One boto3 session for the process, created with the first client: a session caches the service models it loads
(the S3 model and endpoint rules take 0.1-1 s to load and parse), so every later task's client costs milliseconds.
Credentials resolve once per session, as in any long-running AWS SDK process; temporary ones (IRSA / Pod Identity,
instance profiles) refresh themselves."""


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
        mode = retry_mode or "standard"
        attempts = max_attempts or 8
        self._retries = {"mode": mode, "total_max_attempts": attempts}
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: AgentSettings, *, region: str = "", endpoint_url: str = "") -> S3Client:
        """A client for `region` (or boto3's default) at `endpoint_url`, else the agent's configured endpoint."""
        return cls(
            region=region,
            endpoint_url=endpoint_url or settings.s3_endpoint_url,
            max_attempts=settings.s3_max_attempts,
            retry_mode=settings.s3_retry_mode,
        )

    @property
    def client(self) -> Any:
        """The underlying boto3 client, created on first use (creation loads service models: ~50 ms)."""
        if self._client is None:
            with _SESSION_LOCK:
                if self._client is None:
                    import boto3.session
                    from botocore.config import Config

                    custom = bool(self.endpoint_url)
                    s3: dict[str, Any] = {"addressing_style": "path" if custom else "auto"}
                    if self.endpoint_url.lower().startswith("https://"):
                        # botocore SHA-256-hashes every request body for the SigV4 signature unless the body goes
                        # over TLS *with* a checksum header, which `when_required` below leaves out: so uploads to
                        # an S3-compatible store over HTTPS paid a hash per byte on both sides (half the agent's
                        # network-side CPU, docs/benchmarks.md). TLS already protects the body in transit and a
                        # snapshot's .sha256 the whole archive. Over plain HTTP the signed hash is the body's only
                        # integrity check, so it stays; AWS itself (no endpoint) gets CRC32 checksums instead.
                        s3["payload_signing_enabled"] = False
                    config = Config(
                        retries=self._retries,
                        connect_timeout=10,
                        read_timeout=60,
                        max_pool_connections=MAX_PARALLEL_PARTS * 2 + 4,
                        s3=s3,
                        # boto3 >= 1.36 adds CRC checksums to every upload by default, which several S3-compatible
                        # stores reject or mishandle; for them, send checksums only where the API requires one
                        # (snapshots carry a .sha256).
                        request_checksum_calculation="when_required" if custom else "when_supported",
                        response_checksum_validation="when_required" if custom else "when_supported",
                    )
                    global _SESSION
                    if _SESSION is None:
                        _SESSION = boto3.session.Session()
                    self._client = _SESSION.client(
                        "s3",
                        region_name=self.region or None,
                        endpoint_url=self.endpoint_url or None,
                        config=config,
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
        except Exception as error:
            response: Any = getattr(error, "response", None)
            if isinstance(response, dict) and error_code(error) in ("404", "NoSuchBucket", "NotFound"):
                response.setdefault("Error", {})["Code"] = "NoSuchBucket"
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

    def open_parallel_reader(
        self,
        bucket: str,
        key: str,
        *,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        connections: int = PARALLEL_RANGES,
    ) -> ParallelObjectReader:
        """Blocking: open a large object for streaming reads through `connections` ranged GETs at once (call from a
        worker thread). For objects that are read as fast as the network delivers them, such as snapshots."""
        reader = ParallelObjectReader(self, bucket, key, cancel=cancel, progress=progress, connections=connections)
        try:
            reader.open()
        except BaseException:
            reader.close()
            raise
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
        return MultipartUpload(self, bucket, key, content_type, size_hint, cancel, progress).run(iter(chunks))


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

"""S3 for the agent: one client, streaming both ways, errors that name `s3://bucket/key` and say why.

Configuration follows the AWS tools people already know:

- region: the `region` argument (a task param or `SEI_*_REGION`), else boto3's chain (`AWS_REGION`, profile);
- endpoint: the `endpoint_url` argument, else `settings.s3_endpoint_url` (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`),
  else AWS. S3-compatible stores (MinIO, Ceph, R2...) get path-style addressing, which all of them understand, and
  checksums only where the API requires them (boto3's newer default CRC headers break several of them);
- credentials: boto3's default chain (env, IRSA / Pod Identity web identity, instance profile); never passed in params;
- payload signing: over HTTPS to a custom endpoint, request bodies go with `UNSIGNED-PAYLOAD` (TLS protects them;
  botocore would otherwise SHA-256 every body, since `when_required` sends no checksum header); over plain HTTP
  every body's SHA-256 is signed (its only integrity check in transit);
- retries: botocore's `standard` mode (SlowDown, throttling, 5xx, connection errors, with backoff), 8 attempts,
  unless `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS` (settings, via `S3Client.from_settings`) say otherwise (`adaptive`
  adds client-side rate limiting).

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
  file-like `S3ObjectReader`; `open_parallel_reader(...)` a `ParallelObjectReader` that fetches consecutive ranges
  over several connections at once (for large objects: snapshots); `upload_blocking(...)`.
- `run_blocking(fn)`: run `fn(cancel_event)` in a thread; cancelling the awaiting task sets the event and waits until
  `fn` has stopped (so nothing keeps writing after a handler was cancelled).

Streaming downloads survive a broken connection: the reader re-opens the object with a ranged GET from the last byte
received, pinned to the object's ETag (`If-Match`), so a replaced object fails instead of being spliced. Progress
callbacks receive `(bytes_done, total_or_None)` and, for the async methods, run on the event loop thread.

Multipart part sizes: see `multipart` (parts start at 8 MiB, double every 1,000 parts, at most `INFLIGHT_BUDGET` bytes
buffered, so memory does not grow with the object size).

The package, by concern: `errors` (error mapping), `threads` (the event loop / worker thread bridge), `client` (the
async facade and blocking forms), `reader` (the resumable streaming reader), `multipart` (the multipart writer).
boto3 and botocore are imported when the first client is created or an error is translated, never at import time.

Every failure is a `TaskError` whose message names `s3://bucket/key`, the operation and the cause, with a distinct
reason per class: `S3NotFound` (no such bucket/key), `S3AccessDenied` (credentials, policy), `S3Unavailable` (SlowDown,
5xx, timeouts, connection errors; retryable), `S3ObjectChanged` (replaced mid-download; retryable), `S3ObjectTooLarge`
and `S3Error` (anything else).
"""

from __future__ import annotations

from .client import (
    DEFAULT_MAX_BYTES,
    ObjectInfo,
    S3Client,
)
from .errors import (
    S3_ACCESS_DENIED,
    S3_ERROR,
    S3_NOT_FOUND,
    S3_OBJECT_CHANGED,
    S3_OBJECT_TOO_LARGE,
    S3_UNAVAILABLE,
    S3Failure,
    s3_error,
    s3_url,
)
from .multipart import (
    DEFAULT_PART_SIZE,
    INFLIGHT_BUDGET,
    MAX_PARALLEL_PARTS,
    PARTS_PER_SIZE_STEP,
    S3_MAX_PART_SIZE,
    S3_MAX_PARTS,
    S3_MIN_PART_SIZE,
    GiB,
    MiB,
    UploadResult,
    base_part_size,
    multipart_capacity,
    part_size_for_part,
)
from .reader import (
    PARALLEL_RANGES,
    RANGE_SIZE,
    READ_CHUNK,
    RESUME_ATTEMPTS,
    RESUME_CREDIT,
    ParallelObjectReader,
    S3ObjectReader,
)
from .threads import (
    PROGRESS_INTERVAL,
    ByteProgress,
    OperationCancelled,
    ProgressRelay,
    check_cancel,
    run_blocking,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_PART_SIZE",
    "INFLIGHT_BUDGET",
    "MAX_PARALLEL_PARTS",
    "PARALLEL_RANGES",
    "PARTS_PER_SIZE_STEP",
    "PROGRESS_INTERVAL",
    "RANGE_SIZE",
    "READ_CHUNK",
    "RESUME_ATTEMPTS",
    "RESUME_CREDIT",
    "S3_ACCESS_DENIED",
    "S3_ERROR",
    "S3_MAX_PARTS",
    "S3_MAX_PART_SIZE",
    "S3_MIN_PART_SIZE",
    "S3_NOT_FOUND",
    "S3_OBJECT_CHANGED",
    "S3_OBJECT_TOO_LARGE",
    "S3_UNAVAILABLE",
    "ByteProgress",
    "GiB",
    "MiB",
    "ObjectInfo",
    "OperationCancelled",
    "ParallelObjectReader",
    "ProgressRelay",
    "S3Client",
    "S3Failure",
    "S3ObjectReader",
    "UploadResult",
    "base_part_size",
    "check_cancel",
    "multipart_capacity",
    "part_size_for_part",
    "run_blocking",
    "s3_error",
    "s3_url",
]

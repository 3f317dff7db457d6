"""agent.io.s3 against moto's HTTP server (and versitygw where marked) through boto3, with faults injected by a real
HTTP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.io.s3 import (
    MAX_PARALLEL_PARTS,
    S3_MAX_PART_SIZE,
    S3_MIN_PART_SIZE,
    GiB,
    MiB,
    OperationCancelled,
    ParallelObjectReader,
    S3Client,
    base_part_size,
    multipart_capacity,
    part_size_for_part,
)
from agent.models import TaskError
from agent.models.settings import AgentSettings
from tests.fixtures.s3 import REGION, S3FaultProxy
from tests.fixtures.versitygw import TlsEndpoint

TiB = 1024 * GiB


def payload(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes."""
    blocks = []
    counter = 0
    while sum(map(len, blocks)) < size:
        blocks.append(hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 128)
        counter += 1
    return b"".join(blocks)[:size]


def proxied(s3_faults: S3FaultProxy, **options: Any) -> S3Client:
    options.setdefault("max_attempts", 3)
    return S3Client(region=REGION, endpoint_url=s3_faults.url, min_part_size=S3_MIN_PART_SIZE, **options)


@pytest.mark.slow
async def test_small_objects_round_trip_as_bytes_and_json(s3: S3Client, s3_bucket: str) -> None:
    await s3.put_bytes(s3_bucket, "a/raw.bin", b"\x00\x01payload")
    await s3.put_json(s3_bucket, "a/doc.json", {"peers": ["x@1.2.3.4:26656"]})

    assert await s3.get_bytes(s3_bucket, "a/raw.bin") == b"\x00\x01payload"
    assert await s3.get_json(s3_bucket, "a/doc.json") == {"peers": ["x@1.2.3.4:26656"]}
    assert await s3.exists(s3_bucket, "a/raw.bin")
    assert not await s3.exists(s3_bucket, "a/missing.bin")
    assert (await s3.head(s3_bucket, "a/raw.bin")).size == 9


async def test_list_keys_returns_only_keys_under_the_prefix_sorted(s3: S3Client, s3_bucket: str) -> None:
    for key in ("snap/20.tar.zst", "snap/10.tar.zst", "snap/latest.txt", "other/1.tar.zst"):
        await s3.put_bytes(s3_bucket, key, b"x")

    assert await s3.list_keys(s3_bucket, "snap/") == ["snap/10.tar.zst", "snap/20.tar.zst", "snap/latest.txt"]
    assert await s3.list_keys(s3_bucket, "none/") == []


async def test_client_without_endpoint_uses_the_standard_aws_endpoint_variable(s3_bucket: str, s3_admin: Any) -> None:
    # The session fixture exports AWS_ENDPOINT_URL, as a user pointing the AWS tools at MinIO would.
    s3_admin.put_object(Bucket=s3_bucket, Key="k", Body=b"v")
    assert await S3Client(region=REGION).get_bytes(s3_bucket, "k") == b"v"


def test_client_from_settings_takes_the_agent_endpoint(settings: AgentSettings) -> None:
    configured = settings.model_copy(update={"s3_endpoint_url": "http://minio.local:9000"})
    client = S3Client.from_settings(configured, region="eu-west-1")
    assert client.client.meta.endpoint_url == "http://minio.local:9000"
    assert client.client.meta.region_name == "eu-west-1"
    assert client.client.meta.config.s3["addressing_style"] == "path"
    assert client.client.meta.config.request_checksum_calculation == "when_required"
    assert client.client.meta.config.retries["mode"] == "standard"
    aws = S3Client(region="eu-west-1").client.meta.config
    assert (aws.s3["addressing_style"], aws.request_checksum_calculation) == ("auto", "when_supported")


async def test_get_json_of_invalid_json_names_the_object(s3: S3Client, s3_bucket: str) -> None:
    await s3.put_bytes(s3_bucket, "bad.json", b"{not json")
    with pytest.raises(TaskError, match=rf"s3://{s3_bucket}/bad.json: not valid JSON"):
        await s3.get_json(s3_bucket, "bad.json")


async def test_get_bytes_refuses_objects_larger_than_the_limit(s3: S3Client, s3_bucket: str) -> None:
    await s3.put_bytes(s3_bucket, "big", b"x" * 2048)
    with pytest.raises(TaskError) as caught:
        await s3.get_bytes(s3_bucket, "big", max_bytes=1024)
    assert caught.value.reason == "S3ObjectTooLarge"
    assert "2048 bytes" in caught.value.message


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("get_missing_key", r"s3://{bucket}/nope.json: object not found \(NoSuchKey"),
        ("get_missing_bucket", r"s3://{missing}/k: bucket '{missing}' does not exist"),
        ("exists_missing_bucket", r"s3://{missing}/k: bucket '{missing}' does not exist"),
        ("list_missing_bucket", r"s3://{missing}/p/: bucket '{missing}' does not exist"),
        ("put_missing_bucket", r"s3://{missing}/k: bucket '{missing}' does not exist"),
    ],
)
async def test_missing_objects_and_buckets_are_s3_not_found_naming_the_url(
    s3: S3Client, s3_bucket: str, operation: str, expected: str
) -> None:
    missing = f"{s3_bucket}-absent"
    calls = {
        "get_missing_key": lambda: s3.get_json(s3_bucket, "nope.json"),
        "get_missing_bucket": lambda: s3.get_bytes(missing, "k"),
        "exists_missing_bucket": lambda: s3.exists(missing, "k"),
        "list_missing_bucket": lambda: s3.list_keys(missing, "p/"),
        "put_missing_bucket": lambda: s3.put_bytes(missing, "k", b"v"),
    }
    with pytest.raises(TaskError) as caught:
        await calls[operation]()
    assert caught.value.reason == "S3NotFound"
    assert caught.value.hint
    assert re.search(expected.format(bucket=s3_bucket, missing=missing), caught.value.message), caught.value.message


@pytest.mark.slow
@pytest.mark.parametrize(
    ("status", "code", "reason", "retryable"),
    [
        (403, "AccessDenied", "S3AccessDenied", False),
        (503, "SlowDown", "S3Unavailable", True),
        (500, "InternalError", "S3Unavailable", True),
    ],
)
async def test_persistent_errors_map_to_a_reason_per_class(
    s3_faults: S3FaultProxy, s3_bucket: str, s3: S3Client, status: int, code: str, reason: str, retryable: bool
) -> None:
    await s3.put_bytes(s3_bucket, "obj", b"data")
    s3_faults.fail("GET", "/obj", status=status, code=code, times=100)

    with pytest.raises(TaskError) as caught:
        await proxied(s3_faults).get_bytes(s3_bucket, "obj")

    assert caught.value.reason == reason
    assert caught.value.retryable is retryable
    assert f"s3://{s3_bucket}/obj" in caught.value.message
    assert code in caught.value.message


@pytest.mark.slow
async def test_throttling_and_5xx_are_retried_by_botocore(
    s3_faults: S3FaultProxy, s3_bucket: str, s3: S3Client
) -> None:
    await s3.put_bytes(s3_bucket, "obj", b"data")
    s3_faults.fail("GET", "/obj", status=503, code="SlowDown", times=1)
    s3_faults.fail("GET", "/obj", status=500, times=1)

    assert await proxied(s3_faults, max_attempts=4).get_bytes(s3_bucket, "obj") == b"data"
    assert [method for method, path, _ in s3_faults.requests if path.endswith("/obj")] == ["GET"] * 3


@pytest.mark.slow
async def test_unreachable_endpoint_is_s3_unavailable_naming_the_endpoint(
    s3_bucket: str, refused_port: Callable[..., int]
) -> None:
    endpoint = f"http://127.0.0.1:{refused_port()}"
    client = S3Client(region=REGION, endpoint_url=endpoint, max_attempts=1)
    with pytest.raises(TaskError) as caught:
        await client.get_bytes(s3_bucket, "k")
    assert caught.value.reason == "S3Unavailable"
    assert endpoint in caught.value.message
    assert f"s3://{s3_bucket}/k" in caught.value.message


@pytest.mark.slow
async def test_download_resumes_after_a_truncated_body_with_a_ranged_get(
    s3_faults: S3FaultProxy, s3_bucket: str, s3: S3Client
) -> None:
    data = payload(3 * MiB)
    await s3.put_bytes(s3_bucket, "blob", data)
    s3_faults.truncate("GET", "/blob", after=MiB + 123, times=2)
    received = io.BytesIO()
    reports: list[tuple[int, int | None]] = []

    info = await proxied(s3_faults).download(
        s3_bucket, "blob", received, progress=lambda done, total: reports.append((done, total))
    )

    assert received.getvalue() == data
    assert info.size == len(data)
    ranges = [byte_range for _, path, byte_range in s3_faults.requests if path.endswith("/blob")]
    assert ranges[0] == ""
    assert ranges[1].startswith("bytes=") and ranges[1].endswith("-")
    assert reports[-1] == (len(data), len(data))


@pytest.mark.slow
async def test_download_gives_up_when_every_resume_breaks_and_says_where(
    s3_faults: S3FaultProxy, s3_bucket: str, s3: S3Client
) -> None:
    await s3.put_bytes(s3_bucket, "blob", payload(MiB))
    s3_faults.truncate("GET", "/blob", after=1000, times=1000)

    with pytest.raises(TaskError) as caught:
        await S3Client(region=REGION, endpoint_url=s3_faults.url, resume_attempts=2).download(
            s3_bucket, "blob", io.BytesIO()
        )

    assert caught.value.reason == "S3Unavailable"
    assert caught.value.retryable
    assert f"s3://{s3_bucket}/blob" in caught.value.message
    assert "broke off at byte" in caught.value.message


async def test_download_fails_when_the_object_is_replaced_before_a_resume(
    s3_faults: S3FaultProxy, s3_bucket: str, s3: S3Client, s3_admin: Any
) -> None:
    await s3.put_bytes(s3_bucket, "blob", payload(2 * MiB))
    s3_faults.truncate("GET", "/blob", after=100_000, times=1)
    replaced = threading.Event()

    def sink(chunk: bytes) -> None:
        if not replaced.is_set():
            s3_admin.put_object(Bucket=s3_bucket, Key="blob", Body=b"a different object")
            replaced.set()

    with pytest.raises(TaskError) as caught:
        await proxied(s3_faults).download(s3_bucket, "blob", sink, chunk_size=50_000)
    assert caught.value.reason == "S3ObjectChanged"


async def test_iter_chunks_yields_the_whole_object(s3: S3Client, s3_bucket: str) -> None:
    data = payload(2 * MiB + 17)
    await s3.put_bytes(s3_bucket, "blob", data)
    chunks = [chunk async for chunk in s3.iter_chunks(s3_bucket, "blob", chunk_size=256 * 1024)]
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) <= 256 * 1024


def read_parallel(
    client: S3Client, bucket: str, key: str, *, read_size: int, cancel: threading.Event | None = None, **kwargs: Any
) -> tuple[bytes, list[tuple[int, int | None]]]:
    reports: list[tuple[int, int | None]] = []
    reader = ParallelObjectReader(
        client, bucket, key, cancel=cancel, progress=lambda done, total: reports.append((done, total)), **kwargs
    )
    with reader:
        reader.open()
        data = b"".join(iter(lambda: reader.read(read_size), b""))
    return data, reports


@pytest.mark.s3_backends
@pytest.mark.parametrize("size", [0, 1, 3 * MiB + 17])
async def test_parallel_reader_returns_the_object_in_order_from_ranged_gets(
    s3: S3Client, s3_bucket: str, s3_backend: str, size: int
) -> None:
    data = payload(size)
    await s3.put_bytes(s3_bucket, "blob", data)

    received, reports = await asyncio.to_thread(
        read_parallel, s3, s3_bucket, "blob", read_size=300_001, range_size=MiB, connections=3
    )

    assert received == data
    if size:
        assert reports[-1] == (size, size)


async def test_parallel_reader_pins_every_range_to_the_etag_and_resumes_a_broken_range(
    s3_faults: S3FaultProxy, s3_bucket: str, s3: S3Client
) -> None:
    data = payload(4 * MiB)
    await s3.put_bytes(s3_bucket, "blob", data)
    s3_faults.truncate("GET", "/blob", after=200_000, times=2, ranged_only=True)

    received, _ = await asyncio.to_thread(
        read_parallel, proxied(s3_faults), s3_bucket, "blob", read_size=MiB, range_size=MiB, connections=4
    )

    assert received == data
    ranges = sorted(byte_range for method, path, byte_range in s3_faults.requests if method == "GET")
    assert len(ranges) == 4 + 2  # one GET per range, plus a resume for each of the two cut ones
    assert {f"bytes={n * MiB}-{(n + 1) * MiB - 1}" for n in range(4)} <= set(ranges)


async def test_parallel_reader_fails_when_the_object_is_replaced_mid_download(
    s3_bucket: str, s3: S3Client, s3_admin: Any
) -> None:
    await s3.put_bytes(s3_bucket, "blob", payload(4 * MiB))

    def read_then_replace() -> None:
        reader = ParallelObjectReader(s3, s3_bucket, "blob", range_size=MiB, connections=1)
        with reader:
            reader.open()
            reader.read(MiB)
            s3_admin.put_object(Bucket=s3_bucket, Key="blob", Body=payload(4 * MiB, seed=1))
            while reader.read(MiB):
                pass

    with pytest.raises(TaskError) as caught:
        await asyncio.to_thread(read_then_replace)
    assert caught.value.reason == "S3ObjectChanged"


async def test_parallel_reader_stops_on_cancel_and_its_threads_end(
    s3_faults: S3FaultProxy, s3_bucket: str, s3: S3Client
) -> None:
    await s3.put_bytes(s3_bucket, "blob", payload(4 * MiB))
    s3_faults.stall("GET", "/blob", seconds=1, times=100)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()  # while the first ranges are held by the proxy
    before = {thread.name for thread in threading.enumerate()}

    with pytest.raises(OperationCancelled):
        await asyncio.to_thread(
            read_parallel, proxied(s3_faults), s3_bucket, "blob", read_size=MiB, cancel=cancel, range_size=MiB
        )

    assert not [t for t in threading.enumerate() if t.name.startswith("s3-range") and t.name not in before]


def chunked(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    offset = 0
    while offset < len(data):
        step = next(sizes)
        yield data[offset : offset + step]
        offset += step


def odd_sizes() -> Iterator[int]:
    while True:
        yield from (1, 4093, 700_001, 65_536, 3 * MiB + 5)


@pytest.mark.slow
async def test_streaming_upload_of_unknown_length_uses_multipart_and_round_trips(
    s3: S3Client, s3_bucket: str, s3_admin: Any
) -> None:
    data = payload(12 * MiB + 321)
    reports: list[tuple[int, int | None]] = []

    result = await s3.upload_stream(
        s3_bucket, "big.bin", chunked(data, odd_sizes()), progress=lambda done, total: reports.append((done, total))
    )

    assert result.parts == 3
    assert result.size == len(data)
    assert s3_admin.get_object(Bucket=s3_bucket, Key="big.bin")["Body"].read() == data
    assert reports[-1] == (len(data), None)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)


@pytest.mark.slow
@pytest.mark.s3_backends
@pytest.mark.parametrize("tail", [0, 1, 3 * MiB + 7], ids=["ends-on-a-part-boundary", "one-byte-part", "short-part"])
async def test_multipart_upload_reusing_part_buffers_round_trips_byte_for_byte(
    s3: S3Client, s3_bucket: str, s3_admin: Any, tail: int
) -> None:
    # More parts than the upload keeps buffers (in flight + queued + filling), so buffers of sent parts are refilled
    # while later parts are in flight: a buffer reused too early would corrupt a part that is still being sent.
    parts = 2 * (MAX_PARALLEL_PARTS + 2) + 1
    data = payload(parts * S3_MIN_PART_SIZE + tail, seed=7)

    result = await s3.upload_stream(s3_bucket, "reused.bin", chunked(data, odd_sizes()))

    assert (result.parts, result.size) == (parts + (1 if tail else 0), len(data))
    assert s3_admin.get_object(Bucket=s3_bucket, Key="reused.bin")["Body"].read() == data


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_upload_parts_are_hash_signed_over_plain_http_and_unsigned_over_tls(
    scheme: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over plain HTTP the SHA-256 in each part's signature is the body's only integrity check; over TLS the agent
    # skips it (the hash cost both sides a pass over every byte), and a real S3 server must still take the upload.
    if scheme == "https":
        endpoint: TlsEndpoint = request.getfixturevalue("versitygw_tls_endpoint")
        monkeypatch.setenv("AWS_CA_BUNDLE", str(endpoint.ca_bundle))
        url = endpoint.url
    else:
        url = request.getfixturevalue("versitygw_endpoint")
    s3 = S3Client(region=REGION, endpoint_url=url, min_part_size=S3_MIN_PART_SIZE)
    bucket = f"signing-{scheme}"
    with contextlib.suppress(s3.client.exceptions.BucketAlreadyOwnedByYou):
        s3.client.create_bucket(Bucket=bucket)
    signed: dict[int, str] = {}

    def record(request: Any, **_: Any) -> None:
        number = int(re.search(r"partNumber=(\d+)", request.url).group(1))  # type: ignore[union-attr]
        value = request.headers["X-Amz-Content-SHA256"]
        signed[number] = value.decode() if isinstance(value, bytes) else value

    s3.client.meta.events.register("before-send.s3.UploadPart", record)
    data = payload(2 * S3_MIN_PART_SIZE + 12345, seed=3)

    result = await s3.upload_stream(bucket, "signed.bin", chunked(data, odd_sizes()))

    assert result.parts == 3
    assert await s3.get_bytes(bucket, "signed.bin") == data
    if scheme == "https":
        assert signed == {1: "UNSIGNED-PAYLOAD", 2: "UNSIGNED-PAYLOAD", 3: "UNSIGNED-PAYLOAD"}
    else:
        parts = [data[i : i + S3_MIN_PART_SIZE] for i in range(0, len(data), S3_MIN_PART_SIZE)]
        assert signed == {n: hashlib.sha256(part).hexdigest() for n, part in enumerate(parts, start=1)}


async def test_streaming_upload_that_fits_one_part_is_a_single_put(s3: S3Client, s3_bucket: str) -> None:
    result = await s3.upload_stream(s3_bucket, "small", io.BytesIO(b"hello"), content_type="text/plain")
    assert (result.parts, result.size) == (1, 5)
    assert await s3.get_bytes(s3_bucket, "small") == b"hello"


@pytest.mark.slow
async def test_failed_multipart_upload_is_aborted_and_leaves_no_object(
    s3_faults: S3FaultProxy, s3_bucket: str, s3_admin: Any
) -> None:
    s3_faults.fail("PUT", "partNumber=2", status=500, times=100)

    with pytest.raises(TaskError) as caught:
        await proxied(s3_faults, max_attempts=2).upload_stream(s3_bucket, "big.bin", [payload(11 * MiB)])

    assert caught.value.reason == "S3Unavailable"
    assert "part 2" in caught.value.message
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=s3_bucket)
    assert s3_admin.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


async def test_cancelled_upload_is_aborted_and_the_source_is_no_longer_read(
    s3: S3Client, s3_bucket: str, s3_admin: Any
) -> None:
    first_part_read = threading.Event()
    reads: list[int] = []

    def endless() -> Iterator[bytes]:
        block = os.urandom(MiB)
        while True:
            reads.append(len(reads))
            if len(reads) > 6:
                first_part_read.set()
            yield block

    upload = asyncio.create_task(s3.upload_stream(s3_bucket, "endless", endless()))
    await asyncio.to_thread(first_part_read.wait, 30)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    # The reading thread may take a chunk or a few while the event loop delivers the cancellation (more on a loaded
    # machine); once the cancelled upload has returned, its thread has stopped and nothing reads the source again.
    read_by_then = len(reads)
    await asyncio.sleep(0.3)
    assert len(reads) == read_by_then
    assert s3_admin.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=s3_bucket)


@pytest.mark.parametrize("size_hint", [None, 10 * GiB, 2 * TiB, 20 * TiB])
def test_part_schedule_stays_within_s3_limits_and_covers_multi_terabyte_objects(size_hint: int | None) -> None:
    base = base_part_size(size_hint)
    sizes = [part_size_for_part(number, base) for number in (1, 1000, 1001, 5000, 10_000)]

    assert all(S3_MIN_PART_SIZE <= size <= S3_MAX_PART_SIZE for size in sizes)
    assert multipart_capacity(base) >= max(size_hint or 0, 7 * TiB)
    if size_hint:
        assert base * 9000 >= size_hint  # a correct hint never needs larger parts than the first


def test_part_size_below_the_s3_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        S3Client(min_part_size=MiB)


async def test_upload_from_an_async_iterable_round_trips(s3: S3Client, s3_bucket: str, s3_admin: Any) -> None:
    data = payload(11 * MiB)

    async def produce() -> Any:
        for piece in chunked(data, odd_sizes()):
            await asyncio.sleep(0)
            yield piece

    result = await s3.upload_stream(s3_bucket, "async.bin", produce())

    assert (result.parts, result.size) == (3, len(data))
    assert s3_admin.get_object(Bucket=s3_bucket, Key="async.bin")["Body"].read() == data


async def test_cancelling_an_async_iterable_upload_aborts_it_and_closes_the_source(
    s3: S3Client, s3_bucket: str, s3_admin: Any
) -> None:
    first_part_sent = asyncio.Event()
    closed: list[bool] = []

    async def produce() -> Any:
        try:
            yield payload(6 * MiB)
            first_part_sent.set()
            await asyncio.Event().wait()  # a source that stalls (an RPC that never answers)
            yield b"never"
        finally:
            closed.append(True)

    upload = asyncio.create_task(s3.upload_stream(s3_bucket, "stalled.bin", produce()))
    await asyncio.wait_for(first_part_sent.wait(), 30)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload

    assert closed == [True]
    assert s3_admin.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=s3_bucket)

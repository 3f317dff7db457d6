"""snapshot-restore and snapshot-upload: state-sync snapshots between `data/snapshots/` and S3.

S3 layout (shared by both tasks, so what one uploads the other restores):

    s3://<bucket>/<prefix><height>.tar.<gz|lz4|zst>         the archive of data/snapshots/<height>/ and metadata.db
    s3://<bucket>/<prefix><height>.tar.<ext>.sha256         "<hex>  <height>.tar.<ext>" (sha256sum format)
    s3://<bucket>/<prefix>latest.txt                        the newest uploaded height, in decimal

`prefix` defaults to `<chainId>/state-sync/`. Archive members are named relative to `data/snapshots/`
(`<height>/...`, `metadata.db`), as the original's upload wrote them; the original's `{prefix}{H}.tar.gz` objects
restore as they are.

snapshot-restore: picks the height (`targetHeight`, else `latest.txt`, else the highest archive listed), checks free
space (archive size x `diskSafetyFactor`), streams the object from S3 through the decompressor into a staging
directory `data/.snapshot-restore-staging` (no archive on disk), verifies the SHA-256 (the `sha256` param, else the
published `.sha256` object when there is one), with every file fsynced as it is written (on a background thread, so
durability overlaps the download), then swaps the staging directory in as
`data/snapshots` (a previous `data/snapshots` is replaced as a whole, because its `metadata.db` indexes only its own
snapshots). Then the height file `.sei-sidecar-snapshot-height` (decimal, no newline) and last the marker
`.sei-sidecar-snapshot-done`. Any failure removes the staging directory and leaves `data/` as it was.
`priv_validator_state.json` is never extracted, whatever the archive carries. One restore runs at a time per home
(an flock on `data/` itself). When the archive carries the Cosmos SDK's `metadata.db`, it is replaced, before the swap,
by one listing exactly the restored snapshot(s), computed from the chunk files (`agent.chain.snapshots`): the
uploader's lists every snapshot it kept, and a node advertising snapshots it does not have stalls every peer that
state-syncs from it.

snapshot-upload: the second-highest numeric directory under `data/snapshots/` (the highest may still be being
written), unless `.sei-sidecar-last-upload.json` says it was already uploaded; tar + compression streamed into a
multipart upload, then the `.sha256` object, then `latest.txt`, then the state file (atomically). With
`intervalSeconds` the task keeps running and uploads every interval: it never completes on its own (cancel it);
each iteration's outcome, including errors, goes to `status.progress` (`current` counts uploads, `message` says
what the last iteration did), and a failed iteration does not stop the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from agent.chain.snapshots import METADATA_DB, rebuild_metadata
from agent.io.archive import (
    INSUFFICIENT_DISK,
    Compression,
    ExtractSummary,
    extract_stream,
    tar_chunks,
    tree_size,
)
from agent.io.files import atomic_write, fsync_dir, has_marker, write_marker
from agent.io.s3 import S3_NOT_FOUND, ObjectInfo, ProgressRelay, S3Client, run_blocking, s3_url
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.params.base import ChainId
from agent.models.params.s3 import KeyPrefix, S3Params, Sha256Hex

from .base import TaskContext, handler
from .prechecks import snapshot_layout_known

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---

SnapshotCompression = Literal["gz", "lz4", "zst"]


class SnapshotLayoutParams(S3Params):
    """Where snapshots live: `s3://<bucket>/<prefix><height>.tar.<gz|lz4|zst>` plus `<prefix>latest.txt`.

    `prefix` defaults to `<chainId>/state-sync/` (the layout the original settled on), with `chainId` defaulting to
    `SEI_CHAIN_ID`; an explicit `""` means the bucket root.
    """

    prefix: KeyPrefix | None = None
    chain_id: ChainId = ""


class SnapshotRestoreParams(SnapshotLayoutParams):
    """`snapshot-restore`: the latest snapshot, or the one at `targetHeight`, into `data/snapshots/`."""

    target_height: int | None = Field(default=None, gt=0, description="Restore this height instead of the latest.")
    sha256: Sha256Hex | None = Field(default=None, description="SHA-256 of the archive object, verified.")
    disk_safety_factor: float = Field(
        default=2.0,
        ge=1.0,
        le=100.0,
        description="Free space needed before starting, as a multiple of the archive's size.",
    )


class SnapshotUploadParams(SnapshotLayoutParams):
    """`snapshot-upload`: the newest complete snapshot (second-highest height) to S3, once or every interval."""

    compression: SnapshotCompression = "zst"
    compression_level: int | None = Field(default=None, description="zstd -7..22, gzip 0..9; lz4 has no levels.")
    interval_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Keep running, uploading every N seconds (the Go sidecar's `snapshot-upload` loop).",
    )

    @model_validator(mode="after")
    def _level_fits_the_codec(self) -> SnapshotUploadParams:
        if self.compression_level is None:
            return self
        allowed = {"zst": range(-7, 23), "gz": range(10)}.get(self.compression)
        if allowed is None:
            raise ValueError("compressionLevel: lz4 has no compression levels here; leave it out")
        if self.compression_level not in allowed:
            raise ValueError(
                f"compressionLevel {self.compression_level} is out of range for {self.compression} "
                f"({allowed.start}..{allowed.stop - 1})"
            )
        return self


class SnapshotUploadOnceParams(SnapshotUploadParams):
    """`snapshot-upload-once`: one snapshot-upload run under a deadline (the current original's one-shot type)."""

    timeout_seconds: int = Field(
        default=7200, ge=1, le=7 * 24 * 3600, description="Deadline of the upload (the original's default 2 h)."
    )

    @model_validator(mode="after")
    def _no_interval(self) -> SnapshotUploadOnceParams:
        if self.interval_seconds is not None:
            raise ValueError("intervalSeconds: snapshot-upload-once uploads once; use snapshot-upload for the loop")
        return self


MARKER = "snapshot"
HEIGHT_FILE = ".sei-sidecar-snapshot-height"
UPLOAD_STATE_FILE = ".sei-sidecar-last-upload.json"
LATEST = "latest.txt"
PROTECTED_NAMES = frozenset({"priv_validator_state.json"})
STAGING = ".snapshot-restore-staging"
REPLACED = ".snapshot-restore-replaced"
CHECKSUM_MISMATCH = "ChecksumMismatch"
_ARCHIVE_NAME = re.compile(r"^(\d+)\.tar(?:\.(gz|lz4|zst))?$")
_PREFERENCE = {"zst": 0, "lz4": 1, "gz": 2, "": 3}
_HASH_BACKLOG = 16
"""Chunks (about 1 MiB each) read but not yet hashed, at most."""
_RESERVE_BYTES = 64 * 1024 * 1024
"""Kept free beyond the archive's declared contents (or 5 % of the free space on small volumes), so a restore
never fills the volume to the last byte."""


@dataclass(frozen=True)
class _Snapshot:
    height: int
    info: ObjectInfo
    checksum_key: str | None


def _layout(params: SnapshotLayoutParams, ctx: TaskContext) -> tuple[S3Client, str, str]:
    bucket = params.bucket_or(ctx.settings.snapshot_bucket, "SEI_SNAPSHOT_BUCKET")
    if params.prefix is None:
        chain_id = params.chain_id or ctx.settings.chain_id
        if not chain_id:
            raise ParamsInvalid(
                "params.prefix: not given, and the default <chainId>/state-sync/ needs params.chainId or SEI_CHAIN_ID"
            )
        prefix = f"{chain_id}/state-sync/"
    else:
        prefix = params.prefix
    client = S3Client.from_settings(ctx.settings, region=params.region or ctx.settings.snapshot_region)
    return client, bucket, prefix


# ------------------------------------------------------------------------------------------------------- restore


async def _choose_snapshot(s3: S3Client, bucket: str, prefix: str, target_height: int | None) -> _Snapshot:
    archives: dict[int, tuple[int, ObjectInfo]] = {}
    keys: set[str] = set()
    for info in await s3.list_objects(bucket, prefix):
        keys.add(info.key)
        match = _ARCHIVE_NAME.match(info.key[len(prefix) :])
        if match:
            height, preference = int(match[1]), _PREFERENCE[match[2] or ""]
            if height not in archives or preference < archives[height][0]:
                archives[height] = (preference, info)
    where = s3_url(bucket, prefix)
    if not archives:
        raise TaskError(
            f"no snapshot archives (<height>.tar.gz|lz4|zst) under {where}",
            reason=S3_NOT_FOUND,
            hint="check bucket, prefix and chain ID; snapshot-upload writes <prefix><height>.tar.<ext>",
        )
    if target_height is not None:
        height = target_height
    elif prefix + LATEST in keys:
        text = (await s3.get_bytes(bucket, prefix + LATEST, max_bytes=64)).decode(errors="replace").strip()
        if not text.isdigit() or int(text) <= 0:
            raise TaskError(f"{s3_url(bucket, prefix + LATEST)} does not hold a height: {text!r}")
        height = int(text)
    else:
        height = max(archives)
    if height not in archives:
        available = ", ".join(str(h) for h in sorted(archives)[-5:])
        raise TaskError(
            f"no snapshot archive for height {height} under {where} (newest available: {available})",
            reason=S3_NOT_FOUND,
            hint="pick one of the available heights as params.targetHeight",
        )
    info = archives[height][1]
    checksum_key = info.key + ".sha256"
    return _Snapshot(height, info, checksum_key if checksum_key in keys else None)


async def _expected_sha256(s3: S3Client, bucket: str, snapshot: _Snapshot, pinned: str | None) -> tuple[str, str]:
    """(expected digest, where it came from); empty when there is nothing to verify against."""
    if pinned:
        return pinned, "params.sha256"
    if snapshot.checksum_key is None:
        return "", ""
    text = (await s3.get_bytes(bucket, snapshot.checksum_key, max_bytes=4096)).decode(errors="replace")
    digest = text.split()[0].lower() if text.split() else ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise TaskError(f"{s3_url(bucket, snapshot.checksum_key)} does not hold a SHA-256 digest: {text[:80]!r}")
    return digest, s3_url(bucket, snapshot.checksum_key)


def _check_free_space(data_dir: Path, size: int, factor: float) -> int:
    free = shutil.disk_usage(data_dir).free
    needed = int(size * factor)
    if free < needed:
        raise TaskError(
            f"not enough free space in {data_dir}: the archive is {size} bytes and restoring it needs "
            f"{needed} bytes ({factor:g}x), but only {free} bytes are free",
            reason=INSUFFICIENT_DISK,
            hint="grow the data volume, free space, or lower params.diskSafetyFactor if the archive is barely "
            "compressed",
        )
    return free


@contextlib.contextmanager
def _restore_lock(data_dir: Path) -> Iterator[None]:
    """An exclusive lock on the data directory itself (no lock file is left behind in the node's data)."""
    descriptor = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TaskError(
                f"another snapshot-restore is running on {data_dir}",
                hint="wait for it to finish; this task can be retried",
                retryable=True,
            ) from None
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _remove_trees(*paths: Path) -> None:
    for path in paths:
        _remove_tree(path)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Move the (already durable) staged tree to `target`, replacing what was there as a whole."""
    replaced = target.parent / REPLACED
    if target.exists() or target.is_symlink():
        target.rename(replaced)
        try:
            staging.rename(target)
        except BaseException:
            replaced.rename(target)
            raise
        fsync_dir(target.parent)
        _remove_tree(replaced)
    else:
        staging.rename(target)
        fsync_dir(target.parent)


def _download_and_extract(
    s3: S3Client,
    bucket: str,
    snapshot: _Snapshot,
    staging: Path,
    *,
    budget: int,
    want_digest: bool,
    progress: ProgressRelay,
    cancel: threading.Event,
) -> tuple[ExtractSummary, str]:
    hasher = hashlib.sha256() if want_digest else None

    def report(done: int, total: int | None) -> None:
        progress(done, total)

    with s3.open_parallel_reader(bucket, snapshot.info.key, cancel=cancel, progress=report) as reader:
        hashing = _HashingReader(reader, hasher) if hasher else None
        source: Any = hashing or reader
        try:
            summary = extract_stream(source, staging, max_total_bytes=budget, skip_names=PROTECTED_NAMES, cancel=cancel)
            return summary, hashing.hexdigest() if hashing else ""
        finally:
            if hashing is not None:
                hashing.close()


class _HashingReader:
    """Passes reads through and feeds every byte to a hash (the digest of the object exactly as stored) on a thread
    of its own: hashlib releases the GIL, so hashing (~750 MiB/s here) overlaps decompression on the reading thread
    instead of adding to it. `hexdigest()` waits until the hash has caught up; at most `_HASH_BACKLOG` chunks wait."""

    def __init__(self, source: Any, hasher: Any):
        self._source = source
        self._hasher = hasher
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_HASH_BACKLOG)
        self._thread = threading.Thread(target=self._run, name="restore-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hasher.update(data)

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._source.read(size)
        if data:
            self._queue.put(bytes(data))
        return data

    def hexdigest(self) -> str:
        self.close()
        return str(self._hasher.hexdigest())

    def close(self) -> None:
        """Stop the hashing thread (after it has hashed everything queued); idempotent."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


@handler(TaskType.SNAPSHOT_RESTORE, SnapshotRestoreParams)
async def snapshot_restore(params: SnapshotRestoreParams, ctx: TaskContext) -> dict[str, Any] | None:
    """Restore a state-sync snapshot from S3 into data/snapshots/ (streamed, verified, staged, then swapped in)."""
    if has_marker(ctx.home, MARKER):
        return {"skipped": True, "reason": "already restored (marker present)"}
    s3, bucket, prefix = _layout(params, ctx)
    snapshot = await _choose_snapshot(s3, bucket, prefix, params.target_height)
    expected, expected_from = await _expected_sha256(s3, bucket, snapshot, params.sha256)
    data_dir = ctx.home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    key_url = s3_url(bucket, snapshot.info.key)
    metadata_rebuilt: list[int] | None = None
    with _restore_lock(data_dir):
        staging = data_dir / STAGING
        # Leftovers of a run that crashed (nothing else uses these names): a whole snapshot tree can take minutes to
        # delete, so off the event loop; run_blocking, so a cancel waits for the removal before the lock is released.
        await run_blocking(lambda _: _remove_trees(staging, data_dir / REPLACED))
        free = _check_free_space(data_dir, snapshot.info.size, params.disk_safety_factor)
        staging.mkdir()
        ctx.progress(0, snapshot.info.size, "bytes", f"restoring {key_url}")
        relay = ProgressRelay(lambda done, total: ctx.progress(done, total, "bytes", f"restoring {key_url}"))
        try:
            summary, digest = await run_blocking(
                lambda cancel: _download_and_extract(
                    s3,
                    bucket,
                    snapshot,
                    staging,
                    budget=free - min(_RESERVE_BYTES, free // 20),
                    want_digest=bool(expected),
                    progress=relay,
                    cancel=cancel,
                )
            )
            if expected and digest != expected:
                raise TaskError(
                    f"{key_url}: SHA-256 mismatch: expected {expected} (from {expected_from}), got {digest}",
                    reason=CHECKSUM_MISMATCH,
                    hint="the archive is not the one that was pinned or published; nothing was moved into place",
                )
            if (staging / METADATA_DB).exists():
                # The uploader's metadata.db lists every snapshot it kept, not just this one: see agent.chain.snapshots
                ctx.progress(snapshot.info.size, snapshot.info.size, "bytes", "rebuilding snapshots/metadata.db")
                listed = await asyncio.to_thread(rebuild_metadata, staging)
                if listed is None:
                    ctx.log.warning("snapshot-restore: not the Cosmos SDK snapshot layout; metadata.db kept as is")
                else:
                    ctx.log.info("snapshot-restore: metadata.db rebuilt for (height, format) %s", listed)
                    metadata_rebuilt = [height for height, _ in listed]
            # run_blocking, not to_thread: a cancel must wait for the renames to finish before cleanup starts
            await run_blocking(lambda _: _swap_into_place(staging, data_dir / "snapshots"))
        finally:
            await asyncio.to_thread(_remove_tree, staging)
    atomic_write(ctx.home / HEIGHT_FILE, str(snapshot.height))
    write_marker(ctx.home, MARKER)
    ctx.progress(snapshot.info.size, snapshot.info.size, "bytes", f"restored height {snapshot.height}")
    return {
        "height": snapshot.height,
        "source": key_url,
        "archiveBytes": snapshot.info.size,
        "compression": summary.compression.value,
        "files": summary.files,
        "fileBytes": summary.file_bytes,
        "sha256": digest or None,
        "verifiedAgainst": expected_from or None,
        "skippedMembers": summary.skipped[:10],
        "metadataRebuiltFor": metadata_rebuilt,
    }


# -------------------------------------------------------------------------------------------------------- upload


def _read_upload_state(home: Path, log: Any) -> int:
    path = home / UPLOAD_STATE_FILE
    try:
        state = json.loads(path.read_text())
        return int(state["lastUploadedHeight"])
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError, TypeError) as error:
        log.warning("ignoring unreadable %s (%s): treating it as no upload yet", path, error)
        return 0


def _snapshot_heights(snapshots_dir: Path) -> list[int]:
    if not snapshots_dir.is_dir():
        return []
    return sorted(int(entry.name) for entry in snapshots_dir.iterdir() if entry.name.isdigit() and entry.is_dir())


async def _upload_once(
    params: SnapshotUploadParams, ctx: TaskContext, s3: S3Client, bucket: str, prefix: str
) -> dict[str, Any]:
    snapshots_dir = ctx.home / "data" / "snapshots"
    heights = _snapshot_heights(snapshots_dir)
    if len(heights) < 2:
        return {
            "uploaded": False,
            "reason": f"{len(heights)} snapshot(s) in {snapshots_dir}; the newest may be incomplete, so two are needed",
        }
    height = heights[-2]
    last = _read_upload_state(ctx.home, ctx.log)
    if last >= height:
        return {"uploaded": False, "height": height, "reason": f"height {height} already uploaded (state: {last})"}
    compression = Compression(params.compression)
    members = [str(height)] + (["metadata.db"] if (snapshots_dir / "metadata.db").exists() else [])
    total = await asyncio.to_thread(tree_size, snapshots_dir, members)
    name = f"{height}{compression.suffix}"
    key = prefix + name
    where = s3_url(bucket, key)
    hasher = hashlib.sha256()
    relay = ProgressRelay(lambda done, _: ctx.progress(done, total, "bytes", f"uploading {where}"))

    def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            hasher.update(chunk)
            yield chunk

    def upload(cancel: threading.Event) -> Any:
        chunks = tar_chunks(
            snapshots_dir,
            members,
            compression,
            level=params.compression_level,
            cancel=cancel,
            progress=lambda done: relay(done, total),
        )
        return s3.upload_blocking(
            bucket, key, hashed(chunks), content_type=compression.content_type, size_hint=total, cancel=cancel
        )

    result = await run_blocking(upload)
    digest = hasher.hexdigest()
    await s3.put_bytes(bucket, key + ".sha256", f"{digest}  {name}\n".encode(), content_type="text/plain")
    await s3.put_bytes(bucket, prefix + LATEST, str(height).encode(), content_type="text/plain")
    atomic_write(ctx.home / UPLOAD_STATE_FILE, json.dumps({"lastUploadedHeight": height}))
    ctx.progress(total, total, "bytes", f"uploaded {where}")
    return {
        "uploaded": True,
        "height": height,
        "key": where,
        "archiveBytes": result.size,
        "fileBytes": total,
        "parts": result.parts,
        "sha256": digest,
    }


@handler(TaskType.SNAPSHOT_UPLOAD, SnapshotUploadParams, precheck=snapshot_layout_known)
async def snapshot_upload(params: SnapshotUploadParams, ctx: TaskContext) -> dict[str, Any] | None:
    """Upload the newest complete snapshot to S3 (once, or every intervalSeconds until cancelled)."""
    s3, bucket, prefix = _layout(params, ctx)
    if params.interval_seconds is None:
        return await _upload_once(params, ctx, s3, bucket, prefix)
    uploads = failures = iteration = 0
    while True:
        iteration += 1
        try:
            outcome = await _upload_once(params, ctx, s3, bucket, prefix)
        except TaskError as error:
            failures += 1
            summary = f"failed ({error.reason}): {error}"
            ctx.log.warning("snapshot-upload iteration %d %s", iteration, summary)
        else:
            uploads += bool(outcome["uploaded"])
            summary = f"uploaded {outcome['key']}" if outcome["uploaded"] else f"nothing to do: {outcome['reason']}"
        ctx.progress(
            uploads,
            None,
            "uploads",
            f"iteration {iteration} {summary}; {failures} failed so far; next in {params.interval_seconds}s",
        )
        await asyncio.sleep(params.interval_seconds)


NOOP_REASONS = {"fewer": "fewer-than-2-snapshots", "already": "already-uploaded"}


@handler(TaskType.SNAPSHOT_UPLOAD_ONCE, SnapshotUploadOnceParams, precheck=snapshot_layout_known)
async def snapshot_upload_once(params: SnapshotUploadOnceParams, ctx: TaskContext) -> dict[str, Any]:
    """Upload the newest complete snapshot once, under a deadline (the original's snapshot-upload-once)."""
    s3, bucket, prefix = _layout(params, ctx)
    try:
        async with asyncio.timeout(params.timeout_seconds):
            outcome = await _upload_once(params, ctx, s3, bucket, prefix)
    except TimeoutError:
        raise TaskError(
            f"snapshot upload did not finish within timeoutSeconds={params.timeout_seconds}",
            reason="DeadlineExceeded",
            hint="the multipart upload was aborted; raise timeoutSeconds or check the S3 throughput",
            retryable=True,
        ) from None
    if outcome["uploaded"]:
        return {"outcome": "uploaded", **outcome}
    noop = NOOP_REASONS["already"] if "height" in outcome else NOOP_REASONS["fewer"]
    return {"outcome": "noop", "noopReason": noop, **outcome}


HANDLERS = [snapshot_restore, snapshot_upload, snapshot_upload_once]

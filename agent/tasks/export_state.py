"""`export-state`: `<seid> export --home <home> [--height N]`, its stdout piped straight into an S3 multipart upload.

- The binary is `params.seidBinary`, else `SEI_BINARY`, else `seid`, looked up on PATH; when it is absent the task
  fails with reason `BinaryNotFound` before anything starts (in the sidecar image seid is usually not there: run the
  task in a pod whose image has it).
- stdout is read in a worker thread and handed chunk by chunk to the S3 layer's streaming upload, which keeps at
  most a few parts in memory: no temporary file, no copy of the export in the agent's memory.
- stderr is drained concurrently (so a chatty seid never blocks on a full pipe); its last 4 KiB go into the error
  message when seid fails.
- The upload only completes if seid exits 0 *and* wrote something: the chunk stream raises at end of output
  otherwise, which makes the S3 layer abort the multipart upload (or skip the single PUT). A failed or cancelled
  export therefore never leaves a truncated object at the key (an earlier good export there stays as it was).
- Cancellation (task cancel, timeout, agent shutdown) kills seid's whole process group, then waits for the upload
  to abort before the handler returns.

There is no done-marker (the original's node-wide marker made every later export, at any height, a silent no-op):
the task ID already makes a completed export run once, and a resumed run simply exports again to the same key.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from agent.chain.cosmos import artifacts
from agent.io.s3 import READ_CHUNK
from agent.models import TaskError, TaskType
from agent.models.params.genesis import ExportStateParams

from .base import TaskContext, handler
from .ceremony import genesis_bucket

BINARY_NOT_FOUND = "BinaryNotFound"
EXPORT_FAILED = "ExportFailed"
STDERR_TAIL_BYTES = 4096


class _ExportFailed(Exception):
    """Raised from the chunk stream at end of output when seid did not succeed; aborts the upload."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class _StderrTail:
    """Drains a pipe in a thread and keeps its last bytes."""

    def __init__(self, pipe: IO[bytes]):
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._thread = threading.Thread(target=self._drain, args=(pipe,), name="seid-stderr", daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes]) -> None:
        with pipe:
            while chunk := pipe.read(1024):
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size - len(self._chunks[0]) >= STDERR_TAIL_BYTES:
                    self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        self._thread.join(timeout=5)
        tail = b"".join(self._chunks)[-STDERR_TAIL_BYTES:]
        return tail.decode("utf-8", errors="replace").strip()


def export_command(binary: str, home: Path, height: int) -> list[str]:
    """`<binary> export --home <home>`, plus `--height N` only for a positive height (0 means the latest)."""
    command = [binary, "export", "--home", str(home)]
    if height > 0:
        command += ["--height", str(height)]
    return command


def _stdout_chunks(process: subprocess.Popen[bytes], stderr: _StderrTail) -> Iterator[bytes]:
    assert process.stdout is not None
    total = 0
    with process.stdout:
        while chunk := process.stdout.read(READ_CHUNK):
            total += len(chunk)
            yield chunk
    status = process.wait()
    if status != 0:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise _ExportFailed(f"{how}; stderr: {stderr.text() or '(empty)'}")
    if total == 0:
        raise _ExportFailed(f"exited 0 but wrote nothing to stdout; stderr: {stderr.text() or '(empty)'}")


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # seid runs in its own session: its group is its pid
    with contextlib.suppress(ProcessLookupError):
        process.kill()


@handler(TaskType.EXPORT_STATE, ExportStateParams)
async def export_state(params: ExportStateParams, ctx: TaskContext) -> dict[str, Any]:
    """Run `seid export` and stream its JSON to S3 (default key `<chainId>/exported-state.json`)."""
    bucket = genesis_bucket(params, ctx)
    key = params.key or artifacts.export_key(bucket.chain_id)
    binary = params.seid_binary or ctx.settings.seid_binary
    resolved = shutil.which(binary)
    if resolved is None:
        raise TaskError(
            f"seid binary {binary!r} not found (not an executable path, and not on PATH)",
            reason=BINARY_NOT_FOUND,
            hint="set params.seidBinary or SEI_BINARY, or run export-state in a pod whose image has seid",
        )
    command = export_command(resolved, ctx.home, params.height)
    process = subprocess.Popen(  # noqa: ASYNC220 - starting is instant; all reading happens in worker threads
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stderr is not None
    stderr = _StderrTail(process.stderr)
    ctx.log.info("running %s, streaming to s3://%s/%s", " ".join(command), bucket.name, key)
    upload = asyncio.ensure_future(
        bucket.s3.upload_stream(
            bucket.name,
            key,
            _stdout_chunks(process, stderr),
            content_type="application/json",
            progress=lambda done, _total: ctx.progress(done, None, "bytes", f"exporting to {key}"),
        )
    )
    try:
        result = await asyncio.shield(upload)
    except asyncio.CancelledError:
        _kill(process)  # the stdout reader then hits end of output, the stream raises, and the upload aborts
        upload.cancel()
        with contextlib.suppress(BaseException):
            await upload
        raise
    except _ExportFailed as failure:
        raise TaskError(
            f"{' '.join(command)} {failure.detail}; nothing was written to s3://{bucket.name}/{key}",
            reason=EXPORT_FAILED,
        ) from None
    except BaseException:
        _kill(process)
        raise
    finally:
        if process.poll() is None:  # only after an unexpected error: every other path has reaped seid already
            _kill(process)
            process.wait()
    return {"s3Key": key, "bucket": bucket.name, "bytes": result.size, "parts": result.parts, "height": params.height}


HANDLERS = [export_state]

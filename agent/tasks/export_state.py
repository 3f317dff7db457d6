"""`export-state`: `<seid> export --home <home> [--chain-id C] [--height N]`, verified and streamed into S3.

- The binary is agent configuration only: `SEI_BINARY` (`AgentSettings.seid_binary`, default `seid`, looked up on
  PATH). No task param may name a program to execute (a manifest's `seidBinary` is ParamsInvalid): otherwise anyone
  allowed to create a NodeTask could run a file of their choice, such as a script restored from a snapshot, inside
  the agent's container. An absent binary fails `BinaryNotFound` before anything starts.
- `--chain-id <chainId>` is passed when the binary's `export --help` lists that flag: Sei's seid ignores
  client.toml and panics `must pass --chain-id` without it, while a stock Cosmos SDK 0.45 `export` has no such flag
  and refuses unknown ones. The probe is one short subprocess with a deadline.
- stdout is read in a worker thread and handed chunk by chunk to the S3 layer's streaming upload (a few parts in
  memory at most). Log lines the binary prints *before* the JSON (seid prints about 17 on stdout) are dropped: the
  export starts at the first line that opens a JSON value and is not itself a one-line JSON log record. At most
  `MAX_PRELUDE_BYTES` of such lines are skipped.
- The export is verified while it streams, with an incremental JSON parser (nothing is held in memory): it must be
  one JSON object whose `app_state` is an object (and whose `validators`, when present, is a list), followed by
  nothing but whitespace. Anything else fails `ExportInvalid` with the reason, and nothing is written to S3.
- stderr is drained concurrently (so a chatty seid never blocks on a full pipe). Whatever the binary prints is
  someone else's text: it reaches the error message only through `scrub_output` (bounded, key material masked).
- The upload only completes if seid exits 0 and the stream verified: the chunk stream raises at end of output
  otherwise, which makes the S3 layer abort the multipart upload (or skip the single PUT). A failed or cancelled
  export therefore never leaves a truncated or invalid object at the key (an earlier good export there stays).
- Cancellation (task cancel, timeout, agent shutdown) kills seid's whole process group, then waits for the upload
  to abort before the handler returns.

There is no done-marker (a node-wide marker would make every later export, at any height, a silent no-op): the
task ID already makes a completed export run once, and a resumed run simply exports again to the same key.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

import ijson
from pydantic import Field, field_validator

from agent.chain.cosmos import artifacts
from agent.io.s3 import READ_CHUNK
from agent.models import TaskError, TaskType
from agent.models.params.s3 import GenesisBucketParams
from agent.models.redaction import scrub_output

from .base import TaskContext, handler
from .ceremony import genesis_bucket
from .prechecks import genesis_bucket_known

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


class ExportStateParams(GenesisBucketParams):
    """`export-state`: `seid export` streamed to `s3://<bucket>/<key>` (`s3Key` is the deprecated spelling of `key`)."""

    deprecated_names: ClassVar[dict[str, str]] = {**GenesisBucketParams.deprecated_names, "s3Key": "key"}

    key: str = Field(default="", description="Default: <chainId>/exported-state.json.")
    height: int = Field(default=0, ge=0, description="Height to export; 0 means the latest.")
    seid_binary: Any = Field(
        default=None,
        exclude=True,
        description="Refused: the node binary is agent configuration (SEI_BINARY), never task input.",
    )

    @field_validator("seid_binary")
    @classmethod
    def _no_binary_from_params(cls, value: Any) -> None:
        # A task param naming a program to execute let anyone who can create a NodeTask run a file of their choice
        # (for example a script restored from a snapshot) inside the agent's container.
        if value is not None:
            raise ValueError(
                "no longer accepted: the binary export-state runs is agent configuration now "
                "(SEI_BINARY / AgentSettings.seid_binary), never a task param; remove seidBinary from the manifest"
            )
        return None

    @field_validator("key")
    @classmethod
    def _key_is_relative(cls, value: str) -> str:
        if value and (value.startswith("/") or value.endswith("/") or "//" in value):
            raise ValueError(f"{value!r} is not an object key (no leading or trailing '/', no empty segment)")
        return value


BINARY_NOT_FOUND = "BinaryNotFound"
EXPORT_FAILED = "ExportFailed"
EXPORT_INVALID = "ExportInvalid"
STDERR_TAIL_BYTES = 4096
"""Bytes of stderr kept (the tail); after scrubbing at most `STDERR_REPORT_CHARS` reach the error message."""
STDERR_REPORT_CHARS = 2048
MAX_PRELUDE_BYTES = 1024 * 1024
"""Log output tolerated on stdout before the JSON starts."""
MAX_LOG_LINE_BYTES = 64 * 1024
"""A line opening with `{` shorter than this that parses as a JSON object with none of a genesis document's keys
is a log record (JSON-formatted logs), not the export."""
HELP_PROBE_SECONDS = 30.0


class _ExportFailed(Exception):
    """Raised from the chunk stream at end of output when seid did not succeed; aborts the upload."""

    def __init__(self, detail: str, reason: str = EXPORT_FAILED):
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


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
        """The tail of stderr, scrubbed: bounded, and with anything key-shaped masked."""
        self._thread.join(timeout=5)
        return scrub_output(b"".join(self._chunks)[-STDERR_TAIL_BYTES:], STDERR_REPORT_CHARS) or "(empty)"


def export_command(binary: str, home: Path, height: int, chain_id: str = "") -> list[str]:
    """`<binary> export --home <home>`, `--chain-id <id>` when given, `--height N` only for a positive height (0
    means the latest)."""
    command = [binary, "export", "--home", str(home)]
    if chain_id:
        command += ["--chain-id", chain_id]
    if height > 0:
        command += ["--height", str(height)]
    return command


def export_takes_chain_id(binary: str, home: Path) -> bool:
    """Whether `<binary> export --help` lists a `--chain-id` flag (seid does; a stock SDK 0.45 `export` does not).

    Blocking (run it in a thread). A binary that cannot show its help within `HELP_PROBE_SECONDS` is asked without
    the flag: the export itself then reports what is wrong."""
    try:
        probe = subprocess.run(
            [binary, "export", "--help", "--home", str(home)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=HELP_PROBE_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"--chain-id" in probe.stdout + probe.stderr


class ExportVerifier:
    """Checks, chunk by chunk and in constant memory, that a byte stream is one genesis-shaped JSON object.

    `feed` accepts the raw stdout of the binary and returns the bytes that belong to the export (log lines before
    it are dropped); `finish` raises `_ExportFailed(reason=ExportInvalid)` unless a complete object with an
    `app_state` object was seen. Errors name what was wrong, never the content."""

    def __init__(self) -> None:
        self._prelude = bytearray()
        self._prelude_dropped = 0
        self._prelude_lines = 0
        self._started = False
        self._events: list[tuple[str, Any]] = ijson.sendable_list()
        self._parser = ijson.basic_parse_coro(self._events, multiple_values=False)
        self._depth = 0
        self._top_key: str | None = None
        self._top_keys: dict[str, str] = {}
        self._closed_top = False
        self.bytes = 0

    def feed(self, chunk: bytes) -> bytes:
        if self._started:
            self._parse(chunk)
            return chunk
        self._prelude += chunk
        start = self._find_start()
        if start is None:
            if self._prelude_dropped + len(self._prelude) > MAX_PRELUDE_BYTES:
                raise _ExportFailed(
                    f"wrote {self._prelude_dropped + len(self._prelude)} bytes of non-JSON output "
                    f"({self._prelude_lines} log lines) without starting a JSON export",
                    EXPORT_INVALID,
                )
            return b""
        data = bytes(self._prelude[start:])
        self._prelude.clear()
        self._started = True
        self._parse(data)
        return data

    def _find_start(self) -> int | None:
        """Offset of the export in the prelude buffer, dropping complete log lines before it; None: need more."""
        while True:
            stripped = self._prelude.lstrip()
            if not stripped:
                return None
            if bytes(stripped[:1]) in (b"{", b"["):
                start = len(self._prelude) - len(stripped)
                end = self._prelude.find(b"\n", start)
                if end < 0:
                    return start if len(self._prelude) - start > MAX_LOG_LINE_BYTES else None
                if end - start > MAX_LOG_LINE_BYTES or not _is_log_record(bytes(self._prelude[start:end])):
                    return start
            else:
                end = self._prelude.find(b"\n")
                if end < 0:
                    return None
            self._prelude_dropped += end + 1
            self._prelude_lines += 1
            del self._prelude[: end + 1]

    def _parse(self, data: bytes) -> None:
        self.bytes += len(data)
        try:
            self._parser.send(data)
        except ijson.JSONError as error:
            raise _ExportFailed(_parse_problem(error, self.bytes), EXPORT_INVALID) from None
        self._check_events()

    def _check_events(self) -> None:
        for event, value in self._events:
            if self._closed_top:
                break
            if self._depth == 0 and event != "start_map":
                raise _ExportFailed(f"the export is a JSON {_kind(event)}, not an object", EXPORT_INVALID)
            if self._depth == 1 and event == "map_key":
                self._top_key = str(value)
                continue
            if self._depth == 1 and self._top_key is not None:
                self._top_keys[self._top_key] = _kind(event)
                self._top_key = None
            if event in ("start_map", "start_array"):
                self._depth += 1
            elif event in ("end_map", "end_array"):
                self._depth -= 1
                if self._depth == 0:
                    self._closed_top = True
        self._events.clear()

    def finish(self) -> None:
        if not self._started and bytes(self._prelude.lstrip()[:1]) in (b"{", b"["):
            self._started = True  # a last line without a newline: the export, or the parser says what is wrong
            data, self._prelude = bytes(self._prelude), bytearray()
            self._parse(data)
        if not self._started:
            detail = f" ({self._prelude_lines} log lines only)" if self._prelude_lines else ""
            raise _ExportFailed(f"exited 0 but wrote no JSON export to stdout{detail}", EXPORT_FAILED)
        try:
            self._parser.close()
        except ijson.JSONError as error:
            raise _ExportFailed(_parse_problem(error, self.bytes), EXPORT_INVALID) from None
        except ijson.IncompleteJSONError as error:  # pragma: no cover - a subclass of JSONError in every backend
            raise _ExportFailed(_parse_problem(error, self.bytes), EXPORT_INVALID) from None
        self._check_events()
        if not self._closed_top:
            raise _ExportFailed(f"the export ends after {self.bytes} bytes inside the JSON object", EXPORT_INVALID)
        if self._top_keys.get("app_state") != "object":
            found = ", ".join(sorted(self._top_keys)[:8]) or "none"
            raise _ExportFailed(
                f"the export is a JSON object without an app_state object (top-level keys: {found})", EXPORT_INVALID
            )
        if self._top_keys.get("validators", "array") not in ("array", "null"):
            raise _ExportFailed("the export's validators is not a list", EXPORT_INVALID)


def _kind(event: str) -> str:
    return {
        "start_map": "object",
        "start_array": "array",
        "string": "string",
        "number": "number",
        "integer": "number",
        "double": "number",
        "boolean": "boolean",
        "null": "null",
    }.get(event, event)


_GENESIS_KEYS = frozenset(
    {"app_state", "app_hash", "chain_id", "consensus_params", "genesis_time", "initial_height", "validators"}
)


def _is_log_record(line: bytes) -> bool:
    """A complete one-line JSON object that is not an export (zerolog/tendermint JSON logs: `{"level":...}`)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and not _GENESIS_KEYS.intersection(record)


def _parse_problem(error: Exception, offset: int) -> str:
    # The parser's message quotes the text around the error: that is export content (possibly key material), so only
    # the kind of problem and the position are reported.
    kind = "truncated or followed by other output" if isinstance(error, ijson.IncompleteJSONError) else "malformed"
    return f"the export is not one valid JSON object: {kind} (parsing stopped within its first {offset} bytes)"


def _stdout_chunks(process: subprocess.Popen[bytes], stderr: _StderrTail, verifier: ExportVerifier) -> Iterator[bytes]:
    assert process.stdout is not None
    failure: _ExportFailed | None = None
    with process.stdout:
        while chunk := process.stdout.read(READ_CHUNK):
            try:
                data = verifier.feed(chunk)
            except _ExportFailed as problem:
                failure = problem
                _kill(process)  # the output is already known to be unusable: stop producing it
                break
            if data:
                yield data
    status = process.wait()
    if failure is None and status != 0:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise _ExportFailed(f"{how}; stderr: {stderr.text()}")
    if failure is None:
        try:
            verifier.finish()
        except _ExportFailed as problem:
            failure = problem
    if failure is not None:
        raise _ExportFailed(f"{failure.detail}; stderr: {stderr.text()}", failure.reason)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # seid runs in its own session: its group is its pid
    with contextlib.suppress(ProcessLookupError):
        process.kill()


@handler(TaskType.EXPORT_STATE, ExportStateParams, precheck=genesis_bucket_known)
async def export_state(params: ExportStateParams, ctx: TaskContext) -> dict[str, Any]:
    """Run `seid export`, verify its JSON and stream it to S3 (default key `<chainId>/exported-state.json`)."""
    bucket = genesis_bucket(params, ctx)
    key = params.key or artifacts.export_key(bucket.chain_id)
    binary = ctx.settings.seid_binary
    resolved = shutil.which(binary)
    if resolved is None:
        raise TaskError(
            f"node binary {binary!r} (SEI_BINARY) not found (not an executable path, and not on PATH)",
            reason=BINARY_NOT_FOUND,
            hint="set SEI_BINARY on the agent, or run export-state in a pod whose image has seid",
        )
    takes_chain_id = await asyncio.to_thread(export_takes_chain_id, resolved, ctx.home)
    command = export_command(resolved, ctx.home, params.height, bucket.chain_id if takes_chain_id else "")
    process = subprocess.Popen(  # noqa: ASYNC220 - starting is instant; all reading happens in worker threads
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stderr is not None
    stderr = _StderrTail(process.stderr)
    verifier = ExportVerifier()
    ctx.log.info("running %s, streaming to s3://%s/%s", " ".join(command), bucket.name, key)
    upload = asyncio.ensure_future(
        bucket.s3.upload_stream(
            bucket.name,
            key,
            _stdout_chunks(process, stderr, verifier),
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
            reason=failure.reason,
            hint="check that SEI_BINARY is the chain's node binary and that the node is stopped"
            if failure.reason == EXPORT_INVALID
            else "",
        ) from None
    except BaseException:
        _kill(process)
        raise
    finally:
        if process.poll() is None:  # only after an unexpected error: every other path has reaped seid already
            _kill(process)
            process.wait()
    return {
        "s3Key": key,
        "bucket": bucket.name,
        "bytes": result.size,
        "parts": result.parts,
        "height": params.height,
        "chainIdFlag": takes_chain_id,
    }


HANDLERS = [export_state]

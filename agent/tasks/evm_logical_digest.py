"""`evm-logical-digest`: prove that a flatKV clone and a memIAVL snapshot hold the same logical EVM state at a height.

- The program is agent configuration only: `SEI_SEIDB_BINARY` (`AgentSettings.seidb_binary`, default `seidb`,
  looked up on PATH); a `seidbPath` param is refused (ParamsInvalid), as `seidBinary` is for
  export-state. An absent program fails `BinaryNotFound` before anything runs.
- `seidb evm-logical-digest --backend flatkv -d <flatkvDir> --height H` runs once, then `--backend memiavl -d
  <memiavlDir> --height H --memiavl-normalization <n>` once per normalization (`--memiavl-open-mode` only when the
  param is set). Relative directories are taken from the node's home.
- stdout is parsed strictly, line by line (memory does not grow with the output): the `version:` lines (they must
  agree), one `bucket_digest=<hex>` on each of the `account`, `code`, `storage` and fourth-bucket lines, and
  `FINAL_DIGEST ... digest=<hex>`. The fourth bucket is `legacy` in seictl's seidb and `misc` in the seidb built
  from current sei-chain sources (tests/fixtures/seidb/); either is accepted and reported as `legacy`, both at once
  is an error. A malformed line of a kind looked for, or a missing one, fails `DigestOutputInvalid` naming it.
- Both opened versions must equal the height (`... opened version X != requested height H`, `VersionMismatch`).
- A non-zero exit fails `SeidbFailed` with the reason: seidb's `Error:` line when it printed one (cobra follows it
  with the usage text), else the tail of stderr, scrubbed and bounded (`scrub_output`). stderr is drained
  concurrently and only its tail and first `Error:` line are kept.
- One gzip, 2-space-indented JSON object per normalization at `<prefix>endpoint-digest-<H>-<normalization>.json.gz`
  in seictl's shape (`height`, `normalization`, `flatkv_digest`, `memiavl_digest`, `per_bucket`, `match`,
  `axes_proved`, `generated_at`). A digest mismatch still completes the task: the verdict is the object (and the
  task's result).
- Cancellation kills seidb's process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from agent.io.s3 import S3Client, s3_url
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.params.s3 import KeyPrefix, S3Params
from agent.models.redaction import scrub_output

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---

DigestNormalization = Literal["semantic", "translator"]
DEFAULT_NORMALIZATIONS: tuple[DigestNormalization, ...] = ("semantic", "translator")


class EvmLogicalDigestParams(S3Params):
    """`evm-logical-digest`: `seidb evm-logical-digest` on a flatKV clone and a memIAVL snapshot at one height, one
    gzip JSON verdict per normalization at `s3://<bucket>/<prefix>endpoint-digest-<height>-<normalization>.json.gz`.

    The directories are resolved against the node's home when relative. The program run is agent configuration
    (`SEI_SEIDB_BINARY`); the original's `seidbPath` param is refused."""

    prefix: KeyPrefix = ""
    height: int = Field(gt=0, description="The block height both stores must be opened at.")
    flatkv_dir: str = Field(min_length=1, description="The flatKV data directory (`-d` of the flatkv run).")
    memiavl_dir: str = Field(min_length=1, description="The memIAVL root directory (holds current/, snapshot-*).")
    normalizations: list[DigestNormalization] = Field(
        default_factory=lambda: list(DEFAULT_NORMALIZATIONS),
        max_length=2,
        description="memIAVL normalizations to compare, one object each (empty means both).",
    )
    memiavl_open_mode: Literal["snapshot", "replay"] | None = Field(
        default=None,
        description="seidb's --memiavl-open-mode; unset leaves seidb's default (snapshot: needs snapshot-<height>).",
    )
    seidb_path: Any = Field(
        default=None,
        exclude=True,
        description="Refused: the seidb program is agent configuration (SEI_SEIDB_BINARY), never task input.",
    )

    @field_validator("seidb_path")
    @classmethod
    def _no_program_from_params(cls, value: Any) -> None:
        # A param naming a program to execute would let anyone who can create a NodeTask run a file of their choice
        # inside the agent's container.
        if value is not None:
            raise ValueError(
                "not accepted: the seidb program is agent configuration (SEI_SEIDB_BINARY / "
                "AgentSettings.seidb_binary), never a task param; remove seidbPath from the manifest"
            )
        return None

    @field_validator("flatkv_dir", "memiavl_dir")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if any(ord(character) < 32 for character in value) or value.startswith("-"):
            raise ValueError(f"{value!r} is not a directory path (control characters or a leading '-')")
        return value

    @field_validator("normalizations")
    @classmethod
    def _distinct(cls, value: list[DigestNormalization]) -> list[DigestNormalization]:
        unique = list(dict.fromkeys(value))
        return unique or list(DEFAULT_NORMALIZATIONS)


BINARY_NOT_FOUND = "BinaryNotFound"
SEIDB_FAILED = "SeidbFailed"
OUTPUT_INVALID = "DigestOutputInvalid"
VERSION_MISMATCH = "VersionMismatch"
BUCKETS = ("account", "code", "storage", "legacy")
FOURTH_BUCKET_NAMES = ("legacy", "misc")
AXES_PROVED = ["nonce", "code", "code_hash", "storage", "legacy"]
"""What a matching digest proves (never balance: it lives in the bank module, outside these stores)."""
MAX_LINE_BYTES = 1024 * 1024
STDERR_TAIL_BYTES = 4096
STDERR_REPORT_CHARS = 2048
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class OutputInvalid(Exception):
    """seidb's stdout lacks, or garbles, something the digest needs."""


@dataclass
class Digests:
    """What one seidb run reported."""

    version: int | None = None
    buckets: dict[str, str] = field(default_factory=dict)
    final: str | None = None
    fourth_name: str | None = None

    def feed(self, line: str) -> None:
        """Take one stdout line; raise OutputInvalid for a malformed line of a kind the digest needs."""
        fields = line.split()
        if not fields:
            return
        head = fields[0]
        if head == "version:":
            if len(fields) != 2 or not fields[1].isdigit():
                raise OutputInvalid(f"malformed version line {_quote(line)}")
            version = int(fields[1])
            if self.version is not None and version != self.version:
                raise OutputInvalid(f"version lines disagree ({self.version}, then {version})")
            self.version = version
        elif head in ("account", "code", "storage", *FOURTH_BUCKET_NAMES):
            digest = _field(fields, "bucket_digest=")
            if digest is None:
                return  # a progress or summary line that mentions the bucket, not its digest
            name = head
            if head in FOURTH_BUCKET_NAMES:
                if self.fourth_name is not None and self.fourth_name != head:
                    raise OutputInvalid(f"both a {self.fourth_name} and a {head} bucket line")
                self.fourth_name, name = head, "legacy"
            if not _HEX.match(digest):
                raise OutputInvalid(f"malformed {head} bucket_digest in {_quote(line)}")
            if name in self.buckets:
                raise OutputInvalid(f"a second {head} bucket_digest line {_quote(line)}")
            self.buckets[name] = digest
        elif head == "FINAL_DIGEST":
            digest = _field(fields, "digest=")
            if digest is None or not _HEX.match(digest):
                raise OutputInvalid(f"malformed FINAL_DIGEST line {_quote(line)}")
            if self.final is not None:
                raise OutputInvalid(f"a second FINAL_DIGEST line {_quote(line)}")
            self.final = digest

    def check(self) -> None:
        """Raise OutputInvalid naming every line that never came."""
        missing = []
        if self.version is None:
            missing.append("'version:'")
        missing += [
            f"'{'legacy (or misc)' if name == 'legacy' else name} ... bucket_digest='"
            for name in BUCKETS
            if name not in self.buckets
        ]
        if self.final is None:
            missing.append("'FINAL_DIGEST ... digest='")
        if missing:
            raise OutputInvalid(f"no {', no '.join(missing)} line")


def _field(fields: list[str], prefix: str) -> str | None:
    return next((item[len(prefix) :] for item in fields if item.startswith(prefix)), None)


def _quote(line: str) -> str:
    return repr(scrub_output(line, 200, keep="head"))


def seidb_command(
    binary: str, backend: str, directory: Path, height: int, normalization: str = "", open_mode: str | None = None
) -> list[str]:
    """The argv of one digest run, as the original builds it (plus `--memiavl-open-mode` when asked for)."""
    command = [binary, "evm-logical-digest", "--backend", backend, "-d", str(directory), "--height", str(height)]
    if backend == "memiavl" and normalization:
        command += ["--memiavl-normalization", normalization]
    if backend == "memiavl" and open_mode:
        command += ["--memiavl-open-mode", open_mode]
    return command


class _Stderr:
    """Keeps the tail of a stream and its first `Error:` line."""

    def __init__(self) -> None:
        self.tail = b""
        self.error_line = b""
        self._pending = b""

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(4096):
            self.tail = (self.tail + chunk)[-STDERR_TAIL_BYTES:]
            if not self.error_line:
                self._pending = (self._pending + chunk)[-2 * STDERR_TAIL_BYTES :]
                for line in self._pending.split(b"\n")[:-1]:
                    if line.startswith(b"Error:"):
                        self.error_line = line[:1024]
                        break

    def reason(self) -> str:
        return scrub_output(self.error_line or self.tail, STDERR_REPORT_CHARS) or "(stderr empty)"


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


async def run_seidb(command: list[str]) -> Digests:
    """Run one digest and parse it; TaskError on a failed run or unusable output."""
    shown = " ".join(command)
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=MAX_LINE_BYTES,
    )
    assert process.stdout is not None and process.stderr is not None
    stderr = _Stderr()
    draining = asyncio.ensure_future(stderr.drain(process.stderr))
    digests = Digests()
    problem: str | None = None
    try:
        while True:
            try:
                raw = await process.stdout.readline()
            except ValueError:  # a line longer than the limit
                problem = f"a stdout line longer than {MAX_LINE_BYTES} bytes"
                break
            if not raw:
                break
            if problem is None:
                try:
                    digests.feed(raw.decode("utf-8", errors="replace"))
                except OutputInvalid as error:
                    problem = str(error)
        if problem is not None:
            _kill(process)
        status = await process.wait()
        await draining
    except BaseException:
        _kill(process)
        draining.cancel()
        with contextlib.suppress(BaseException):
            await process.wait()
        raise
    if status != 0 and problem is None:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise TaskError(f"{shown} {how}: {stderr.reason()}", reason=SEIDB_FAILED)
    try:
        if problem is not None:
            raise OutputInvalid(problem)
        digests.check()
    except OutputInvalid as error:
        raise TaskError(
            f"{shown}: unusable output: {error}",
            reason=OUTPUT_INVALID,
            hint="check that SEI_SEIDB_BINARY is a seidb with the evm-logical-digest command",
        ) from None
    return digests


def endpoint_record(height: int, normalization: str, flatkv: Digests, memiavl: Digests) -> dict[str, Any]:
    """The original's EndpointDigestRecord (field order as it encodes it; per_bucket keys sorted)."""
    per_bucket = {
        name: {
            "flatkv": flatkv.buckets[name],
            "memiavl": memiavl.buckets[name],
            "match": flatkv.buckets[name] == memiavl.buckets[name],
        }
        for name in sorted(BUCKETS)
    }
    return {
        "height": height,
        "normalization": normalization,
        "flatkv_digest": flatkv.final,
        "memiavl_digest": memiavl.final,
        "per_bucket": per_bucket,
        "match": flatkv.final == memiavl.final,
        "axes_proved": list(AXES_PROVED),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def digest_key(prefix: str, height: int, normalization: str) -> str:
    return f"{prefix}endpoint-digest-{height}-{normalization}.json.gz"


def _directory(home: Path, value: str, name: str) -> Path:
    path = Path(value) if Path(value).is_absolute() else home / value
    if not path.is_dir():
        raise ParamsInvalid(f"params.{name}: {str(path)!r} is not a directory")
    return path


def _check_version(backend: str, digests: Digests, height: int, normalization: str = "") -> None:
    if digests.version != height:
        which = f" ({normalization})" if normalization else ""
        raise TaskError(
            f"evm-logical-digest: {backend} opened version {digests.version} != requested height {height}{which}",
            reason=VERSION_MISMATCH,
            hint="both stores must hold the requested height (a memIAVL snapshot-<height>, or memiavlOpenMode replay)",
        )


@handler(TaskType.EVM_LOGICAL_DIGEST, EvmLogicalDigestParams)
async def evm_logical_digest(params: EvmLogicalDigestParams, ctx: TaskContext) -> dict[str, Any]:
    """Digest both stores with seidb and publish one verdict object per normalization."""
    if not params.bucket:
        raise ParamsInvalid("params.bucket: required (evm-logical-digest has no default bucket)")
    flatkv_dir = _directory(ctx.home, params.flatkv_dir, "flatkvDir")
    memiavl_dir = _directory(ctx.home, params.memiavl_dir, "memiavlDir")
    binary = ctx.settings.seidb_binary
    resolved = shutil.which(binary)
    if resolved is None:
        raise TaskError(
            f"seidb program {binary!r} (SEI_SEIDB_BINARY) not found (not an executable path, and not on PATH)",
            reason=BINARY_NOT_FOUND,
            hint="set SEI_SEIDB_BINARY on the agent, or run evm-logical-digest in a pod whose image has seidb",
        )
    s3 = S3Client.from_settings(ctx.settings, region=params.region)
    total = 1 + len(params.normalizations)
    ctx.progress(0, total, "digests", "flatkv")
    flatkv = await run_seidb(seidb_command(resolved, "flatkv", flatkv_dir, params.height))
    _check_version("flatkv", flatkv, params.height)
    verdicts: dict[str, Any] = {}
    for done, normalization in enumerate(params.normalizations, start=2):
        command = seidb_command(
            resolved, "memiavl", memiavl_dir, params.height, normalization, params.memiavl_open_mode
        )
        memiavl = await run_seidb(command)
        _check_version("memiavl", memiavl, params.height, normalization)
        record = endpoint_record(params.height, normalization, flatkv, memiavl)
        key = digest_key(params.prefix, params.height, normalization)
        body = gzip.compress((json.dumps(record, indent=2) + "\n").encode(), mtime=0)
        await s3.put_bytes(params.bucket, key, body, content_type="application/gzip")
        ctx.log.info(
            "published %s digest verdict match=%s (flatkv %s, memiavl %s) to %s",
            normalization,
            record["match"],
            record["flatkv_digest"],
            record["memiavl_digest"],
            s3_url(params.bucket, key),
        )
        verdicts[normalization] = {"match": record["match"], "key": key}
        ctx.progress(done, total, "digests", normalization)
    return {
        "height": params.height,
        "bucket": params.bucket,
        "match": all(verdict["match"] for verdict in verdicts.values()),
        "normalizations": verdicts,
    }


HANDLERS = [evm_logical_digest]

"""Finding and stopping a process by name through `/proc` (Linux only).

In the pod, seid runs in another container; with `shareProcessNamespace: true` the agent sees it in `/proc` and may
signal it. How the scan stays safe:

- PIDs are scanned in numeric order (PID 9 before PID 10); the agent's own PID and zombies are skipped.
- A process is identified by PID *and* start time (`/proc/<pid>/stat` field 22), so a PID reused by another process
  while we wait is never signalled by mistake.
- After SIGKILL the helper waits (briefly) for the process to be gone, so a caller never reports a stop too early,
  and a zombie counts as gone (it no longer runs; reaping it is its parent's job).
- A signal goes through a pidfd opened *before* the last identity check, so the process checked is the process
  signalled even if the PID is reused in between. With `identity`, that check also requires the process to be
  `<name> <subcommand>` (argv and the kernel's `comm`), whatever the caller was told by a record on disk.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from agent.models import TaskError

PROC = Path("/proc")
KILL_WAIT_SECONDS = 5.0
"""How long to wait for the kernel to remove a SIGKILLed process before calling it a failure."""
COMM_LENGTH = 15
"""The kernel keeps the first 15 bytes of the executed file's name as a process's `comm`."""
NOT_THE_NODE = "NotTheNode"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    start_time: int
    """Clock ticks after boot (`/proc/<pid>/stat` field 22): with the PID, identifies one incarnation."""
    argv: tuple[str, ...]
    comm: str = ""
    """`/proc/<pid>/comm`: the name of the file the process executed (first 15 bytes)."""


@dataclass(frozen=True)
class StopOutcome:
    pid: int
    signal: str
    """The last signal sent: `SIGTERM` or `SIGKILL`; empty when the process was already gone."""
    exited: bool


def _stat(pid: int, proc: Path) -> tuple[str, int] | None:
    """(state, start time) of `pid`, or None when it does not exist."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: fields after it start after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _argv(pid: int, proc: Path) -> tuple[str, ...]:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)


def _comm(pid: int, proc: Path) -> str:
    try:
        return (proc / str(pid) / "comm").read_text().rstrip("\n")
    except OSError:
        return ""


def _named(argv: tuple[str, ...], name: str) -> bool:
    return bool(argv) and (argv[0] == name or argv[0].endswith("/" + name))


def _is_command(argv: tuple[str, ...], comm: str, name: str, subcommand: str | None) -> bool:
    """argv[0] is `name` (or ends with `/name`); with `subcommand`, argv[1] is exactly that and the kernel's `comm`
    is `name` too (argv can be anything a process writes; `comm` is the file it executed)."""
    if not _named(argv, name):
        return False
    if subcommand is None:
        return True
    return len(argv) >= 2 and argv[1] == subcommand and comm == name[:COMM_LENGTH]


def find_process(name: str, *, subcommand: str | None = None, proc: Path = PROC) -> ProcessInfo | None:
    """The lowest-PID live process whose argv[0] is `name` or ends with `/name`, or None.

    With `subcommand`, argv[1] must also be exactly that (`seid start`, not `seid version` or an init helper; the
    node container's bash loop that waits at the readiness gate has argv[0] `bash` and never matches), and the
    process's `comm` must be `name` (a process that merely writes `seid start` into its argv does not match).
    """
    own = os.getpid()
    pids = sorted(int(entry.name) for entry in proc.iterdir() if entry.name.isdigit())
    for pid in pids:
        if pid == own:
            continue
        argv = _argv(pid, proc)
        comm = _comm(pid, proc) if subcommand is not None else ""
        if not _is_command(argv, comm, name, subcommand):
            continue
        stat = _stat(pid, proc)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        return ProcessInfo(pid, stat[1], argv, comm)
    return None


def identity_mismatch(process: ProcessInfo, name: str, subcommand: str, *, proc: Path = PROC) -> str | None:
    """Why the live process at `process.pid` is not `<name> <subcommand>` as recorded; None when it is (or when that
    incarnation is gone: there is nothing left to mistake for it).

    Checked: the start time (same incarnation), argv[0] and argv[1], the kernel's `comm`, and that the current argv
    begins with the recorded one. A record on disk can name any PID; this is what keeps an unrelated process from
    ever being signalled because of it.
    """
    if not is_running(process, proc=proc):
        return None
    argv, comm = _argv(process.pid, proc), _comm(process.pid, proc)
    if not _is_command(argv, comm, name, subcommand):
        shown = " ".join(argv[:2]) or "?"
        return f"pid {process.pid} runs {shown!r} (comm {comm!r}), not '{name} {subcommand}'"
    if argv[: len(process.argv)] != process.argv:
        return f"pid {process.pid} runs {' '.join(argv[:2])!r}, not the recorded {' '.join(process.argv[:2])!r}"
    return None


def is_running(process: ProcessInfo, *, proc: Path = PROC) -> bool:
    """True while that incarnation of the process exists and is not a zombie."""
    stat = _stat(process.pid, proc)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == process.start_time


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError:
        return None  # a kernel without pidfds (< 5.3): plain kill() after the same checks


def _signal(
    process: ProcessInfo, number: signal.Signals, *, identity: tuple[str, str] | None = None, proc: Path = PROC
) -> bool:
    """Send `number`; False when that incarnation is already gone. Refused permission is a TaskError, and so is a
    process that is not `identity` (`(name, subcommand)`), which is never signalled (`NotTheNode`)."""
    try:
        pidfd = _open_pidfd(process.pid)
    except ProcessLookupError:
        return False
    try:
        if not is_running(process, proc=proc):  # after opening the pidfd: it refers to the process checked here
            return False
        if identity is not None:
            mismatch = identity_mismatch(process, *identity, proc=proc)
            if mismatch is not None:
                raise TaskError(
                    f"refusing to send {number.name}: {mismatch}",
                    reason=NOT_THE_NODE,
                    hint="SEI_BINARY must name the node's binary; a restart record naming another process is ignored",
                )
        if pidfd is None:
            os.kill(process.pid, number)
        else:
            signal.pidfd_send_signal(pidfd, number)
    except ProcessLookupError:
        return False
    except PermissionError:
        raise TaskError(
            f"not allowed to send {number.name} to {process.argv[0]} (pid {process.pid})",
            hint="the agent container needs the same user as seid, or CAP_KILL",
        ) from None
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return True


async def _gone_within(process: ProcessInfo, seconds: float, poll: float, proc: Path) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while is_running(process, proc=proc):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


async def terminate_gracefully(
    process: ProcessInfo,
    *,
    grace_seconds: float,
    poll_seconds: float = 0.1,
    proc: Path = PROC,
    identity: tuple[str, str] | None = None,
) -> StopOutcome:
    """SIGTERM and wait up to `grace_seconds` for the process to exit; never SIGKILL.

    With `identity` (`(name, subcommand)`), the process must still be `<name> <subcommand>` when the signal goes out
    (see `identity_mismatch`); otherwise nothing is sent and the call fails (`NotTheNode`).

    A validator killed mid-commit can corrupt its databases or, worse, lose the record of what it signed; a process
    that does not exit in time is left running and the call fails (`StopTimedOut`, retryable: running again waits
    again). A process already gone, or gone between lookup and signal, is a success (`signal` empty).
    """
    if not _signal(process, signal.SIGTERM, identity=identity, proc=proc):
        return StopOutcome(process.pid, "", exited=True)
    if await _gone_within(process, grace_seconds, poll_seconds, proc):
        return StopOutcome(process.pid, "SIGTERM", exited=True)
    raise TaskError(
        f"{process.argv[0]} (pid {process.pid}) is still running {grace_seconds:g}s after SIGTERM; it was left "
        "running (never force-killed: a validator killed mid-commit can corrupt its data)",
        reason="StopTimedOut",
        hint="check the node's log for what it is doing; raise params.graceSeconds, or run the task again to keep "
        "waiting",
        retryable=True,
    )


async def stop_process(
    process: ProcessInfo, *, grace_seconds: float, poll_seconds: float = 0.1, proc: Path = PROC
) -> StopOutcome:
    """SIGTERM, then SIGKILL if the process is still there after `grace_seconds`; returns once it is gone.

    A process already gone is a success. One that survives SIGKILL for `KILL_WAIT_SECONDS` (stuck in the kernel) is
    a retryable TaskError. Cancellation stops the waiting, never un-sends a signal.
    """
    if not _signal(process, signal.SIGTERM, proc=proc):
        return StopOutcome(process.pid, "", exited=True)
    if await _gone_within(process, grace_seconds, poll_seconds, proc):
        return StopOutcome(process.pid, "SIGTERM", exited=True)
    if not _signal(process, signal.SIGKILL, proc=proc):
        return StopOutcome(process.pid, "SIGTERM", exited=True)
    if await _gone_within(process, KILL_WAIT_SECONDS, poll_seconds, proc):
        return StopOutcome(process.pid, "SIGKILL", exited=True)
    raise TaskError(
        f"{process.argv[0]} (pid {process.pid}) is still there {KILL_WAIT_SECONDS:g}s after SIGKILL",
        hint="the process is stuck in the kernel (uninterruptible I/O); check the node's disk",
        retryable=True,
    )

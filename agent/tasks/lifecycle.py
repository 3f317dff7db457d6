"""Node lifecycle: `stop-seid`, `restart-seid` and `reset-data`.

The agent never starts the node. The node container's entrypoint waits at the readiness gate (`/healthz`) and then
execs `seid start`; when seid exits, the kubelet restarts the container and it waits at the gate again. So:

- a **hold** is `mark-not-ready` (gate closed), then `stop-seid`: the restarted container parks at the gate until a
  `mark-ready` opens it;
- a **restart** is `restart-seid` with the gate open: the container comes straight back.

The node process is found through `/proc` (the pod needs `shareProcessNamespace: true`, and both containers the same
UID so that no capability is needed to signal): the lowest-PID live process whose argv[0] is the configured binary
(`SEI_BINARY`, default `seid`; a path counts by its last component) and whose argv[1] is `start`. The gate's bash
loop never matches.

stop-seid: SIGTERM, then wait up to `graceSeconds` (90 s) for the exit; never SIGKILL (a validator killed mid-commit
can corrupt its data): a node still running after the grace period fails the task (`StopTimedOut`, retryable) and
is left running. No process visible: if the node's RPC answers anyway, the agent cannot see the node it is asked to
stop (no shared PID namespace, another binary name) and the task fails (`NodeNotVisible`): it never reports a stop
that did not happen. Otherwise the node is already stopped (or parked at the gate): success. A process that exits
between lookup and signal is a success too.

restart-seid: like stop-seid, then waits until the RPC answers again (`readyTimeoutSeconds`, 5 min). Before it
signals, it records which process incarnation (PID and start time) it is stopping in `.nodetask-restart-seid.json`,
bound to the task and run. A run resumed after an agent crash reads the record: if that incarnation is gone, the node
it finds is one that already came back, and it is not stopped again (the original stops it a second time); if it is
still running (the crash may have come before the signal), that same incarnation gets SIGTERM again, which is harmless
for a process already shutting down, and the run waits for it. The record is removed when the task ends.

reset-data: wipes `data/` of a held node, for a state-sync re-bootstrap. See `reset_data`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from agent.chain.process import ProcessInfo, find_process, is_running, terminate_gracefully
from agent.chain.rpc import RpcClient, RpcError
from agent.io.files import atomic_write, marker_path
from agent.models import TaskError, TaskType
from agent.models.params.lifecycle import ResetDataParams, RestartSeidParams, StopSeidParams

from .base import TaskContext, handler
from .statesync import MARKER as STATESYNC_MARKER

RPC_PROBE_SECONDS = 2.0
RESTART_STATE_FILE = ".nodetask-restart-seid.json"
TRASH_DIR = ".nodetask-reset-trash"
"""Inside `data/`, so moving entries into it is a rename on the same filesystem even when `data/` is a mount."""
PRIV_VALIDATOR_STATE = "priv_validator_state.json"
DATA_DIR_MODE = 0o750


def _binary_name(ctx: TaskContext) -> str:
    return Path(ctx.settings.seid_binary).name or "seid"


def _endpoint(params: StopSeidParams | ResetDataParams, ctx: TaskContext) -> str:
    return params.rpc_endpoint or ctx.settings.rpc_endpoint


async def _rpc_answers(endpoint: str) -> tuple[bool, str]:
    """(answers, what it said or why not)."""
    try:
        async with RpcClient(endpoint) as rpc:
            status = await rpc.status(seconds=RPC_PROBE_SECONDS)
    except RpcError as error:
        return False, error.cause
    return True, f"height {status.latest_height}"


def _not_visible(binary: str, endpoint: str, answer: str, doing: str) -> TaskError:
    return TaskError(
        f"no '{binary} start' process is visible in /proc, but the node's RPC {endpoint} answers ({answer}): "
        f"refusing to report a {doing} that did not happen",
        reason="NodeNotVisible",
        hint="the pod needs shareProcessNamespace: true and the same UID in both containers; SEI_BINARY must name "
        "the node's binary",
    )


async def _find(binary: str) -> ProcessInfo | None:
    return await asyncio.to_thread(find_process, binary, subcommand="start")


def _stopped_result(process: ProcessInfo, signal_sent: str, began: float) -> dict[str, Any]:
    return {
        "pid": process.pid,
        "signal": signal_sent,
        "alreadyStopped": not signal_sent,
        "waitedSeconds": round(time.monotonic() - began, 3),
    }


async def _stop(params: StopSeidParams, ctx: TaskContext, doing: str) -> dict[str, Any]:
    binary, endpoint = _binary_name(ctx), _endpoint(params, ctx)
    process = await _find(binary)
    if process is None:
        answers, answer = await _rpc_answers(endpoint)
        if answers:
            raise _not_visible(binary, endpoint, answer, doing)
        return {"pid": None, "signal": "", "alreadyStopped": True, "waitedSeconds": 0.0}
    return await _terminate(process, params, ctx)


async def _terminate(process: ProcessInfo, params: StopSeidParams, ctx: TaskContext) -> dict[str, Any]:
    began = time.monotonic()
    ctx.progress(message=f"SIGTERM to {process.argv[0]} (pid {process.pid}), waiting up to {params.grace_seconds:g}s")
    outcome = await terminate_gracefully(process, grace_seconds=params.grace_seconds)
    ctx.log.info("%s (pid %d) stopped (%s)", process.argv[0], process.pid, outcome.signal or "already gone")
    return _stopped_result(process, outcome.signal, began)


@handler(TaskType.STOP_SEID, StopSeidParams)
async def stop_seid(params: StopSeidParams, ctx: TaskContext) -> dict[str, Any]:
    """SIGTERM the node process and wait for it to exit (never SIGKILL); already stopped is success."""
    return await _stop(params, ctx, "stop")


# --- restart-seid ------------------------------------------------------------------------------------------------


def _read_restart_record(home: Path, ctx: TaskContext) -> dict[str, Any] | None:
    try:
        record = json.loads((home / RESTART_STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        ctx.log.warning("ignoring unreadable %s: %s", RESTART_STATE_FILE, error)
        return None
    if not isinstance(record, dict) or record.get("taskId") != ctx.task_id or record.get("run") != ctx.run:
        return None  # another task's or run's: this run starts afresh
    return record


async def _wait_until_answering(endpoint: str, within_seconds: float, ctx: TaskContext) -> tuple[str, int]:
    deadline = time.monotonic() + within_seconds
    attempts = 0
    while True:
        answers, answer = await _rpc_answers(endpoint)
        if answers:
            return answer, attempts
        attempts += 1
        ctx.explain_deadline(
            TaskError(
                f"the node was stopped but its RPC {endpoint} has not answered since ({attempts} tries, the last: "
                f"{answer})",
                reason="NodeNotBack",
                hint="is the readiness gate open (mark-ready)? check the node container's restarts and log",
                retryable=True,
            )
        )
        if time.monotonic() >= deadline:
            raise TaskError(
                f"the node was stopped but its RPC {endpoint} did not answer within {within_seconds:g}s "
                f"(last: {answer})",
                reason="NodeNotBack",
                hint="restart-seid needs the readiness gate open (mark-ready) so the node container comes back; "
                "check its restarts and log",
                retryable=True,
            )
        ctx.progress(message=f"waiting for the node's RPC to answer again: {answer}")
        await asyncio.sleep(1.0)


@handler(TaskType.RESTART_SEID, RestartSeidParams)
async def restart_seid(params: RestartSeidParams, ctx: TaskContext) -> dict[str, Any]:
    """Stop the node (SIGTERM, never SIGKILL) and wait until its RPC answers again."""
    home, binary, endpoint = ctx.home, _binary_name(ctx), _endpoint(params, ctx)
    record = await asyncio.to_thread(_read_restart_record, home, ctx)
    try:
        if record is not None:
            stopping = ProcessInfo(int(record["pid"]), int(record["startTime"]), tuple(record.get("argv", [binary])))
            if is_running(stopping):
                # Still there: the crash may have come before the signal. SIGTERM again: harmless for the same
                # incarnation (it is already shutting down), and never sent to a node that came back (a new one).
                stopped = await _terminate(stopping, params, ctx)
            else:
                ctx.log.info("resumed: pid %d was already stopped by this run; not stopping again", stopping.pid)
                stopped = {"pid": stopping.pid, "signal": "SIGTERM", "alreadyStopped": False, "resumed": True}
        else:
            process = await _find(binary)
            if process is None:
                answers, answer = await _rpc_answers(endpoint)
                if answers:
                    raise _not_visible(binary, endpoint, answer, "restart")
                stopped = {"pid": None, "signal": "", "alreadyStopped": True, "waitedSeconds": 0.0}
            else:
                record = {
                    "taskId": ctx.task_id,
                    "run": ctx.run,
                    "pid": process.pid,
                    "startTime": process.start_time,
                    "argv": list(process.argv[:2]),
                }
                await asyncio.to_thread(atomic_write, home / RESTART_STATE_FILE, json.dumps(record))
                stopped = await _terminate(process, params, ctx)
        answer, attempts = await _wait_until_answering(endpoint, params.ready_timeout_seconds, ctx)
        ctx.explain_deadline(None)
        back = await _find(binary)
    except TaskError:
        await asyncio.to_thread(_remove_restart_record, home)
        raise
    await asyncio.to_thread(_remove_restart_record, home)
    return {**stopped, "rpc": answer, "rpcTriesUntilBack": attempts, "newPid": back.pid if back else None}


def _remove_restart_record(home: Path) -> None:
    (home / RESTART_STATE_FILE).unlink(missing_ok=True)


# --- reset-data --------------------------------------------------------------------------------------------------


def _tree_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (symlinks are not followed; vanished entries count 0)."""
    total = 0
    for root, _, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                info = (Path(root) / name).lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def _signing_state(data: Path, trash: Path, keep: bool) -> dict[str, Any]:
    """The fresh priv_validator_state.json: zero, or with `keep` the last signed height/round/step found in `data/`
    (or, after a crash mid-wipe, in the trash), without the old signature."""
    fresh: dict[str, Any] = {"height": "0", "round": 0, "step": 0}
    if not keep:
        return fresh
    candidates = [data / PRIV_VALIDATOR_STATE, *sorted(trash.glob(f"*/{PRIV_VALIDATOR_STATE}"), reverse=True)]
    for candidate in candidates:
        try:
            old = json.loads(candidate.read_text())
            height, round_, step = int(old["height"]), int(old["round"]), int(old["step"])
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TaskError(
                f"{candidate} is unreadable ({error}); cannot carry the validator's last signed height forward",
                reason="SigningStateUnreadable",
                hint="fix the file, or set keepSigningState: false if this key has never signed on this chain",
            ) from None
        if height > int(fresh["height"]):
            fresh = {"height": str(height), "round": round_, "step": step}
    return fresh


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def _wipe(home: Path, store: Path, keep_signing_state: bool) -> dict[str, Any]:
    data = home / "data"
    if data.is_symlink():
        raise TaskError(f"{data} is a symlink; refusing to wipe through it", hint="point SEI_HOME at the real home")
    if _inside(store, data):
        raise TaskError(
            f"the agent's store {store} is inside {data}; wiping data/ would destroy the agent's own records",
            hint="move the store out of data/ (NODETASK_DB)",
        )
    trash = data / TRASH_DIR
    resumed = trash.exists()
    data.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    signing = _signing_state(data, trash, keep_signing_state)
    # 1. Move everything into one new trash entry: renames only, so a crash leaves every entry either in data/ or
    #    in the trash, never half-deleted in place; the next run moves what is left and deletes the whole trash.
    trash.mkdir(mode=0o700, exist_ok=True)
    attempt = trash / str(max((int(entry.name) for entry in trash.iterdir() if entry.name.isdigit()), default=0) + 1)
    attempt.mkdir(mode=0o700)
    moved = 0
    for entry in list(data.iterdir()):
        if entry.name == TRASH_DIR:
            continue
        entry.rename(attempt / entry.name)
        moved += 1
    # 2. The fresh signing state, before anything is deleted: from here on the node could start safely.
    atomic_write(data / PRIV_VALIDATOR_STATE, json.dumps(signing) + "\n", mode=0o600)
    # 3. state-sync must be configured again against the new, empty data.
    marker_path(home, STATESYNC_MARKER).unlink(missing_ok=True)
    # 4. Delete. Measured first: what was moved in this run and what a crashed run left behind.
    wiped = _tree_bytes(trash)
    shutil.rmtree(trash)
    return {"wipedBytes": wiped, "entriesMoved": moved, "resumed": resumed, "signingState": signing}


@handler(TaskType.RESET_DATA, ResetDataParams)
async def reset_data(params: ResetDataParams, ctx: TaskContext) -> dict[str, Any]:
    """Wipe data/ of a stopped node (config/, the store and other markers stay); a fresh priv_validator_state.json.

    Refused while the node runs: its process is visible in /proc, or its RPC answers. Resumable: entries are first
    renamed into `data/.nodetask-reset-trash/` (same filesystem even when data/ is a mount), then the fresh
    priv_validator_state.json is written and the state-sync marker removed, and only then is the trash deleted; a
    crash anywhere is finished by running the task again.
    """
    binary, endpoint = _binary_name(ctx), _endpoint(params, ctx)
    process = await _find(binary)
    if process is not None:
        raise TaskError(
            f"'{binary} start' is running (pid {process.pid}); refusing to wipe the data of a live node",
            reason="NodeRunning",
            hint="hold the node first: mark-not-ready, then stop-seid",
        )
    answers, answer = await _rpc_answers(endpoint)
    if answers:
        raise TaskError(
            f"the node's RPC {endpoint} answers ({answer}); refusing to wipe the data of a live node",
            reason="NodeRunning",
            hint="hold the node first: mark-not-ready, then stop-seid",
        )
    ctx.progress(message=f"wiping {ctx.home / 'data'}")
    result = await asyncio.to_thread(_wipe, ctx.home, ctx.settings.store_path, params.keep_signing_state)
    ctx.log.info("reset-data: wiped %d bytes (%d entries)", result["wipedBytes"], result["entriesMoved"])
    return result


HANDLERS = [stop_seid, restart_seid, reset_data]

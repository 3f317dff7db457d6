"""Node lifecycle: `stop-seid`, `restart-seid` and `reset-data`.

The agent never starts the node. The node container's entrypoint waits at the readiness gate (`/healthz`) and then
execs `seid start`; when seid exits, the kubelet restarts the container and it waits at the gate again. So:

- a **hold** is `mark-not-ready` (gate closed), then `stop-seid`: the restarted container parks at the gate until a
  `mark-ready` opens it;
- a **restart** is `restart-seid` with the gate open: the container comes straight back.

The node process is found through `/proc` (the pod needs `shareProcessNamespace: true`, and both containers the same
UID so that no capability is needed to signal): the lowest-PID live process whose argv[0] is the configured binary
(`SEI_BINARY`, default `seid`; a path counts by its last component), whose argv[1] is `start` and whose kernel `comm`
is that binary too. The gate's bash loop never matches. A process is signalled only after that identity and its
start time are checked again (through a pidfd, so the PID cannot be reused in between), whatever a record says.

Whether the node runs is judged from the agent's own view, never from a param: its process in `/proc`, its RPC
(`SEI_RPC_ENDPOINT`, and the `[rpc] laddr` of the node's own config.toml) answering, its P2P port (`[p2p] laddr`)
accepting connections. A node without RPC (a seed: `mode = "seed"`, or an empty `[rpc] laddr`) is "back" after a
restart when a new `<binary> start` process runs and its P2P port accepts connections. `params.rpcEndpoint` is
deprecated: accepted only when it names `SEI_RPC_ENDPOINT` itself (and then changes nothing), refused otherwise.

stop-seid: SIGTERM, then wait up to `graceSeconds` (90 s) for the exit; never SIGKILL (a validator killed mid-commit
can corrupt its data): a node still running after the grace period fails the task (`StopTimedOut`, retryable) and
is left running. No process visible: if the node's RPC answers or its P2P port accepts connections anyway, the agent
cannot see the node it is asked to stop (no shared PID namespace, another binary name) and the task fails
(`NodeNotVisible`): it never reports a stop that did not happen. Otherwise the node is already stopped (or parked at
the gate): success. A process that exits between lookup and signal is a success too.

restart-seid: like stop-seid, then waits until the node is back (`readyTimeoutSeconds`, 5 min): its RPC answers, or
for a node without RPC, a new process runs with its P2P port accepting connections. Before it signals, it records
which process incarnation (PID and start time) it is stopping in `.nodetask-restart-seid.json`, bound to the task and
run. A run resumed after an agent crash reads the record (a record naming a process that is not `<binary> start` with
the recorded start time is ignored and logged): if that incarnation is gone, the node it finds is one that already
came back, and it is not stopped again; if it is still running (the crash may
have come before the signal), that same incarnation gets SIGTERM again, which is harmless for a process already
shutting down, and the run waits for it. The record is removed when the task ends.

reset-data: wipes `data/` of a held node, for a state-sync re-bootstrap. See `reset_data`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from agent.chain.process import (
    ProcessInfo,
    find_process,
    identity_mismatch,
    is_running,
    terminate_gracefully,
)
from agent.chain.rpc import RpcClient, RpcError
from agent.chain.seiconfig.disk import load_config
from agent.io.files import atomic_write, marker_path
from agent.io.toml import get_dotted, read_toml
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.params.addresses import RpcAddress, split_host_port
from agent.models.params.base import TaskParams

from .base import TaskContext, handler
from .statesync import MARKER as STATESYNC_MARKER

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---

DEFAULT_GRACE_SECONDS = 90.0
"""How long seid gets to exit after SIGTERM (the original's 90 s): a validator flushing its databases at a large
height can take a minute."""


class _NodeRpc(TaskParams):
    rpc_endpoint: RpcAddress | None = Field(
        default=None,
        description="Deprecated: accepted only when it names the agent's own SEI_RPC_ENDPOINT (a no-op); any other "
        "value is refused by the handler (ParamsInvalid). Whether the node runs is judged from the agent's settings "
        "and /proc, never from a param.",
    )


class StopSeidParams(_NodeRpc):
    """`stop-seid`: SIGTERM the node process and wait for it to exit; never SIGKILL."""

    grace_seconds: float = Field(
        default=DEFAULT_GRACE_SECONDS, ge=1, le=3600, description="Seconds to wait for the exit after SIGTERM."
    )


class RestartSeidParams(StopSeidParams):
    """`restart-seid`: stop-seid, then wait until the node's RPC answers again."""

    ready_timeout_seconds: float = Field(
        default=300, ge=1, le=86_400, description="Seconds to wait for the RPC to answer after the stop."
    )


class ResetDataParams(_NodeRpc):
    """`reset-data`: wipe `data/` of a stopped (held) node."""

    keep_signing_state: bool = Field(
        default=True,
        description="Carry the last signed height/round/step into the fresh priv_validator_state.json, so the "
        "validator can never sign a height it signed before the reset. false: start at height 0 (only for a key "
        "that joins a new chain whose heights start again below the old ones).",
    )


RPC_PROBE_SECONDS = 2.0
P2P_PROBE_SECONDS = 1.0
RESTART_STATE_FILE = ".nodetask-restart-seid.json"
TRASH_DIR = ".nodetask-reset-trash"
"""Inside `data/`, so moving entries into it is a rename on the same filesystem even when `data/` is a mount."""
PRIV_VALIDATOR_STATE = "priv_validator_state.json"
SYMLINK_REFUSED = "SymlinkRefused"
DATA_DIR_MODE = 0o750


def _binary_name(ctx: TaskContext) -> str:
    return Path(ctx.settings.seid_binary).name or "seid"


def _comparable(address: str) -> str:
    """An RPC address in one spelling (`http://host:port`, lowercase) so that two ways to write it compare equal."""
    scheme, separator, rest = address.strip().partition("://")
    if not separator:
        scheme, rest = "http", scheme
    try:
        host, port = split_host_port(rest.rstrip("/"))
    except ValueError:
        return address.strip().lower()
    return f"{'http' if scheme.lower() == 'tcp' else scheme.lower()}://{host.lower()}:{port}"


def _endpoint(params: StopSeidParams | ResetDataParams, ctx: TaskContext) -> str:
    """`SEI_RPC_ENDPOINT`. A param cannot point the "is the node running" checks elsewhere: `rpcEndpoint` is
    deprecated, accepted only when it names the same address (a no-op), and refused otherwise."""
    own = ctx.settings.rpc_endpoint
    if params.rpc_endpoint is None:
        return own
    if _comparable(params.rpc_endpoint) != _comparable(own):
        raise ParamsInvalid(
            f"params.rpcEndpoint {params.rpc_endpoint!r} is not the agent's SEI_RPC_ENDPOINT {own!r}: {ctx.task_type} "
            "judges whether the node runs from the agent's own settings and /proc, never from a param",
            hint="remove params.rpcEndpoint (deprecated); if the node's RPC is elsewhere, set SEI_RPC_ENDPOINT on "
            "the agent",
        )
    ctx.log.warning("params.rpcEndpoint is deprecated and has no effect (it names SEI_RPC_ENDPOINT); remove it")
    return own


@dataclass(frozen=True)
class Listeners:
    """What the node's own config.toml says it listens on (addresses to dial from inside the pod)."""

    has_rpc: bool
    """False for a seed (`mode = "seed"`) and for an empty `[rpc] laddr`: such a node never answers RPC."""
    rpc: str | None
    p2p: tuple[str, int] | None


def _dialable(laddr: object) -> tuple[str, int] | None:
    """`tcp://0.0.0.0:26656` -> ("127.0.0.1", 26656); a wildcard host is dialled on loopback; None when unusable."""
    if not isinstance(laddr, str) or not laddr.strip():
        return None
    scheme, separator, rest = laddr.strip().partition("://")
    if separator and scheme.lower() != "tcp":
        return None  # unix sockets and the like: nothing to dial over TCP
    try:
        host, port = split_host_port(rest if separator else scheme)
    except ValueError:
        return None
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port


def _mode(home: Path, document: dict[str, Any]) -> str:
    try:
        return str(load_config(home).config.mode)
    except TaskError:  # one of the files missing or unreadable: config.toml's own `mode`, if it has one
        return str(get_dotted(document, "mode", "full"))


def _listeners(home: Path) -> Listeners:
    try:
        document = read_toml(home / "config" / "config.toml", missing_ok=True)
    except TaskError:
        document = {}
    rpc_laddr = get_dotted(document, "rpc.laddr")  # absent: CometBFT's default listener; "": no RPC at all
    rpc = _dialable(rpc_laddr)
    seed = _mode(home, document) == "seed"
    return Listeners(
        has_rpc=not seed and not (isinstance(rpc_laddr, str) and not rpc_laddr.strip()),
        rpc=f"http://{_shown(rpc)}" if rpc is not None else None,
        p2p=_dialable(get_dotted(document, "p2p.laddr")),
    )


def _shown(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _accepts(address: tuple[str, int]) -> bool:
    """Whether something accepts TCP connections at `address` (closed again at once; nothing is sent)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(*address), P2P_PROBE_SECONDS)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _signs_of_life(endpoint: str, listeners: Listeners) -> list[str]:
    """Everything besides a visible process that says the node runs: its RPC (the agent's endpoint and the one in
    config.toml) answering, its P2P port accepting connections. Empty: nothing answers."""
    signs = []
    probed = {_comparable(endpoint)}
    answers, answer = await _rpc_answers(endpoint)
    if answers:
        signs.append(f"its RPC {endpoint} answers ({answer})")
    if listeners.rpc is not None and _comparable(listeners.rpc) not in probed:
        answers, answer = await _rpc_answers(listeners.rpc)
        if answers:
            signs.append(f"its RPC {listeners.rpc} (config.toml [rpc] laddr) answers ({answer})")
    if listeners.p2p is not None and await _accepts(listeners.p2p):
        signs.append(f"its P2P port {_shown(listeners.p2p)} (config.toml [p2p] laddr) accepts connections")
    return signs


async def _rpc_answers(endpoint: str) -> tuple[bool, str]:
    """(answers, what it said or why not)."""
    try:
        async with RpcClient(endpoint) as rpc:
            status = await rpc.status(seconds=RPC_PROBE_SECONDS)
    except RpcError as error:
        return False, error.cause
    return True, f"height {status.latest_height}"


def _not_visible(binary: str, signs: list[str], doing: str) -> TaskError:
    return TaskError(
        f"no '{binary} start' process is visible in /proc, but the node runs: {'; '.join(signs)}; "
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


NOTHING_RUNNING: dict[str, Any] = {"pid": None, "signal": "", "alreadyStopped": True, "waitedSeconds": 0.0}


async def _nothing_to_stop(binary: str, endpoint: str, home: Path, doing: str) -> dict[str, Any]:
    """No process visible: stopped already, unless something else says the node runs (then it is not visible)."""
    signs = await _signs_of_life(endpoint, await asyncio.to_thread(_listeners, home))
    if signs:
        raise _not_visible(binary, signs, doing)
    return dict(NOTHING_RUNNING)


async def _stop(params: StopSeidParams, ctx: TaskContext, doing: str) -> dict[str, Any]:
    binary, endpoint = _binary_name(ctx), _endpoint(params, ctx)
    process = await _find(binary)
    if process is None:
        return await _nothing_to_stop(binary, endpoint, ctx.home, doing)
    return await _terminate(process, params, ctx)


async def _terminate(process: ProcessInfo, params: StopSeidParams, ctx: TaskContext) -> dict[str, Any]:
    began = time.monotonic()
    ctx.progress(message=f"SIGTERM to {process.argv[0]} (pid {process.pid}), waiting up to {params.grace_seconds:g}s")
    outcome = await terminate_gracefully(
        process, grace_seconds=params.grace_seconds, identity=(_binary_name(ctx), "start")
    )
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


def _recorded_process(record: dict[str, Any] | None, binary: str, ctx: TaskContext) -> ProcessInfo | None:
    """The incarnation the record says this run stopped; None (logged) when the record is unusable or names a live
    process that is not `<binary> start` as recorded: a record on disk is never a reason to signal a process."""
    if record is None:
        return None
    try:
        argv = record.get("argv", [binary])
        recorded = ProcessInfo(int(record["pid"]), int(record["startTime"]), tuple(str(part) for part in argv))
    except (KeyError, TypeError, ValueError) as error:
        ctx.log.warning("ignoring %s without a usable pid/startTime/argv: %s", RESTART_STATE_FILE, error)
        return None
    mismatch = identity_mismatch(recorded, binary, "start")
    if mismatch is not None:
        ctx.log.warning("ignoring %s: %s", RESTART_STATE_FILE, mismatch)
        return None
    return recorded


async def _back(
    binary: str, endpoint: str, listeners: Listeners, stopped: ProcessInfo | None
) -> tuple[str | None, str]:
    """(how the node is back, or None; what was seen). With RPC: the RPC answers. Without (a seed): a `<binary>
    start` process other than the stopped incarnation runs and its P2P port accepts connections."""
    if listeners.has_rpc:
        answers, answer = await _rpc_answers(endpoint)
        return (f"rpc {answer}" if answers else None), answer
    process = await _find(binary)
    if process is None or (
        stopped is not None and (process.pid, process.start_time) == (stopped.pid, stopped.start_time)
    ):
        return None, f"no new '{binary} start' process yet"
    if listeners.p2p is None:
        return f"process {process.pid}", f"process {process.pid} (no P2P address in config.toml to check)"
    if not await _accepts(listeners.p2p):
        return None, f"process {process.pid} runs, its P2P port {_shown(listeners.p2p)} does not accept connections yet"
    return f"process {process.pid}, P2P {_shown(listeners.p2p)} accepting", "P2P accepting"


def _not_back_hint(binary: str, listeners: Listeners) -> str:
    if listeners.has_rpc:
        return (
            "restart-seid needs the readiness gate open (mark-ready) so the node container comes back; check its "
            "restarts and log"
        )
    p2p = _shown(listeners.p2p) if listeners.p2p is not None else "(none in config.toml)"
    return (
        f"this node serves no RPC (a seed, or an empty [rpc] laddr): back means a new '{binary} start' process with "
        f"its P2P port {p2p} accepting connections. Is the readiness gate open (mark-ready)? check the node "
        "container's restarts and log, and [p2p] laddr in config.toml"
    )


async def _wait_until_back(
    binary: str,
    endpoint: str,
    listeners: Listeners,
    stopped: ProcessInfo | None,
    within_seconds: float,
    ctx: TaskContext,
) -> tuple[str, int]:
    deadline = time.monotonic() + within_seconds
    attempts = 0
    what = f"RPC {endpoint}" if listeners.has_rpc else "process and P2P port"
    hint = _not_back_hint(binary, listeners)
    while True:
        back, seen = await _back(binary, endpoint, listeners, stopped)
        if back is not None:
            return back, attempts
        attempts += 1
        ctx.explain_deadline(
            TaskError(
                f"the node was stopped but its {what} has not come back ({attempts} tries, the last: {seen})",
                reason="NodeNotBack",
                hint=hint,
                retryable=True,
            )
        )
        if time.monotonic() >= deadline:
            raise TaskError(
                f"the node was stopped but its {what} did not come back within {within_seconds:g}s (last: {seen})",
                reason="NodeNotBack",
                hint=hint,
                retryable=True,
            )
        ctx.progress(message=f"waiting for the node to come back: {seen}")
        await asyncio.sleep(1.0)


@handler(TaskType.RESTART_SEID, RestartSeidParams)
async def restart_seid(params: RestartSeidParams, ctx: TaskContext) -> dict[str, Any]:
    """Stop the node (SIGTERM, never SIGKILL) and wait until it is back (its RPC answers; a node without RPC: a new
    process with its P2P port accepting connections)."""
    home, binary, endpoint = ctx.home, _binary_name(ctx), _endpoint(params, ctx)
    listeners = await asyncio.to_thread(_listeners, home)
    record = await asyncio.to_thread(_read_restart_record, home, ctx)
    try:
        stopping = _recorded_process(record, binary, ctx)
        if stopping is not None:
            if is_running(stopping):
                # Still there: the crash may have come before the signal. SIGTERM again: harmless for the same
                # incarnation (it is already shutting down), and never sent to a node that came back (a new one).
                stopped = await _terminate(stopping, params, ctx)
            else:
                ctx.log.info("resumed: pid %d was already stopped by this run; not stopping again", stopping.pid)
                stopped = {"pid": stopping.pid, "signal": "SIGTERM", "alreadyStopped": False, "resumed": True}
        else:
            stopping = await _find(binary)
            if stopping is None:
                stopped = await _nothing_to_stop(binary, endpoint, home, "restart")
            else:
                record = {
                    "taskId": ctx.task_id,
                    "run": ctx.run,
                    "pid": stopping.pid,
                    "startTime": stopping.start_time,
                    "argv": list(stopping.argv[:2]),
                }
                await asyncio.to_thread(atomic_write, home / RESTART_STATE_FILE, json.dumps(record))
                stopped = await _terminate(stopping, params, ctx)
        back, attempts = await _wait_until_back(
            binary, endpoint, listeners, stopping, params.ready_timeout_seconds, ctx
        )
        ctx.explain_deadline(None)
        now = await _find(binary)
    except TaskError:
        await asyncio.to_thread(_remove_restart_record, home)
        raise
    await asyncio.to_thread(_remove_restart_record, home)
    how = {"rpc": back.removeprefix("rpc "), "rpcTriesUntilBack": attempts} if listeners.has_rpc else {}
    return {**stopped, **how, "back": back, "triesUntilBack": attempts, "newPid": now.pid if now else None}


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


def _refuse_symlink(path: Path, what: str) -> None:
    if path.is_symlink():
        raise TaskError(
            f"{path} ({what}) is a symlink (to {str(path.readlink())!r}); refusing to move node data through it",
            reason=SYMLINK_REFUSED,
            hint="node data is only ever moved within the home: remove the symlink (nothing the agent writes is one)",
        )


def _trash_entry(home: Path, data: Path, trash: Path) -> Path:
    """A new, empty `<trash>/<n>/` that is a real directory inside the home, on `data/`'s filesystem."""
    _refuse_symlink(trash, "the reset-data trash")
    trash.mkdir(mode=0o700, exist_ok=True)
    _refuse_symlink(trash, "the reset-data trash")  # checked again: it may have been placed in between
    for entry in trash.iterdir():
        _refuse_symlink(entry, "an entry of the reset-data trash")
    attempt = trash / str(max((int(entry.name) for entry in trash.iterdir() if entry.name.isdigit()), default=0) + 1)
    attempt.mkdir(mode=0o700)
    if not attempt.resolve().is_relative_to(home.resolve()) or attempt.stat().st_dev != data.stat().st_dev:
        raise TaskError(
            f"the reset-data trash {attempt} resolves to {attempt.resolve()}, outside the home {home.resolve()} or "
            "on another filesystem; refusing to move node data there",
            reason=SYMLINK_REFUSED,
            hint="remove whatever redirects data/ or its trash (a symlink or a mount)",
        )
    return attempt


def _wipe(home: Path, store: Path, keep_signing_state: bool) -> dict[str, Any]:
    data = home / "data"
    _refuse_symlink(data, "the node's data directory")
    if _inside(store, data):
        raise TaskError(
            f"the agent's store {store} is inside {data}; wiping data/ would destroy the agent's own records",
            hint="move the store out of data/ (NODETASK_DB)",
        )
    trash = data / TRASH_DIR
    _refuse_symlink(trash, "the reset-data trash")
    resumed = trash.exists()
    data.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    signing = _signing_state(data, trash, keep_signing_state)
    # 1. Move everything into one new trash entry: renames only, so a crash leaves every entry either in data/ or
    #    in the trash, never half-deleted in place; the next run moves what is left and deletes the whole trash.
    attempt = _trash_entry(home, data, trash)
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
    signs = await _signs_of_life(endpoint, await asyncio.to_thread(_listeners, ctx.home))
    if signs:
        raise TaskError(
            f"the node runs ({'; '.join(signs)}); refusing to wipe the data of a live node",
            reason="NodeRunning",
            hint="hold the node first: mark-not-ready, then stop-seid",
        )
    ctx.progress(message=f"wiping {ctx.home / 'data'}")
    result = await asyncio.to_thread(_wipe, ctx.home, ctx.settings.store_path, params.keep_signing_state)
    ctx.log.info("reset-data: wiped %d bytes (%d entries)", result["wipedBytes"], result["entriesMoved"])
    return result


HANDLERS = [stop_seid, restart_seid, reset_data]

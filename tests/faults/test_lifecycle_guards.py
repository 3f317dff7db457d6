"""The node lifecycle tasks' safety guards under hostile input (issue 21 B7, B11, B12; issue 22 D6).

- B7: a param can never switch off reset-data's "node still running" guard.
- B11: a restart record (or any process that writes `<binary> start` into its argv) never gets an unrelated process
  signalled: real unrelated processes, crafted records.
- B12: reset-data's trash stays inside the home; a symlink where the trash goes is refused and no node data moves.
- D6: a node without RPC (a seed) is judged stopped and back by its process and its P2P port.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.chain.process import find_process
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from agent.tasks.lifecycle import RESTART_STATE_FILE, TRASH_DIR
from tests.chain.standin import start_node_standin
from tests.fixtures.cometbft import CometBFTFactory
from tests.fixtures.common import HandlerRunner
from tests.fixtures.waiting import poll_until

TASK_ID = "00000000-0000-4000-8000-000000000000"  # HandlerRunner's task ID (run 1)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture
def binary() -> str:
    return f"seid-{secrets.token_hex(4)}"


@pytest.fixture
def lifecycle(settings: AgentSettings, binary: str, refused_port: Callable[..., int]) -> HandlerRunner:
    """An agent whose SEI_RPC_ENDPOINT refuses connections and whose SEI_BINARY is a name nothing else uses."""
    return HandlerRunner(
        settings.model_copy(
            update={"rpc_endpoint": f"http://127.0.0.1:{refused_port()}", "seid_binary": binary},
        )
    )


def node_data(home: Path) -> dict[str, bytes]:
    (home / "data" / "application.db").mkdir(parents=True, exist_ok=True)
    (home / "data" / "application.db" / "000001.ldb").write_bytes(b"state" * 100)
    (home / "data" / "priv_validator_state.json").write_text('{"height": "7", "round": 0, "step": 0}')
    return snapshot(home / "data")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def seed_config(home: Path, *, p2p_port: int, rpc_port: int, mode: str = "seed") -> None:
    (home / "config" / "config.toml").write_text(
        f'mode = "{mode}"\n\n[rpc]\nladdr = "tcp://127.0.0.1:{rpc_port}"\n\n[p2p]\nladdr = "tcp://0.0.0.0:{p2p_port}"\n'
    )


# --- B7 ----------------------------------------------------------------------------------------------------------


async def test_a_param_endpoint_cannot_switch_off_the_running_node_guard(
    lifecycle: HandlerRunner, home: Path, cometbft_factory: CometBFTFactory, refused_port: Callable[..., int]
) -> None:
    node = cometbft_factory("local")  # the node's real RPC, answering
    lifecycle.settings = lifecycle.settings.model_copy(update={"rpc_endpoint": node.url})
    before = node_data(home)

    with pytest.raises(ParamsInvalid, match=r"params.rpcEndpoint .* is not the agent's SEI_RPC_ENDPOINT"):
        await lifecycle(TaskType.RESET_DATA, {"rpcEndpoint": f"127.0.0.1:{refused_port()}"})

    assert snapshot(home / "data") == before  # lost: 0


async def test_the_deprecated_endpoint_param_naming_the_agents_own_is_accepted_and_still_guards(
    lifecycle: HandlerRunner, home: Path, cometbft_factory: CometBFTFactory
) -> None:
    node = cometbft_factory("local")
    lifecycle.settings = lifecycle.settings.model_copy(update={"rpc_endpoint": node.url})
    before = node_data(home)
    with pytest.raises(TaskError, match="refusing to wipe") as raised:
        await lifecycle(TaskType.RESET_DATA, {"rpcEndpoint": node.url.removeprefix("http://")})
    assert raised.value.reason == "NodeRunning"
    assert snapshot(home / "data") == before


@pytest.mark.parametrize("listener", ["rpc-in-config-toml", "p2p-in-config-toml"])
async def test_reset_data_refuses_while_the_nodes_own_listeners_answer(
    lifecycle: HandlerRunner,
    home: Path,
    cometbft_factory: CometBFTFactory,
    refused_port: Callable[..., int],
    listener: str,
) -> None:
    """SEI_RPC_ENDPOINT does not answer, but config.toml's RPC listener or P2P port does: the node runs."""
    before = node_data(home)
    with socket.socket() as p2p:
        p2p.bind(("127.0.0.1", 0))
        p2p.listen(4)
        if listener == "rpc-in-config-toml":
            rpc_port, p2p_port = cometbft_factory("local").port, refused_port()
        else:
            rpc_port, p2p_port = refused_port(), p2p.getsockname()[1]
        seed_config(home, p2p_port=p2p_port, rpc_port=rpc_port, mode="full")
        with pytest.raises(TaskError, match="refusing to wipe") as raised:
            await lifecycle(TaskType.RESET_DATA)
    assert raised.value.reason == "NodeRunning"
    assert snapshot(home / "data") == before


# --- B11 ---------------------------------------------------------------------------------------------------------


def start_time(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[19])


@pytest.mark.parametrize("claimed_argv", [["{binary}", "start"], ["sleep", "600"]], ids=["claims-seid", "honest"])
async def test_a_crafted_restart_record_never_gets_an_unrelated_process_signalled(
    lifecycle: HandlerRunner,
    home: Path,
    binary: str,
    processes: list[subprocess.Popen[bytes]],
    claimed_argv: list[str],
) -> None:
    bystander = subprocess.Popen(["sleep", "600"])
    processes.append(bystander)
    poll_until(lambda: Path(f"/proc/{bystander.pid}/cmdline").read_bytes().startswith(b"sleep"), what="sleep runs")
    record = {
        "taskId": TASK_ID,
        "run": 1,
        "pid": bystander.pid,
        "startTime": start_time(bystander.pid),
        "argv": [part.format(binary=binary) for part in claimed_argv],
    }
    (home / RESTART_STATE_FILE).write_text(json.dumps(record))

    with pytest.raises(TaskError) as raised:
        await lifecycle(TaskType.RESTART_SEID, {"readyTimeoutSeconds": 1})

    assert raised.value.reason == "NodeNotBack"  # nothing was running; nothing came back
    assert bystander.poll() is None  # never signalled


async def test_a_process_that_only_writes_seid_start_into_its_argv_is_not_the_node(
    lifecycle: HandlerRunner, tmp_path: Path, binary: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    """argv[0] `<binary>`, argv[1] `start`, but the file it executed is Python: its `comm` gives it away."""
    directory = tmp_path / "impostor"
    directory.mkdir()
    (directory / "start").write_text("import time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    impostor = subprocess.Popen([binary, "start"], executable=sys.executable, cwd=directory, stdout=subprocess.PIPE)
    processes.append(impostor)
    assert impostor.stdout is not None and impostor.stdout.readline() == b"ready\n"

    assert find_process(binary, subcommand="start") is None
    result = await lifecycle(TaskType.STOP_SEID, {"graceSeconds": 1})

    assert result is not None and result["alreadyStopped"] is True
    assert impostor.poll() is None


async def test_a_record_of_the_real_node_written_by_a_crashed_run_still_stops_it(
    lifecycle: HandlerRunner, home: Path, tmp_path: Path, binary: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    node = start_node_standin(tmp_path / "bin", name=binary)
    processes.append(node)
    found = find_process(binary, subcommand="start")
    assert found is not None and found.pid == node.pid
    record = {"taskId": TASK_ID, "run": 1, "pid": node.pid, "startTime": found.start_time, "argv": list(found.argv[:2])}
    (home / RESTART_STATE_FILE).write_text(json.dumps(record))

    with pytest.raises(TaskError) as raised:  # stopped; nothing restarts it here
        await lifecycle(TaskType.RESTART_SEID, {"readyTimeoutSeconds": 1, "graceSeconds": 10})

    assert raised.value.reason == "NodeNotBack"
    assert node.wait(timeout=10) == 0  # exited on the SIGTERM
    assert not (home / RESTART_STATE_FILE).exists()


# --- B12 ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["trash", "trash-entry"])
async def test_node_data_is_never_moved_outside_the_home_through_a_symlink(
    lifecycle: HandlerRunner, home: Path, tmp_path: Path, where: str
) -> None:
    before = node_data(home)
    outside = tmp_path / "outside"
    outside.mkdir()
    trash = home / "data" / TRASH_DIR
    if where == "trash":
        trash.symlink_to(outside, target_is_directory=True)
    else:
        trash.mkdir()
        (trash / "7").symlink_to(outside, target_is_directory=True)

    with pytest.raises(TaskError, match="is a symlink") as raised:
        await lifecycle(TaskType.RESET_DATA)

    assert raised.value.reason == "SymlinkRefused"
    assert list(outside.iterdir()) == []
    assert snapshot(home / "data") == before


# --- D6 ----------------------------------------------------------------------------------------------------------


class Kubelet:
    """Restarts the node stand-in (same name, same P2P port) whenever it exits, like a container restart."""

    def __init__(self, directory: Path, binary: str, p2p_port: int, processes: list[subprocess.Popen[bytes]]):
        self.directory, self.binary, self.p2p_port, self.processes = directory, binary, p2p_port, processes
        self.stopping = threading.Event()
        self.current = self._start()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _start(self) -> subprocess.Popen[bytes]:
        process = start_node_standin(self.directory, name=self.binary, listen_port=self.p2p_port)
        self.processes.append(process)
        return process

    def _watch(self) -> None:
        while not self.stopping.is_set():
            try:
                self.current.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            if not self.stopping.is_set():
                self.current = self._start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


async def test_restart_seid_on_a_seed_is_judged_by_its_process_and_p2p_port(
    lifecycle: HandlerRunner,
    home: Path,
    tmp_path: Path,
    binary: str,
    free_port: int,
    refused_port: Callable[..., int],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    seed_config(home, p2p_port=free_port, rpc_port=refused_port())
    kubelet = Kubelet(tmp_path / "bin", binary, free_port, processes)
    first = kubelet.current.pid
    try:
        result = await lifecycle(TaskType.RESTART_SEID, {"readyTimeoutSeconds": 20, "graceSeconds": 10})
    finally:
        kubelet.stop()
    assert result is not None
    assert result["pid"] == first and result["signal"] == "SIGTERM"
    assert result["newPid"] not in (None, first)
    assert f"P2P 127.0.0.1:{free_port} accepting" in result["back"]
    assert "rpc" not in result


async def test_a_seed_that_does_not_come_back_fails_with_a_hint_about_its_p2p_port(
    lifecycle: HandlerRunner,
    home: Path,
    tmp_path: Path,
    binary: str,
    free_port: int,
    refused_port: Callable[..., int],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    seed_config(home, p2p_port=free_port, rpc_port=refused_port())
    processes.append(start_node_standin(tmp_path / "bin", name=binary, listen_port=free_port))
    with pytest.raises(TaskError) as raised:
        await lifecycle(TaskType.RESTART_SEID, {"readyTimeoutSeconds": 1, "graceSeconds": 10})
    assert raised.value.reason == "NodeNotBack"
    assert "serves no RPC" in raised.value.hint and f"127.0.0.1:{free_port}" in raised.value.hint


async def test_stop_seid_of_an_invisible_seed_fails_instead_of_reporting_a_stop(
    lifecycle: HandlerRunner, home: Path, refused_port: Callable[..., int]
) -> None:
    with socket.socket() as p2p:  # the seed's P2P port answers, but no `<binary> start` is visible
        p2p.bind(("127.0.0.1", 0))
        p2p.listen(4)
        seed_config(home, p2p_port=p2p.getsockname()[1], rpc_port=refused_port())
        with pytest.raises(TaskError, match=r"P2P port .* accepts connections") as raised:
            await lifecycle(TaskType.STOP_SEID)
    assert raised.value.reason == "NodeNotVisible"

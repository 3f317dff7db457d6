"""Finding and stopping a process through /proc, with real stand-in processes.

These tests give the stand-in a unique name, so they never touch another process on the machine; the await-condition
tests run a stand-in actually named `seid` inside a PID namespace of its own.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.chain.process import ProcessInfo, find_process, is_running, stop_process
from tests.chain.standin import start_standin


@pytest.fixture
def name() -> str:
    return f"seid-standin-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_find_process_matches_argv0_by_name(tmp_path: Path, name: str, started: list[subprocess.Popen[bytes]]) -> None:
    process = start_standin(tmp_path / "bin", name=name)
    started.append(process)
    found = find_process(name)
    assert found is not None
    assert found.pid == process.pid
    assert found.argv[0] == str(tmp_path / "bin" / name)
    assert is_running(found)


def test_find_process_ignores_other_names(tmp_path: Path, name: str, started: list[subprocess.Popen[bytes]]) -> None:
    started.append(start_standin(tmp_path / "bin", name=f"{name}x"))
    started.append(start_standin(tmp_path / "bin", name=f"x{name}"))
    assert find_process(name) is None


def test_find_process_returns_the_lowest_pid(tmp_path: Path, name: str, started: list[subprocess.Popen[bytes]]) -> None:
    started.extend(start_standin(tmp_path / f"bin{index}", name=name) for index in range(2))
    found = find_process(name)
    assert found is not None and found.pid == min(process.pid for process in started)


@pytest.mark.parametrize(
    ("behaviour", "grace", "last_signal", "exit_code"),
    [("graceful", 10.0, "SIGTERM", 0), ("stubborn", 0.3, "SIGKILL", -signal.SIGKILL)],
    ids=["honours-sigterm", "ignores-sigterm-so-killed"],
)
async def test_stop_sends_sigterm_then_sigkill_after_the_grace_period(
    tmp_path: Path,
    name: str,
    started: list[subprocess.Popen[bytes]],
    behaviour: str,
    grace: float,
    last_signal: str,
    exit_code: int,
) -> None:
    process = start_standin(tmp_path / "bin", name=name, behaviour=behaviour)
    started.append(process)
    found = find_process(name)
    assert found is not None
    outcome = await stop_process(found, grace_seconds=grace)
    assert (outcome.signal, outcome.exited) == (last_signal, True)
    assert process.wait(timeout=5) == exit_code
    assert not is_running(found)


async def test_a_process_already_gone_counts_as_stopped(
    tmp_path: Path, name: str, started: list[subprocess.Popen[bytes]]
) -> None:
    process = start_standin(tmp_path / "bin", name=name)
    found = find_process(name)
    assert found is not None
    process.kill()
    process.wait()
    outcome = await stop_process(found, grace_seconds=1)
    assert (outcome.signal, outcome.exited) == ("", True)


async def test_a_reused_pid_is_never_signalled(
    tmp_path: Path, name: str, started: list[subprocess.Popen[bytes]]
) -> None:
    process = start_standin(tmp_path / "bin", name=name, behaviour="graceful")
    started.append(process)
    found = find_process(name)
    assert found is not None
    other_incarnation = ProcessInfo(found.pid, found.start_time + 1, found.argv)
    outcome = await stop_process(other_incarnation, grace_seconds=1)
    assert outcome.signal == ""
    assert process.poll() is None  # still running: the signal was not sent

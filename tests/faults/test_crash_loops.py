"""kill -9 of a real agent process (`nodetask-agent local`) while a task runs, again and again.

The task waits for a height from an RPC endpoint that accepts connections and never answers (a listening socket the
test holds), so it is always mid-run when the process is killed. After `KILL_LIMIT` resumes that each ended in a kill,
the next start fails it `AgentKilled` instead of running it (and being killed) again. Start-up also removes the
temporary files a killed process left in the home.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.engine.engine import KILL_LIMIT
from agent.models import Reason, TaskStatus
from agent.store import SqliteStore, StoreError
from tests.fixtures.kube import REPO_ROOT
from tests.fixtures.waiting import poll_until

TASK_ID = "3f1c9e2a-7b4d-4c1e-9a3b-2d5e6f7a8b9c"
MANIFEST = f"""
apiVersion: sei.io/v1alpha1
kind: NodeTask
metadata:
  name: waits-forever
spec:
  targetPod: sei-node-0
  taskId: {TASK_ID}
  type: await-condition
  params:
    condition: height
    targetHeight: 1000000
"""


@pytest.fixture
def silent_rpc() -> Iterator[str]:
    """An RPC endpoint that accepts TCP connections and never answers (kept listening for the whole test)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def start_local(home: Path, manifest: Path, rpc: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SEI_RPC_ENDPOINT": rpc, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", "local", str(manifest), "--home", str(home)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stored_resumes(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        with SqliteStore(db) as reader:
            row = reader.get(TASK_ID)
    except StoreError:  # the agent is creating the file this instant
        return None
    return None if row is None or row.status is not TaskStatus.RUNNING else row.resumes


def running_until(process: subprocess.Popen[bytes], condition: Callable[[], bool], what: str) -> None:
    """Wait up to 60 s for `condition` while `process` runs (its output in the failure if it ended first)."""
    poll_until(
        condition,
        what=what,
        timeout=60,
        alive=lambda: process.poll() is None,
        ended=lambda: process.communicate()[0].decode(errors="replace"),
    )


def kill_when_resumed(process: subprocess.Popen[bytes], db: Path, resumes: int) -> None:
    try:
        running_until(process, lambda: stored_resumes(db) == resumes, f"the task to reach resume {resumes}")
        time.sleep(0.3)  # mid-run: the handler is polling the silent endpoint
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)


@pytest.mark.slow
def test_a_task_that_keeps_killing_the_agent_fails_agent_killed_and_leftovers_are_removed(
    tmp_path: Path, silent_rpc: str
) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    manifest = tmp_path / "task.yaml"
    manifest.write_text(MANIFEST)
    db = home / "nodetask-agent.db"

    for resumes in range(KILL_LIMIT + 1):  # the first run, then KILL_LIMIT resumes, each killed with SIGKILL
        kill_when_resumed(start_local(home, manifest, silent_rpc), db, resumes)

    leftovers = [
        home / "config" / ".exported-state.k3j4h5g6.json.nodetask-agent.tmp",
        home / "config" / ".config.toml.a1b2c3d4.tmp",  # an earlier version's name
    ]
    for path in leftovers:
        path.write_bytes(b"partial download")
    kept = home / "config" / "notes.tmp"
    kept.write_text("not ours")

    final = start_local(home, manifest, silent_rpc)
    output, _ = final.communicate(timeout=60)
    text = output.decode(errors="replace")
    assert final.returncode == 1, text
    assert "AgentKilled" in text
    with SqliteStore(db) as reader:
        row = reader.get(TASK_ID)
    assert row is not None and (row.status, row.reason) == (TaskStatus.FAILED, Reason.AGENT_KILLED)
    assert "keeps killing the agent" in row.error and row.resumes == KILL_LIMIT
    assert not any(path.exists() for path in leftovers)
    assert kept.exists()


@pytest.mark.slow
def test_a_clean_stop_between_resumes_does_not_count_as_a_kill(tmp_path: Path, silent_rpc: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    manifest = tmp_path / "task.yaml"
    manifest.write_text(MANIFEST)
    db = home / "nodetask-agent.db"
    for resumes in range(KILL_LIMIT):
        kill_when_resumed(start_local(home, manifest, silent_rpc), db, resumes)
    interrupted = start_local(home, manifest, silent_rpc)  # SIGINT: a clean stop resets the count of kills
    running_until(interrupted, lambda: stored_resumes(db) == KILL_LIMIT, f"resume {KILL_LIMIT}")
    interrupted.send_signal(signal.SIGINT)
    assert interrupted.wait(30) == 130
    resumed = start_local(home, manifest, silent_rpc)
    try:
        running_until(resumed, lambda: stored_resumes(db) == KILL_LIMIT + 1, f"resume {KILL_LIMIT + 1}")
    finally:
        resumed.send_signal(signal.SIGKILL)
        resumed.wait(30)

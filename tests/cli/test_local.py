"""`nodetask-agent local`: real manifests through the real CLI, engine, handlers and SQLite store."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli.local import Reporter
from agent.cli.main import main
from agent.engine import EventKind, TaskEvent
from agent.models import Progress, TaskResult, TaskStatus
from agent.store import SqliteStore

REPO = Path(__file__).resolve().parents[2]


def manifest(name: str, task_type: str, params: dict[str, object] | None = None, **spec: object) -> str:
    body: dict[str, object] = {"targetPod": "node-0", "type": task_type, **spec}
    if params is not None:
        body["params"] = params
    document = {"apiVersion": "sei.io/v1alpha1", "kind": "NodeTask", "metadata": {"name": name}, "spec": body}
    return json.dumps(document)  # JSON is YAML


def write_plan(directory: Path, *documents: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index, document in enumerate(documents):
        (directory / f"{index:02d}.yaml").write_text(document)
    return directory


def new_home(tmp_path: Path) -> Path:
    """An existing, empty node home (local mode refuses a home that does not exist)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return home


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["local", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_quickstart_examples_run_and_a_second_run_reports_them_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = new_home(tmp_path)
    code, out, _ = run_cli(capsys, str(REPO / "examples" / "quickstart"), "--home", str(home))
    assert code == 0, out
    count = len(list((REPO / "examples" / "quickstart").glob("*.yaml")))
    assert f"{count} of {count} task(s) succeeded" in out
    assert (home / "config" / "node_key.json").exists()
    config = (home / "config" / "config.toml").read_text()
    assert "persistent-peers" in config and "max-incoming-connection-attempts = 50" in config
    assert (home / "config" / "app.toml").exists()

    before = {path: path.read_bytes() for path in (home / "config").rglob("*") if path.is_file()}
    code, again, _ = run_cli(capsys, str(REPO / "examples" / "quickstart"), "--home", str(home))
    assert code == 0
    assert again.count("Succeeded earlier") == count
    assert "started" not in again
    assert before == {path: path.read_bytes() for path in (home / "config").rglob("*") if path.is_file()}


def test_tasks_run_in_file_order_and_each_final_status_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(
        tmp_path / "plan",
        manifest("first", "mark-not-ready"),
        manifest("second", "mark-ready"),
    )
    code, out, _ = run_cli(capsys, str(plan), "--home", str(new_home(tmp_path)))
    assert code == 0
    assert out.index("[1/2] first (mark-not-ready): Succeeded") < out.index("[2/2] second (mark-ready): Succeeded")
    store = SqliteStore(new_home(tmp_path) / "nodetask-agent.db")
    try:
        assert [row.type for row in store.list()] == ["mark-ready", "mark-not-ready"]
    finally:
        store.close()


BAD_PLANS = {
    "malformed yaml": ("spec: [unclosed\n", "malformed YAML: line 2"),
    "not a mapping": ("- a\n- b\n", "expected a NodeTask object, got list"),
    "wrong kind": (
        manifest("x", "mark-ready").replace('"NodeTask"', '"Pod"'),
        "a Pod, not a NodeTask",
    ),
    "unknown spec field": (
        manifest("x", "mark-ready", colour="red"),
        "spec.colour: unknown field",
    ),
    "wrong type": (manifest("x", "mark-ready", timeoutSeconds="soon"), "spec.timeoutSeconds"),
    "missing target pod": (
        json.dumps(
            {
                "apiVersion": "sei.io/v1alpha1",
                "kind": "NodeTask",
                "metadata": {"name": "x"},
                "spec": {"type": "mark-ready"},
            }
        ),
        "spec.targetPod: required field is missing",
    ),
    "non-uuid task id": (manifest("x", "mark-ready", taskId="task-1"), "spec.taskId: task ID must be a valid UUID"),
    "unknown type": (manifest("x", "reticulate-splines"), "spec.type: unknown task type: 'reticulate-splines'"),
    "params invalid": (manifest("x", "mark-ready", {"force": True}), "params.force: unknown field"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_bad_input_names_the_problem_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    document, expected = BAD_PLANS[case]
    plan = write_plan(tmp_path / "plan", manifest("good", "mark-ready"), document)
    home = new_home(tmp_path)
    code, _, err = run_cli(capsys, str(plan), "--home", str(home))
    assert code == 2
    assert "nothing was run" in err
    assert expected in err
    assert "01.yaml" in err  # the file with the problem is named
    assert list(home.iterdir()) == []  # not even the store was created


def test_duplicate_tasks_in_one_plan_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(tmp_path / "plan", manifest("same", "mark-ready"), manifest("same", "mark-ready"))
    code, _, err = run_cli(capsys, str(plan), "--home", str(new_home(tmp_path)))
    assert code == 2 and "same task as" in err


def test_missing_path_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, str(tmp_path / "nowhere"), "--home", str(new_home(tmp_path)))
    assert code == 2 and "no such file or directory" in err


def test_a_failure_stops_the_plan_unless_keep_going(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(
        tmp_path / "plan",
        manifest("patch", "config-patch", {"files": {"../escape.toml": {"a": 1}}}),
        manifest("ready", "mark-ready"),
    )
    code, out, _ = run_cli(capsys, str(plan), "--home", str(new_home(tmp_path)))
    assert code == 1
    assert "reason=ParamsInvalid" in out and "escape.toml" in out
    assert "ready (mark-ready)" not in out
    assert not (tmp_path / "escape.toml").exists()

    code, out, _ = run_cli(capsys, str(plan), "--home", str(new_home(tmp_path)), "--keep-going")
    assert code == 1
    assert "patch (config-patch): Failed earlier" in out and "--retry-failed" in out
    assert "ready (mark-ready): Succeeded" in out


def test_retry_failed_runs_a_failed_task_once_more(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = new_home(tmp_path)
    plan = write_plan(tmp_path / "plan", manifest("patch", "config-patch", {"files": {"../x.toml": {"a": 1}}}))
    assert run_cli(capsys, str(plan), "--home", str(home))[0] == 1
    code, out, _ = run_cli(capsys, str(plan), "--home", str(home), "--retry-failed")
    assert code == 1 and "(run 2)" in out


def test_tasks_list_and_show_read_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = new_home(tmp_path)
    plan = write_plan(tmp_path / "plan", manifest("ready", "mark-ready", taskId="6ba7b810-9dad-11d1-80b4-00c04fd430c8"))
    assert run_cli(capsys, str(plan), "--home", str(home))[0] == 0
    assert main(["tasks", "list", "--home", str(home)]) == 0
    listing = capsys.readouterr().out
    assert "6ba7b810-9dad-11d1-80b4-00c04fd430c8" in listing and "Succeeded" in listing
    assert "ready " in listing  # the name the user wrote (metadata.name)
    for wanted in ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "ready"):
        assert main(["tasks", "show", wanted, "--home", str(home)]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["id"] == "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        assert (shown["name"], shown["phase"], shown["result"]) == ("ready", "Succeeded", {"ready": True})
        assert "status" not in shown  # the store's `completed` is not what users see anywhere else
    assert main(["tasks", "show", "unready", "--home", str(home)]) == 1
    assert "no task with ID or name 'unready'" in capsys.readouterr().err


@pytest.mark.slow
def test_interrupted_run_keeps_state_and_the_next_run_resumes(tmp_path: Path, refused_port: Callable[..., int]) -> None:
    """Ctrl-C mid-task: the task stays running in the store and the next invocation resumes it.

    The task waits for a height no node will reach (the RPC endpoint refuses connections), bounded by a 4 s timeout
    that the resumed run inherits: the second invocation resumes it and ends it at that deadline: NodeUnreachable
    (what await-condition says of a node that never answered) when the handler got to poll before it, or
    DeadlineExceeded when the 4 s had already run out before the resumed run could start (a busy machine).
    """
    home = new_home(tmp_path)
    plan = write_plan(
        tmp_path / "plan",
        manifest("wait", "await-condition", {"condition": "height", "targetHeight": 10**9}, timeoutSeconds=4),
    )
    command = [sys.executable, "-m", "agent", "local", str(plan), "--home", str(home)]
    env = {**os.environ, "SEI_RPC_ENDPOINT": f"http://127.0.0.1:{refused_port()}"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    lines = [process.stdout.readline(), process.stdout.readline()]
    assert "started" in lines[1], lines
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 130, out
    assert "interrupted" in out
    store = SqliteStore(home / "nodetask-agent.db")
    try:
        (row,) = store.list()
        assert (row.status.value, row.resumes) == ("running", 0)
    finally:
        store.close()

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "resuming 1 task(s)" in resumed.stdout
    assert "reason=NodeUnreachable" in resumed.stdout or "reason=DeadlineExceeded" in resumed.stdout
    store = SqliteStore(home / "nodetask-agent.db")
    try:
        (row,) = store.list()
        assert (row.status.value, row.resumes, row.run) == ("failed", 1, 1)
    finally:
        store.close()


def test_cli_version_and_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("nodetask-agent ")
    assert main(["tasks", "types", "-o", "json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert "mark-ready" in described and "params" in described["mark-ready"]


def test_crd_command_prints_the_committed_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == (REPO / "crds" / "nodetasks.sei.io.yaml").read_text()
    assert main(["crd", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["name"] == "nodetasks.sei.io"


def test_run_without_pod_identity_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert main(["run", "--home", str(tmp_path)]) == 2
    assert "POD_NAME" in capsys.readouterr().err


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def progress_event(task_id: str, message: str, current: float = 5) -> TaskEvent:
    row = TaskResult(
        id=task_id,
        type="await-condition",
        status=TaskStatus.RUNNING,
        progress=Progress(current=current, total=10, unit="blocks", message=message),
    )
    return TaskEvent(EventKind.PROGRESS, row)


def test_progress_is_printed_when_it_changes_and_a_repeat_only_after_the_repeat_interval() -> None:
    out, clock = io.StringIO(), FakeClock()
    reporter = Reporter(out, 1, clock=clock, tty=False)
    reporter.current["t"] = "[1/1] wait (await-condition)"
    for second in range(60):  # one identical report a second, as await-condition makes on a node that is down
        clock.now = float(second)
        reporter.on_event(progress_event("t", "waiting for the node's RPC: connection refused"))
    assert len(out.getvalue().splitlines()) == 2  # at 0 s and at the repeat interval (30 s)
    clock.now = 60.0
    reporter.on_event(progress_event("t", "catching up", current=6))  # changed: printed at once
    clock.now = 61.0
    reporter.on_event(progress_event("t", "catching up", current=7))  # changed, but within the interval
    clock.now = 60.0 + Reporter.PROGRESS_INTERVAL
    reporter.on_event(progress_event("t", "catching up", current=8))
    lines = out.getvalue().splitlines()
    assert lines[2:] == ["[1/1] wait (await-condition): 6/10 blocks (60.0%) catching up", lines[3]]
    assert lines[3].startswith("[1/1] wait (await-condition): 8/10 blocks")


def test_on_a_terminal_progress_rewrites_one_line_and_the_next_line_replaces_it() -> None:
    out, clock = io.StringIO(), FakeClock()
    reporter = Reporter(out, 1, clock=clock, tty=True)
    reporter.current["t"] = "[1/1] wait (await-condition)"
    for current in (1, 2):
        clock.now += Reporter.PROGRESS_INTERVAL
        reporter.on_event(progress_event("t", "", current=current))
    reporter.print("[1/1] wait (await-condition): Succeeded")
    assert out.getvalue() == (
        "\r[1/1] wait (await-condition): 1/10 blocks (10.0%)\x1b[K"
        "\r[1/1] wait (await-condition): 2/10 blocks (20.0%)\x1b[K"
        "\r\x1b[K[1/1] wait (await-condition): Succeeded\n"
    )

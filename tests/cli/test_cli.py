"""The command line as a newcomer types it: options anywhere, clear usage errors, pipes, an existing home, names,
did-you-mean, recursive directories and `local --check`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.logs import JsonFormatter, TextFormatter
from agent.cli.main import main
from tests.cli.test_local import REPO, manifest, new_home, write_plan

AGENT = [sys.executable, "-m", "agent"]


def cli(*args: str, env: dict[str, str] | None = None, **options: object) -> subprocess.CompletedProcess[str]:
    """The real executable in a child process (exit codes, stderr and pipes as a shell sees them)."""
    streams: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **options}
    return subprocess.run([*AGENT, *args], text=True, timeout=120, check=False, env=env or dict(os.environ), **streams)  # type: ignore[call-overload]


@pytest.mark.parametrize("level", ["bogus", "verbose", "5"])
def test_a_bad_log_level_is_a_usage_error_not_a_traceback(level: str) -> None:
    finished = cli("--log-level", level, "version")
    assert finished.returncode == 2
    assert f"argument --log-level: {level!r} is not a log level" in finished.stderr
    assert "Traceback" not in finished.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "debug", "--log-format", "json", "version"],
        ["version", "--log-level", "debug", "--log-format", "json"],
        ["tasks", "--log-level", "DEBUG", "types", "--log-format", "json"],
    ],
)
def test_global_options_are_accepted_before_and_after_the_command(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configured: list[tuple[str, str]] = []
    monkeypatch.setattr("agent.cli.main.configure_logging", lambda level, fmt, **_: configured.append((level, fmt)))
    assert main(argv) == 0
    assert configured == [("DEBUG", "json")]


def test_an_option_before_the_command_is_not_erased_by_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    configured: list[tuple[str, str]] = []
    monkeypatch.setattr("agent.cli.main.configure_logging", lambda level, fmt, **_: configured.append((level, fmt)))
    assert main(["--log-level", "error", "version"]) == 0
    assert configured == [("ERROR", "text")]


@pytest.mark.parametrize("command", [["tasks", "types"], ["crd"], ["version"]])
def test_output_into_a_closed_pipe_ends_quietly(command: list[str]) -> None:
    """`| head` that has already exited: the reading end is closed before the command writes anything."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        finished = cli(*command, stdout=write_end)
    finally:
        os.close(write_end)
    assert "Error" not in finished.stderr and "Traceback" not in finished.stderr, finished.stderr
    assert finished.returncode == 141


def test_local_help_does_not_claim_a_default_for_the_required_home(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["local", "--help"])
    home_help = capsys.readouterr().out.split("\n  --home HOME", 1)[1].split("--db", 1)[0]
    assert "required" in home_help and "default:" not in home_help


@pytest.mark.parametrize("command", [["local", str(REPO / "examples")], ["tasks", "list"], ["run"]])
def test_a_home_that_does_not_exist_is_refused_and_nothing_is_created(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "hmoe"
    assert main([*command, "--home", str(typo)]) == 2
    assert f"--home: {typo} is not an existing directory" in capsys.readouterr().err
    assert not typo.exists()


def test_local_needs_a_home_unless_only_checking(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", str(REPO / "examples")]) == 2
    assert "--home is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (manifest("x", "mark-redy"), "unknown task type: 'mark-redy' (did you mean 'mark-ready'?)"),
        (
            manifest("x", "discover-peers", {"sources": [{"type": "dns", "hostz": ["a"]}], "p2pProt": 1}),
            "params.sources[0].dns.hostz: unknown field (did you mean 'hosts'?); "
            "params.p2pProt: unknown field (did you mean 'p2pPort'?)",
        ),
        (
            manifest("x", "snapshot-restore", {"s3bucket": "b"}),
            "params.s3bucket: unknown field (did you mean 'bucket'?)",
        ),
        (
            manifest("x", "mark-ready", timeoutSecond=5),
            "spec.timeoutSecond: unknown field (did you mean 'timeoutSeconds'?)",
        ),
        (manifest("x", "mark-ready", {"zzz": 1}), "params.zzz: unknown field;"),
    ],
)
def test_unknown_names_get_the_closest_known_one(
    document: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path / "plan", document)
    assert main(["local", "--check", str(plan)]) == 2
    err = capsys.readouterr().err
    assert expected.rstrip(";") in err
    if expected.endswith(";"):
        assert "did you mean" not in err


def test_a_directory_is_searched_recursively_in_path_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "plan"
    write_plan(root / "b-later", manifest("third", "mark-ready"))
    write_plan(root / "a-first", manifest("first", "mark-not-ready"), manifest("second", "mark-ready"))
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.yaml").write_text("not: [valid")
    assert main(["local", str(root), "--home", str(new_home(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.index("[1/3] first") < out.index("[2/3] second") < out.index("[3/3] third")


def test_local_examples_finds_the_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "--check", str(REPO / "examples")]) == 0
    out = capsys.readouterr().out
    count = len(list((REPO / "examples" / "quickstart").glob("*.yaml")))
    assert f"{count} task(s) valid" in out and "quickstart-identity (generate-identity)" in out


def test_check_writes_nothing_and_exits_0_or_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_plan(tmp_path / "good", manifest("ready", "mark-ready"))
    bad = write_plan(tmp_path / "bad", manifest("ready", "mark-ready", {"force": True}))
    before = sorted(tmp_path.rglob("*"))
    assert main(["local", "--check", str(good)]) == 0
    assert "1 task(s) valid" in capsys.readouterr().out
    assert main(["local", "--check", str(bad)]) == 2
    assert "params.force: unknown field" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_manifest_of_another_kind_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(
        tmp_path / "plan", json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    )
    assert main(["local", "--check", str(plan)]) == 2
    assert "a ConfigMap, not a NodeTask" in capsys.readouterr().err


def test_a_bad_setting_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "NODETASK_RETENTION_HOURS": "-5"}
    finished = cli("local", str(REPO / "examples"), "--home", str(new_home(tmp_path)), env=env)
    assert finished.returncode == 2
    assert "NODETASK_RETENTION_HOURS='-5': must be greater than 0" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert list((tmp_path / "home").iterdir()) == []


def test_tasks_types_wide_shows_each_params_type_default_and_whether_it_is_required(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tasks", "types", "-o", "wide"]) == 0
    lines = capsys.readouterr().out.splitlines()

    def row(task_type: str, param: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{task_type} "))
        found = next(line for line in lines[start + 1 :] if line.split()[0] == param)
        return found.split(None, 1)[1].rsplit("  ", 1)

    assert [part.strip() for part in row("await-condition", "condition")] == ["height|catchingUp", "required"]
    assert [part.strip() for part in row("await-condition", "targetHeight")] == ["integer | null", "default null"]
    assert [part.strip() for part in row("snapshot-upload", "compression")] == ["gz|lz4|zst", 'default "zst"']
    assert [part.strip() for part in row("config-patch", "files")] == ["map of object", "required"]


@pytest.mark.parametrize(
    ("argv", "abbreviated"),
    [
        (["local", "--check", "examples", "--hom", "/tmp"], "--hom"),
        (["tasks", "list", "--hom", "/tmp"], "--hom"),
        (["tasks", "types", "--out", "json"], "--out"),
        (["--log-lev=DEBUG", "version"], "--log-lev=DEBUG"),
    ],
    ids=["local", "tasks-list", "tasks-types", "global"],
)
def test_an_abbreviated_option_is_refused(
    argv: list[str], abbreviated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"unrecognized arguments: {abbreviated}" in capsys.readouterr().err


def test_the_seictl_shim_refuses_an_abbreviated_option(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.main import seictl_main

    with pytest.raises(SystemExit) as exited:
        seictl_main(["--hom", "/tmp", "serve"])
    assert exited.value.code == 2
    assert "--hom" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("SEI_LOG_LEVEL", "bogus", "Input should be 'DEBUG', 'INFO'"),
        ("SEI_SIDECAR_PORT", "http", "valid integer"),
        ("AWS_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
    ],
)
def test_seictl_serve_refuses_a_bad_variable_naming_it_without_a_traceback(
    tmp_path: Path, variable: str, value: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli.main import seictl_main

    home = new_home(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, value)
        patch.setenv("SEI_HOME", str(home))
        assert seictl_main(["serve"]) == 2
    err = capsys.readouterr().err
    assert f"{variable}={value!r}: " in err and reason in err
    assert "Traceback" not in err
    assert list(home.iterdir()) == []  # nothing opened, nothing served


def _failing_plan(tmp_path: Path) -> tuple[Path, Path]:
    """A one-task plan that fails when it runs (config-validate on a home without config files), and its home."""
    manifest = {
        "apiVersion": "sei.io/v1alpha1",
        "kind": "NodeTask",
        "metadata": {"name": "validate", "namespace": "sei"},
        "spec": {"targetPod": "node-0", "type": "config-validate", "params": {}},
    }
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps(manifest))
    home = tmp_path / "home"
    home.mkdir()
    return plan, home


@pytest.mark.slow
def test_nodetask_log_format_json_writes_each_transition_as_a_json_line_with_the_nodetask(tmp_path: Path) -> None:
    plan, home = _failing_plan(tmp_path)
    env = {**os.environ, "NODETASK_LOG_FORMAT": "JSON"}
    finished = cli("local", str(plan), "--home", str(home), "--log-level", "INFO", env=env)
    assert finished.returncode == 1, finished.stderr
    lines = [json.loads(line) for line in finished.stderr.splitlines()]  # every line is JSON
    transitions = [line for line in lines if line["logger"] == "agent.engine.transitions"]
    assert [line["event"] for line in transitions] == ["accepted", "started", "failed"]
    failed = transitions[-1]
    assert failed["level"] == "WARNING" and failed["reason"] == "ConfigMissing"
    assert (failed["namespace"], failed["name"], failed["type"], failed["run"]) == (
        "sei",
        "validate",
        "config-validate",
        1,
    )
    assert failed["task_id"] and failed["message"].startswith("task failed (ConfigMissing): ")


@pytest.mark.slow
def test_local_prints_transitions_itself_and_logs_them_only_with_an_explicit_level(tmp_path: Path) -> None:
    plan, home = _failing_plan(tmp_path)
    finished = cli("local", str(plan), "--home", str(home))
    assert finished.returncode == 1
    assert "Failed" in finished.stdout and "reason=ConfigMissing" in finished.stdout
    assert "task failed" not in finished.stderr


def test_a_bad_nodetask_log_format_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODETASK_LOG_FORMAT", "xml")
    assert main(["version"]) == 2
    assert "NODETASK_LOG_FORMAT='xml'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [(["version"], "json"), (["--log-format", "text", "version"], "text")])
def test_the_log_format_flag_wins_over_nodetask_log_format(
    argv: list[str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODETASK_LOG_FORMAT", "json")
    configured: list[str] = []
    monkeypatch.setattr("agent.cli.main.configure_logging", lambda level, fmt, **_: configured.append(fmt))
    assert main(argv) == 0
    assert configured == [expected]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_task_record_carries_its_fields_in_either_format(log_format: str) -> None:
    record = logging.LogRecord("agent.task.x", logging.INFO, __file__, 1, "hello", None, None)
    for attribute, value in {"task_id": "t-1", "namespace": "sei", "resource_name": "n-1", "reason": ""}.items():
        setattr(record, attribute, value)
    if log_format == "json":
        entry = json.loads(JsonFormatter().format(record))
        assert {key: entry[key] for key in ("message", "task_id", "namespace", "name")} == {
            "message": "hello",
            "task_id": "t-1",
            "namespace": "sei",
            "name": "n-1",
        }
        assert "reason" not in entry  # empty fields are left out
    else:
        assert TextFormatter().format(record).endswith("agent.task.x: hello task_id=t-1 namespace=sei name=n-1")


def _upload_plan(tmp_path: Path) -> Path:
    plan = tmp_path / "upload.yaml"
    plan.write_text(manifest("upload", "upload-genesis-artifacts", {"nodeName": "node-0"}))
    return plan


@pytest.mark.parametrize(
    ("env_file", "code", "expected"),
    [
        (None, 2, "params.bucket: not given, and SEI_GENESIS_BUCKET is not set"),
        ("# the pod's environment\nexport SEI_GENESIS_BUCKET='genesis'\n\nSEI_CHAIN_ID=test-1\n", 0, "1 task(s) valid"),
        ("SEI_GENESIS_BUCKET\n", 2, ":1: expected NAME=VALUE, got 'SEI_GENESIS_BUCKET'"),
    ],
)
def test_local_check_applies_the_prechecks_under_the_env_files_settings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env_file: str | None,
    code: int,
    expected: str,
) -> None:
    monkeypatch.delenv("SEI_GENESIS_BUCKET", raising=False)
    argv = ["local", "--check", str(_upload_plan(tmp_path))]
    if env_file is not None:
        (tmp_path / "pod.env").write_text(env_file)
        argv += ["--env-file", str(tmp_path / "pod.env")]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert expected in captured.out + captured.err

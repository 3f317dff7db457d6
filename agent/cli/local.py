"""`nodetask-agent local`: run NodeTask manifests from YAML files through the real engine and store, with no cluster.

Decisions (also in the README):
- The whole plan is checked before anything runs: malformed YAML, a document that is not a NodeTask, unknown fields,
  wrong types, a task type this agent does not know, a taskId that is not a UUID, params that do not fit the type,
  and two manifests that are the same task. Any problem is reported (file, document, field) and nothing is written,
  not even the store.
- Tasks run one at a time in file order, as a controller sequences them. A directory is searched recursively for
  `.yaml`/`.yml` files (hidden files and directories skipped), which run in the order of their paths relative to it,
  compared component by component (`a/02.yaml` before `b/01.yaml`; number your files and directories to order
  them); documents run in file order. The first failure stops the plan unless `--keep-going`.
- `--check` runs the plan checker alone (exit 0 valid, 2 invalid), writing nothing and needing no home: for CI.
- The node home (`--home`) must exist: a typo must not create a second, empty home and store beside the real one.
- A manifest without `spec.taskId` gets a stable ID derived from its namespace and name, so running the same files
  again recognises finished work: succeeded tasks are reported as already done and not run again. A task that failed
  earlier is reported as failed and not run again unless `--retry-failed` (the local form of a new `retryNonce`).
- The store lives in the home (`<home>/nodetask-agent.db`) unless `--db` says otherwise. Work left running by an
  interrupted invocation (Ctrl-C, kill) is resumed first, as the agent does after a restart.
- A task ID already in the store for another type or other params (a copied manifest with the same `spec.taskId`)
  fails that task with `TaskIdConflict` (exit 1); it is never reported as the stored task's success.
- Params nested deeper than 32 levels or larger than 64 KiB are a plan problem naming the file (exit 2).
- `spec.targetPod` is required by the schema (manifests stay valid for a cluster) but not interpreted locally.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from agent.engine import EventKind, TaskEvent, check_task, task_id_conflict
from agent.models import ResourceRef, RetryPolicy, Task, TaskError, TaskResult, TaskStatus
from agent.models.limits import RECURSION_LIMIT, allow_deep_json
from agent.models.params import format_validation_error
from agent.models.resource import NodeTaskManifest
from agent.models.settings import AgentSettings
from agent.runtime import AgentRuntime, FrontDoor
from agent.tasks import HandlerRegistry, default_registry

# Local task IDs: uuid5 over "<namespace>/<name>" in this namespace (an arbitrary, fixed UUID).
LOCAL_ID_NAMESPACE = uuid.UUID("9a1f6c3e-5b8d-4f0e-9c7a-2d4e6b8f0a13")

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


class PlanInvalid(Exception):
    """The manifests cannot be run as given; `problems` lists every one found."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class PlannedTask:
    source: str
    """`file:document` where the manifest came from, for messages."""
    name: str
    task: Task


def load_plan(
    paths: Iterable[Path], registry: HandlerRegistry, settings: AgentSettings | None = None
) -> list[PlannedTask]:
    """Read and check every manifest under `paths` (with `settings`, also the handlers' prechecks); raises
    PlanInvalid listing all problems, or returns the plan."""
    problems: list[str] = []
    plan: list[PlannedTask] = []
    seen: dict[str, str] = {}
    files = _manifest_files(paths, problems)
    for file in files:
        try:
            documents = [doc for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")) if doc is not None]
        except yaml.YAMLError as error:
            problems.append(f"{file}: malformed YAML: {_yaml_problem(error)}")
            continue
        except RecursionError:
            problems.append(f"{file}: nested too deeply to read (more than {RECURSION_LIMIT} levels)")
            continue
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{file}: cannot read: {error}")
            continue
        if not documents:
            problems.append(f"{file}: no NodeTask documents in the file")
        for index, document in enumerate(documents, start=1):
            where = f"{file}#{index}"
            planned = _plan_one(where, document, registry, problems, settings)
            if planned is None:
                continue
            if planned.task.id in seen:
                problems.append(f"{where}: same task as {seen[planned.task.id]} (task ID {planned.task.id})")
                continue
            assert planned.task.id is not None
            seen[planned.task.id] = where
            plan.append(planned)
    if problems:
        raise PlanInvalid(problems)
    return plan


def _manifest_files(paths: Iterable[Path], problems: list[str]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                (
                    candidate
                    for candidate in path.rglob("*")
                    if candidate.suffix in (".yaml", ".yml")
                    and candidate.is_file()
                    and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
                ),
                key=lambda candidate: candidate.relative_to(path).parts,
            )
            if not found:
                problems.append(f"{path}: no .yaml/.yml files in the directory or below it")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    return files


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)


def _plan_one(
    where: str, document: Any, registry: HandlerRegistry, problems: list[str], settings: AgentSettings | None
) -> PlannedTask | None:
    if not isinstance(document, dict):
        problems.append(f"{where}: expected a NodeTask object, got {type(document).__name__}")
        return None
    if document.get("kind") not in (None, "NodeTask"):
        problems.append(f"{where}: a {document['kind']}, not a NodeTask (local mode runs NodeTask manifests only)")
        return None
    try:
        manifest = NodeTaskManifest.model_validate(document)
    except ValidationError as error:
        described = format_validation_error(error, prefix="", model=NodeTaskManifest)
        problems.append(f"{where}: {described}")
        return None
    spec = manifest.spec
    namespace = manifest.metadata.namespace or "default"
    task_id = spec.task_id or str(uuid.uuid5(LOCAL_ID_NAMESPACE, f"{namespace}/{manifest.metadata.name}"))
    task = Task(
        id=task_id,
        type=spec.type,
        params=spec.params,
        timeout_seconds=spec.timeout_seconds,
        retry=spec.retry or RetryPolicy(),
        retry_nonce=spec.retry_nonce,
        source=ResourceRef(namespace=namespace, name=manifest.metadata.name),
    )
    try:
        canonical_id, _, _ = check_task(registry, task, settings)
    except TaskError as error:
        field = (
            "spec.taskId"
            if error.reason == "InvalidTaskID"
            else "spec.type"
            if error.reason == "UnsupportedType"
            else ""
        )
        problems.append(f"{where} ({manifest.metadata.name}): {field + ': ' if field else ''}{error}")
        return None
    return PlannedTask(where, manifest.metadata.name, task.model_copy(update={"id": canonical_id}))


class Reporter:
    """Prints what the user needs to follow a local run: each task's start, throttled progress, and outcome.

    Progress is printed when its text changes, at most once per `PROGRESS_INTERVAL` seconds per task, and the same
    text again only after `PROGRESS_REPEAT` seconds (a wait on a node that is down is one line, not one a second).
    On a terminal the progress line is rewritten in place (carriage return) and cleared before the next line."""

    PROGRESS_INTERVAL = 2.0
    PROGRESS_REPEAT = 30.0

    def __init__(
        self, out: TextIO, total: int, *, clock: Callable[[], float] = time.monotonic, tty: bool | None = None
    ):
        self.out = out
        self.total = total
        self.current: dict[str, str] = {}
        self.clock = clock
        self.tty = _isatty(out) if tty is None else tty
        self._shown: dict[str, tuple[str, float]] = {}
        """task ID -> (the progress text last shown, when)."""
        self._open_line = False
        """A progress line was rewritten in place and not yet ended (terminal only)."""

    def label(self, index: int, planned: PlannedTask) -> str:
        return f"[{index}/{self.total}] {planned.name} ({planned.task.type})"

    def on_event(self, event: TaskEvent) -> None:
        label = self.current.get(event.result.id)
        if label is None:
            return
        if event.kind is EventKind.PROGRESS and event.result.progress is not None:
            self.progress(event.result.id, f"{label}: {event.result.progress.describe()}")
        elif event.kind is EventKind.RETRYING:
            self.print(f"{label}: run {event.result.run - 1} failed ({event.result.error}); retrying")
        elif event.kind is EventKind.RESUMED:
            self.print(f"{label}: resuming work left unfinished by an interrupted run")

    def outcome(self, label: str, row: TaskResult, elapsed: float | None, previously: bool = False) -> None:
        when = "earlier" if previously else f"in {elapsed:.2f}s"
        if row.status is TaskStatus.COMPLETED:
            summary = _summary(row.result)
            self.print(f"{label}: Succeeded {when} (run {row.run}){': ' + summary if summary else ''}")
        else:
            self.print(f"{label}: {row.phase.value} {when} (run {row.run}) reason={row.reason}: {row.error}")
            if row.hint:
                self.print(f"    hint: {row.hint}")

    def progress(self, task_id: str, line: str) -> None:
        """Show `line` as `task_id`'s progress, if the throttle lets it through (see the class)."""
        now = self.clock()
        shown = self._shown.get(task_id)
        if shown is not None:
            text, at = shown
            if now - at < (self.PROGRESS_INTERVAL if line != text else self.PROGRESS_REPEAT):
                return
        self._shown[task_id] = (line, now)
        if self.tty:
            self.out.write(f"\r{line}\x1b[K")
            self.out.flush()
            self._open_line = True
        else:
            self.print(line)

    def print(self, line: str) -> None:
        if self._open_line:  # replace the progress line being rewritten
            self.out.write("\r\x1b[K")
            self._open_line = False
        print(line, file=self.out, flush=True)


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _summary(result: dict[str, Any] | None) -> str:
    if not result:
        return ""
    text = ", ".join(
        f"{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in result.items()
    )
    return text if len(text) <= 200 else text[:197] + "..."


class LocalPlan(FrontDoor):
    """The local plan as the runtime's main front door: each planned task submitted in order and awaited, its
    outcome reported (`Reporter`); SIGINT/SIGTERM (the runtime's stop) interrupts, keeping the state for the next
    invocation."""

    main = True

    def __init__(self, plan: list[PlannedTask], *, keep_going: bool, retry_failed: bool, out: TextIO) -> None:
        self.plan = plan
        self.keep_going = keep_going
        self.retry_failed = retry_failed
        self.reporter = Reporter(out, len(plan))
        self.summary = ""
        """The closing line ("N of M task(s) succeeded"), once the plan ran to its end."""

    async def start(self, runtime: AgentRuntime) -> None:
        for leftover in runtime.removed:
            self.reporter.print(f"removed {leftover}, left by an interrupted write")
        runtime.running_engine.add_listener(self.reporter.on_event)

    async def serve(self, runtime: AgentRuntime) -> int:
        engine, reporter, interrupted = runtime.running_engine, self.reporter, runtime.stop_flag
        failed = 0
        succeeded = 0
        await engine.prune()  # the retention period applies before the plan looks at earlier outcomes
        resumed = await engine.recover()
        if resumed:
            reporter.print(f"resuming {len(resumed)} task(s) left running by an interrupted run")
        for index, planned in enumerate(self.plan, start=1):
            label = reporter.label(index, planned)
            assert planned.task.id is not None
            existing = await engine.get(planned.task.id)
            conflict = None if existing is None else task_id_conflict(existing, planned.task)
            if conflict is not None:
                reporter.print(f"{label}: failed ({conflict.reason}): {conflict.message}")
                failed += 1
                if not self.keep_going:
                    break
                continue
            if existing is not None and existing.status is TaskStatus.COMPLETED:
                reporter.outcome(label, existing, None, previously=True)
                succeeded += 1
                continue
            if (
                existing is not None
                and existing.terminal
                and not (self.retry_failed and existing.status is TaskStatus.FAILED)
            ):
                reporter.outcome(label, existing, None, previously=True)
                if existing.status is TaskStatus.FAILED:
                    reporter.print("    (run again with --retry-failed to run it once more)")
                failed += 1
                if not self.keep_going:
                    break
                continue
            reporter.current[planned.task.id] = label
            reporter.print(f"{label}: started")
            started = time.monotonic()
            await engine.submit(planned.task, retry=self.retry_failed)
            waiting = asyncio.create_task(engine.wait(planned.task.id))
            stop = asyncio.create_task(interrupted.wait())
            await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
            if interrupted.is_set():
                waiting.cancel()
                reporter.print(f"{label}: interrupted; its state is kept, run the same command again to resume")
                return EXIT_INTERRUPTED
            stop.cancel()
            row = waiting.result()
            reporter.outcome(label, row, time.monotonic() - started)
            if row.status is TaskStatus.COMPLETED:
                succeeded += 1
            else:
                failed += 1
                if not self.keep_going:
                    break
        self.summary = f"{succeeded} of {len(self.plan)} task(s) succeeded" + (f", {failed} failed" if failed else "")
        return EXIT_FAILED if failed else EXIT_OK


async def run_plan(
    plan: list[PlannedTask],
    settings: AgentSettings,
    registry: HandlerRegistry,
    *,
    keep_going: bool = False,
    retry_failed: bool = False,
    out: TextIO,
) -> int:
    """Run a checked plan in the agent runtime; returns the process exit code. The home must exist (the CLI checks
    it). One runner per home and store: a live agent's home is refused (exit 1, naming the holder)."""
    door = LocalPlan(plan, keep_going=keep_going, retry_failed=retry_failed, out=out)
    runtime = AgentRuntime(
        settings,
        [door],
        registry=registry,
        say=lambda message: print(f"nodetask-agent local: {message}", file=out, flush=True),
    )
    code = await runtime.run()
    if door.summary:
        door.reporter.print(door.summary)  # after the stop, as the last line
    return code


def check(
    paths: list[Path],
    *,
    settings: AgentSettings | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`local --check`: the plan checker alone. Exit 0 and a summary when every manifest would run, else 2 and every
    problem; nothing is run or written. With `settings` (the environment, or `--env-file`'s), the handlers'
    prechecks too: what would fail `ParamsInvalid` only under these settings is reported here."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        plan = load_plan(paths, default_registry(), settings)
    except PlanInvalid as invalid:
        _print_problems(invalid, err, "nothing was run")
        return EXIT_INVALID
    print(f"nodetask-agent local --check: {len(plan)} task(s) valid", file=out)
    for planned in plan:
        print(f"  {planned.source}: {planned.name} ({planned.task.type})", file=out)
    return EXIT_OK


def _print_problems(invalid: PlanInvalid, err: TextIO, outcome: str) -> None:
    print(f"nodetask-agent local: {len(invalid.problems)} problem(s); {outcome}:", file=err)
    for problem in invalid.problems:
        print(f"  {problem}", file=err)


def main(
    paths: list[Path],
    settings: AgentSettings,
    *,
    keep_going: bool = False,
    retry_failed: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    registry = default_registry()
    allow_deep_json()  # a deep manifest must be reported (exit 2, naming the file), not crash the reader
    try:
        plan = load_plan(paths, registry, settings)
    except PlanInvalid as invalid:
        _print_problems(invalid, err, "nothing was run")
        return EXIT_INVALID
    print(
        f"nodetask-agent local: {len(plan)} task(s), home {settings.home}, store {settings.store_path}",
        file=out,
        flush=True,
    )
    return asyncio.run(run_plan(plan, settings, registry, keep_going=keep_going, retry_failed=retry_failed, out=out))

"""The Dockerfile, checked statically (no container engine here): multi-stage, pinned base, non-root, entrypoint
`nodetask-agent`, no build tools in the final stage; and the build context it copies really builds the package."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PINNED_TAG = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*$")  # an exact release, e.g. python:3.11.13-slim-bookworm
PINNED_DIGEST = re.compile(r"^[\w./:-]+@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|cc|make|build-essential|pip3? install|pip wheel)\b")
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|rustc|cargo|gfortran)\b")
APT_INSTALL = re.compile(r"apt-get install ([^&;)]*)")
PIP_INSTALL = re.compile(r"pip install ([^&;]*)")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def of(self, keyword: str) -> list[str]:
        return [argument for instruction, argument in self.instructions if instruction == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions (continuation lines joined, comments dropped; global `ARG`s before the first
    FROM are substituted into FROM lines with their defaults)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line in logical:
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = argument.strip().partition("=")
            global_args[name] = re.sub(r"\$\{(\w+)\}", lambda match: global_args[match.group(1)], default)
            continue
        if keyword == "FROM":
            argument = re.sub(r"\$\{(\w+)\}", lambda match: global_args[match.group(1)], argument)
            parts = argument.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, argument.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def resolve(stages: list[Stage], stage: Stage) -> Stage:
    """The stage an image is built FROM in the end (following `FROM <earlier stage>`)."""
    names = {s.name: s for s in stages if s.name}
    while stage.base in names:
        stage = names[stage.base]
    return stage


def test_build_is_multi_stage(stages: list[Stage]) -> None:
    final = stages[-1]

    assert len(stages) >= 3
    assert any("--from=" in copy for copy in final.of("COPY")), "the final stage copies a result, never builds"


def test_every_external_base_is_pinned(stages: list[Stage]) -> None:
    names = {stage.name for stage in stages if stage.name}
    external = [stage.base for stage in stages if stage.base not in names]

    assert external, "no external base image"
    for base in external:
        tag, _, _ = base.partition("@")
        assert PINNED_DIGEST.match(base), f"{base} is not pinned to a digest"
        assert PINNED_TAG.match(tag), f"{tag}: the digest's tag must name an exact release (readable, refreshable)"


def test_the_image_says_where_it_comes_from(stages: list[Stage]) -> None:
    labels = " ".join(stages[-1].of("LABEL"))
    for key, argument in (("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")):
        assert f'org.opencontainers.image.{key}="${{{argument}}}"' in labels
        assert any(value.startswith(f"{argument}=") for value in stages[-1].of("ARG"))


def test_final_stage_is_the_bare_base_with_no_build_tools(stages: list[Stage]) -> None:
    final = stages[-1]
    build = next(stage for stage in stages if stage.name == "build")

    assert resolve(stages, final).instructions == [], "the final stage must start from the untouched base"
    for command in final.of("RUN"):
        assert not BUILD_TOOLS.search(command), f"build tooling in the final stage: {command}"
    assert any(BUILD_TOOLS.search(command) for command in build.of("RUN")), "the build stage installs the agent"
    assert any("rm -rf pip" in command for command in final.of("RUN")), "the base's own pip is removed"


def test_no_stage_installs_a_compiler_or_builds_a_dependency_from_source(stages: list[Stage]) -> None:
    installs = [found for stage in stages for command in stage.of("RUN") for found in PIP_INSTALL.findall(command)]

    for stage in stages:
        for command in stage.of("RUN"):
            assert not COMPILERS.search(command), f"a toolchain in stage {stage.name}: {command}"
            for packages in APT_INSTALL.findall(command):
                assert [word for word in packages.split() if not word.startswith("-")] == ["binutils"], command
    assert installs, "no pip install found: the check would prove nothing"
    for arguments in installs:
        assert "--no-deps" in arguments or ("--only-binary=:all:" in arguments and "-c constraints.txt" in arguments), (
            f"pip install {arguments}: dependencies come from pinned wheels only"
        )


def test_final_stage_runs_as_uid_65532_and_its_entrypoint_is_the_agent(stages: list[Stage]) -> None:
    final = stages[-1]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]

    assert final.of("USER")[-1].split(":")[0] == "65532"
    keywords = [keyword for keyword, _ in final.instructions]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert all(keyword not in ("RUN", "COPY", "ADD") for keyword in keywords[last_user:]), "nothing runs as root after"
    assert final.of("ENTRYPOINT") == ['["nodetask-agent"]']
    assert "nodetask-agent" in scripts
    assert final.of("CMD") == ['["run"]']


def test_runtime_writes_nothing_outside_mounted_volumes(stages: list[Stage]) -> None:
    environment = " ".join(stages[-1].of("ENV"))

    assert "PYTHONDONTWRITEBYTECODE=1" in environment
    assert "HOME=/tmp" in environment
    assert any("compileall" in command for stage in stages for command in stage.of("RUN"))


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins, `!` lets a path back in (patterns of this file only)."""
    allowed = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path] + [str(parent) for parent in Path(path).parents if str(parent) != "."]
        matched = any(
            fnmatch.fnmatch(candidate, pattern) or fnmatch.fnmatch(candidate, pattern.replace("**/", ""))
            for candidate in candidates
        )
        if matched:
            allowed = negated
    return allowed


def copied_sources(stages: list[Stage]) -> list[str]:
    sources = []
    for stage in stages:
        for copy in stage.of("COPY"):
            if "--from=" in copy:
                continue
            sources.extend(copy.split()[:-1])
    return sources


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_else(stages: list[Stage]) -> None:
    sources = copied_sources(stages)

    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert dockerignore_allows(source), f"COPY {source}: excluded by .dockerignore"
    for excluded in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "crds/nodetasks.sei.io.yaml",
                     "agent/__pycache__/x.pyc", "nodetask-agent.db"):  # fmt: skip
        assert not dockerignore_allows(excluded), f"{excluded} would reach the build context"


@pytest.mark.slow
def test_build_context_builds_a_wheel_with_the_entrypoint(stages: list[Stage], tmp_path: Path) -> None:
    # The build stage's `pip wheel .` on exactly the files the Dockerfile copies (dependencies aside: no network).
    context = tmp_path / "context"
    for source in copied_sources(stages):
        origin = REPO_ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(origin, context / source)
    wheels = tmp_path / "wheels"

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(wheels), "."],
        cwd=context, check=True, capture_output=True, timeout=240,
    )  # fmt: skip

    (wheel,) = wheels.glob("nodetask_agent-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert re.search(r"^nodetask-agent = agent\.cli\.main:main$", entry_points, re.MULTILINE)
    assert "agent/py.typed" in names and "agent/operator/crd.py" in names

"""constraints.txt pins every package: it covers each requirement of pyproject.toml (runtime and every extra) with a
version inside the declared range, and the environment the tests run in (made by scripts/setup.sh, as in CI) holds
exactly those versions. The image's own check is in test_image_run.py."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO_ROOT

CONSTRAINTS = REPO_ROOT / "constraints.txt"
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
SELF = canonicalize_name(PROJECT["name"])


def pins() -> dict[str, str]:
    """{canonical name: version} of constraints.txt; every line that is not a comment is `name==version`."""
    pinned: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line.strip())
        assert match, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        name = canonicalize_name(match.group(1))
        assert name not in pinned, f"constraints.txt pins {name} twice"
        pinned[name] = match.group(2)
    return pinned


def requirements() -> list[Requirement]:
    declared = list(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        declared.extend(extra)
    parsed = [Requirement(text) for text in declared]
    return [
        req for req in parsed if canonicalize_name(req.name) != SELF and (req.marker is None or req.marker.evaluate())
    ]


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_requirement_is_pinned_inside_its_declared_range(requirement: Requirement) -> None:
    pinned = pins()
    name = canonicalize_name(requirement.name)

    assert name in pinned, f"{requirement} is not in constraints.txt (refresh it: scripts/lock.sh)"
    assert requirement.specifier.contains(pinned[name], prereleases=True), (
        f"constraints.txt pins {name}=={pinned[name]}, outside pyproject.toml's {requirement}"
    )


def test_the_test_environment_has_exactly_the_pinned_versions() -> None:
    pinned = pins()
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if canonicalize_name(dist.metadata["Name"]) != SELF
    }

    assert {name: version for name, version in installed.items() if pinned.get(name) != version} == {}, (
        "installed versions differ from constraints.txt: run scripts/setup.sh test"
    )
    assert set(pinned) - set(installed) == set(), "pinned packages missing from the test environment"

"""Fixtures of the fault suite (tests/faults): a small tmpfs volume, and the operator tier's agents."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.kit import Volume
from tests.operator.agents import agents

__all__ = ["agents", "store_volume"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here belongs to the fault suite (`pytest -m faults` runs it alone)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def store_volume(tmp_path: Path) -> Iterator[Volume]:
    """A 4 MiB tmpfs (tests run as root here; elsewhere skipped, and failed under CI=true)."""
    mount_point = tmp_path / "volume"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "nodetask-faults", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        message = f"cannot mount a tmpfs (needs root): {result.stderr.strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield Volume(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)

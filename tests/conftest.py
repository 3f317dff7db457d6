"""Shared pytest configuration. Fixture modules live in tests/fixtures/ and are registered here.

Speed tiers: `pytest -m "not slow"` is the inner loop (models, engine, store, CLI and the quick handler tests). A test
is `slow` when it takes more than about 2.5 s on the 2-core development machine (marked where it is written; check
with the `--durations` table scripts/test.sh prints), and every test of the real Kubernetes and chain tiers is slow
by definition (marked here), since each one drives real processes.
"""

import pytest

pytest_plugins = [
    "tests.fixtures.ports",  # first: other fixture modules import it
    "tests.fixtures.common",
    "tests.fixtures.s3",
    "tests.fixtures.versitygw",
    "tests.fixtures.ceremony",
    "tests.fixtures.kube",
    "tests.fixtures.faultproxy",
    "tests.fixtures.httpfaults",
    "tests.fixtures.cometbft",
    "tests.fixtures.ec2",
    "tests.fixtures.dns",
    "tests.fixtures.chain",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(tier) for tier in ("kube", "chain", "image")):
            item.add_marker(pytest.mark.slow)

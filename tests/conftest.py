"""Shared pytest configuration. Fixture modules live in tests/fixtures/ and are registered here.

Speed tiers: `pytest -m "not slow"` is the inner loop (models, engine, store, CLI and the quick handler tests). A test
is `slow` when it takes more than about 2.5 s on the 2-core development machine (marked where it is written; check
with the `--durations` table scripts/test.sh prints), and every test of the real Kubernetes and chain tiers is slow
by definition (marked here), since each one drives real processes.

The seid tier (`tests/seid_real/`) is collected only where it can run: `NODETASK_SEID_BINARY` names an executable and
`CI` is not `true` (CI cannot build seid). Elsewhere it is left out of the run, not reported as skipped tests, and the
report header says why.
"""

import os

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


def _seid_tier_absent() -> str:
    """Why the seid tier cannot run here, or "" when it can."""
    if os.environ.get("CI", "").lower() == "true":
        return "not collected under CI=true (seid cannot be built in CI; recorded seid output covers it)"
    binary = os.environ.get("NODETASK_SEID_BINARY", "")
    if not binary or not os.access(binary, os.X_OK):
        return "not collected: NODETASK_SEID_BINARY does not name an executable seid (docs/chain-fidelity.md)"
    return ""


collect_ignore = ["seid_real"] if _seid_tier_absent() else []


def pytest_report_header() -> list[str]:
    absent = _seid_tier_absent()
    return [f"seid tier: {absent}"] if absent else []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(tier) for tier in ("kube", "chain", "image")):
            item.add_marker(pytest.mark.slow)

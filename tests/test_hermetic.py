"""The suite's own hygiene: no poll loop waits without a deadline (a hang costs 300 s and says nothing).

A `while` loop in a test or fixture that sleeps (`time.sleep`, `asyncio.sleep`) is a poll loop; it must be bounded:
its condition or body refers to a deadline (`deadline`, `time.monotonic()`, a `timeout`), or it is rewritten with
`tests/fixtures/waiting.py` (`wait_until` / `poll_until`), which also stops waiting when the awaited work has ended.
A loop that is bounded some other way says so on its `while` line: `# no-deadline: <why it still ends>`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
BOUNDS = ("deadline", "monotonic", "timeout")
"""Names whose presence in a poll loop shows that it is bounded."""
NOT_TESTS = {TESTS / "chain" / "standin.py"}
"""Programs the tests run as subprocesses (a stand-in seid that idles until killed), not test code."""


def _sleeps(node: ast.AST) -> bool:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call):
            func = inner.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name == "sleep":
                return True
    return False


def _names(node: ast.AST) -> set[str]:
    found = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name):
            found.add(inner.id)
        elif isinstance(inner, ast.Attribute):
            found.add(inner.attr)
        elif isinstance(inner, ast.keyword) and inner.arg:
            found.add(inner.arg)
    return found


def unbounded_poll_loops(source: str) -> list[int]:
    """Line numbers of `while` loops that sleep and refer to no deadline."""
    lines: list[int] = []
    if "while" not in source:
        return lines
    text = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.While) and _sleeps(node) and "# no-deadline: " not in text[node.lineno - 1]:
            names = {name.lower() for name in _names(node)}
            if not any(bound in name for name in names for bound in BOUNDS):
                lines.append(node.lineno)
    return lines


def test_every_poll_loop_in_the_tests_has_a_deadline() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in NOT_TESTS
        for line in unbounded_poll_loops(path.read_text())
    ]
    assert offenders == [], "poll loops without a deadline (use tests/fixtures/waiting.py): " + ", ".join(offenders)


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("while not done():\n    time.sleep(0.1)\n", True),
        ("async def f():\n    while not done():\n        await asyncio.sleep(0.1)\n", True),
        ("while time.monotonic() < deadline:\n    time.sleep(0.1)\n", False),
        ("while True:\n    if time.monotonic() > deadline:\n        raise X\n    time.sleep(1)\n", False),
        ("while chunk := read():\n    write(chunk)\n", False),
        ("while not done():  # no-deadline: the engine cancels it\n    time.sleep(0.1)\n", False),
    ],
)
def test_the_check_tells_bounded_from_unbounded_loops(source: str, flagged: bool) -> None:
    assert bool(unbounded_poll_loops(source)) is flagged

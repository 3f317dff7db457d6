"""Replay of the Go sidecar's recorded answers (`tests/fixtures/seictl/<commit>/`) against the agent's `seictl serve`.

Each recording is one scripted controller session (`scripts/record-seictl.py`) run against the original, built from
the commit its README names. Here every request is sent again, in order, to the agent on a fresh home, and its answer
must equal the original's: status code, content type and body, byte for byte for JSON bodies (they are encoded as Go
encodes them) except for values that differ by nature (timestamps, node IDs: their format is checked instead).
Where the agent differs on purpose, `tests/fixtures/seictl/differences.json` says what the agent answers instead and
names the row of docs/migrating-from-seictl.md that documents it; a difference without a row fails the test.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from agent.models.settings import AgentSettings
from tests.server.test_seictl_api import InProcessAgent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "seictl"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-seictl.md"
GO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
NODE_ID = re.compile(r"^[0-9a-f]{40}$")
POLL_SECONDS = 30.0


def _recordings() -> list[Path]:
    return sorted(FIXTURES.glob("*/exchanges*.json"))


def _differences() -> dict[str, dict[str, Any]]:
    listed = json.loads((FIXTURES / "differences.json").read_text())["differences"]
    return {entry["exchange"]: entry for entry in listed}


def test_every_documented_difference_points_at_a_row_of_the_migration_guide() -> None:
    rows = set(re.findall(r"^\| (D\d+) \|", GUIDE.read_text(), flags=re.MULTILINE))
    for name, entry in _differences().items():
        assert entry["row"] in rows, f"{name}: {entry['row']} is not a row of {GUIDE.name}"
        assert entry.get("why"), name


def _normalised(body: Any) -> Any:
    """Values that differ by nature replaced by their kind, after checking their format."""
    if isinstance(body, dict):
        out = {}
        for key, value in body.items():
            if key in ("submittedAt", "completedAt"):
                assert isinstance(value, str) and GO_TIME.match(value), (key, value)
                out[key] = "<time>"
            elif key == "nodeId":
                assert isinstance(value, str) and NODE_ID.match(value), value
                out[key] = "<node id>"
            else:
                out[key] = _normalised(value)
        return out
    if isinstance(body, list):
        return [_normalised(item) for item in body]
    return body


def _drop(body: Any, fields: list[str]) -> Any:
    if isinstance(body, list):
        return [_drop(item, fields) for item in body]
    if isinstance(body, dict):
        return {key: value for key, value in body.items() if key not in fields}
    return body


async def _send(session: aiohttp.ClientSession, request: dict[str, Any]) -> dict[str, Any]:
    headers = request.get("headers", {})
    pairs = [tuple(pair) for pair in headers] if isinstance(headers, list) else list(headers.items())
    data = None
    if request["method"] == "POST":
        data = request["raw"].encode() if "raw" in request else json.dumps(request.get("body")).encode()
    multi = CIMultiDict(pairs)
    if data is not None:
        multi["Content-Type"] = "application/json"
    async with session.request(request["method"], request["path"], data=data, headers=multi) as response:
        return {
            "status": response.status,
            "contentType": response.headers.get("Content-Type", ""),
            "body": (await response.read()).decode(),
        }


def _mismatch(name: str, ours: dict[str, Any], original: dict[str, Any], difference: dict[str, Any] | None) -> str:
    """Why our answer is not the original's (nor the documented difference); "" when it is."""
    if difference is not None and "status" in difference.get("ours", {}):
        expected = difference["ours"]
        if ours["status"] != expected["status"] or not re.search(expected["bodyMatches"], ours["body"]):
            return f"{name} ({difference['row']}): expected {expected}, got {ours}"
        return ""
    if (ours["status"], ours["contentType"]) != (original["status"], original["contentType"]):
        return f"{name}: {ours['status']} {ours['contentType']!r} {ours['body'][:300]!r}, original {original}"
    if not original["contentType"].startswith("application/json"):
        same = ours["body"] == original["body"]
        return "" if same else f"{name}: body {ours['body']!r}, original {original['body']!r}"
    rules = (difference or {}).get("ours", {})
    ours_body, original_body = _normalised(json.loads(ours["body"])), _normalised(json.loads(original["body"]))
    if rules.get("withoutOriginalIds"):
        original_body = [row for row in original_body if row.get("id") not in rules["withoutOriginalIds"]]
    if rules.get("withoutOurIds"):
        ours_body = [row for row in ours_body if row.get("id") not in rules["withoutOurIds"]]
    if rules.get("errorContainsOriginal"):
        if isinstance(ours_body, list) and len(ours_body) != len(original_body):
            return f"{name}: {len(ours_body)} rows, original {len(original_body)}"
        pairs = (
            zip(ours_body, original_body, strict=True) if isinstance(ours_body, list) else [(ours_body, original_body)]
        )
        for mine, theirs in pairs:
            if "error" in theirs and theirs["error"] not in str(mine.get("error", "")):
                return f"{name}: error {mine.get('error')!r} does not hold the original's {theirs['error']!r}"
    ignored = list(rules.get("ignore", [])) + (["error"] if rules.get("errorContainsOriginal") else [])
    ours_body, original_body = _drop(ours_body, ignored), _drop(original_body, ignored)
    if ours_body != original_body:
        return f"{name}: {json.dumps(ours_body)[:600]} != original {json.dumps(original_body)[:600]}"
    exact = not rules and "<time>" not in json.dumps(ours_body) and "<node id>" not in json.dumps(ours_body)
    if exact and ours["body"] != original["body"]:
        return f"{name}: same content, other bytes: {ours['body']!r} != {original['body']!r}"
    return ""


@pytest.mark.slow
@pytest.mark.parametrize("recording", _recordings(), ids=lambda path: f"{path.parent.name}/{path.name}")
async def test_the_agent_answers_each_recorded_request_as_the_original(
    recording: Path, tmp_path: Path, refused_port: Callable[..., int]
) -> None:
    document = json.loads(recording.read_text())
    differences = _differences()
    home = tmp_path / "sei"
    home.mkdir()
    settings = AgentSettings(
        home=home,
        chain_id="replay-1",
        pod_name="node-0-0",
        # The recording's environment, with real bucket names (it had `g` and `s`, which the agent refuses at submit
        # as S3 bucket names; any valid name gets the original's answer); nothing answers at the node's RPC or S3
        # (the tasks submitted last need both).
        genesis_bucket="genesis-bucket",
        genesis_region="us-east-1",
        snapshot_bucket="snapshot-bucket",
        snapshot_region="us-east-1",
        rpc_endpoint=f"http://127.0.0.1:{refused_port()}",
        s3_endpoint_url=f"http://127.0.0.1:{refused_port()}",
        seictl_api=True,
        authn_mode="trusted-header" if document["trustedHeader"] else "unauthenticated",
    ).model_copy(update={"http_port": 0})
    agent = InProcessAgent(settings)
    url = await agent.start()
    problems: list[str] = []
    try:
        async with aiohttp.ClientSession(base_url=url) as session:
            for exchange in document["exchanges"]:
                name = exchange["name"]
                ours = await _send(session, exchange["request"])
                if name.endswith("/final"):
                    deadline = time.monotonic() + POLL_SECONDS
                    while ours["status"] == 200 and json.loads(ours["body"]).get("status") == "running":
                        assert time.monotonic() < deadline, name
                        await asyncio.sleep(0.1)
                        ours = await _send(session, exchange["request"])
                problems.append(_mismatch(name, ours, exchange["response"], differences.get(name)))
    finally:
        await agent.close()
    failing = [problem for problem in problems if problem]
    assert not failing, "\n".join(failing)

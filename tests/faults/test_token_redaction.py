"""Token-shaped values under neutral key names (F7, docs/reliability.md): Bearer tokens, JSON Web Tokens and hex
HMACs were shown in `/v0/tasks` because only secret-looking *keys* were masked. Now the value's shape is enough,
whatever the key; public digests and IDs (`txHash`, `nodeId`, `sha256`...) stay visible, since results hold them.
One table through `redact` (what /v0/tasks, the seictl API, NodeTask status and Events all use), then the same values
end to end through both task APIs over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.engine import Engine
from agent.models import Task
from agent.models.redaction import REDACTED, redact
from agent.models.settings import AgentSettings
from agent.server import AgentMetrics, AgentServer
from agent.store import SqliteStore
from agent.tasks import default_registry

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJvcGVyYXRvciJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
HMAC_HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
HMAC_SHA1 = "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
BEARER = "Bearer 8f2a1c9e-token.Value_42"

MASKED = [
    ({"header": BEARER}, {"header": f"Bearer {REDACTED}"}),
    ({"note": f"curl -H 'Authorization: {BEARER}' https://x"}, None),
    ({"value": JWT}, {"value": REDACTED}),
    ({"text": f"session {JWT} expired"}, {"text": f"session {REDACTED} expired"}),
    ({"x": HMAC_HEX}, {"x": REDACTED}),
    ({"mac": HMAC_SHA1.upper()}, {"mac": REDACTED}),
    ({"header": f"X-Hub-Signature-256: sha256={HMAC_HEX}"}, {"header": f"X-Hub-Signature-256: {REDACTED}"}),
    ({"header": f"delivery sha256={HMAC_HEX}"}, {"header": f"delivery sha256={REDACTED}"}),
    ({"items": [JWT, HMAC_HEX, BEARER]}, {"items": [REDACTED, REDACTED, f"Bearer {REDACTED}"]}),
    ({"deep": {"deeper": {"v": HMAC_HEX}}}, {"deep": {"deeper": {"v": REDACTED}}}),
    ({"hmac": "anything at all"}, {"hmac": REDACTED}),
]
KEPT = [
    {"txHash": HMAC_HEX},
    {"nodeId": HMAC_SHA1},
    {"sha256": HMAC_HEX, "expectedGenesisHash": HMAC_HEX, "trustHash": HMAC_HEX.upper()},
    {"consensusPubKey": HMAC_HEX, "consensusAddress": HMAC_SHA1.upper()},
    {"nodeIds": [HMAC_SHA1], "peers": [f"{HMAC_SHA1}@node-1:26656"]},
    {"message": "Bearer authentication failed", "moniker": "Bearer"},
    {"color": "ffaa00", "height": "1234567890"},
]


@pytest.mark.parametrize(("value", "expected"), MASKED, ids=[str(next(iter(v))) for v, _ in MASKED])
def test_token_shaped_values_are_masked_whatever_the_key(value: dict[str, Any], expected: Any) -> None:
    masked = redact(value)
    if expected is not None:
        assert masked == expected
    text = json.dumps(masked)
    for secret in (JWT, HMAC_HEX, HMAC_SHA1, HMAC_SHA1.upper(), "8f2a1c9e-token.Value_42"):
        assert secret not in text


@pytest.mark.parametrize("value", KEPT, ids=[str(next(iter(v))) for v in KEPT])
def test_public_digests_ids_and_prose_stay_visible(value: dict[str, Any]) -> None:
    assert redact(value) == value


async def test_tokens_under_neutral_keys_never_reach_either_task_api(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('moniker = "node-0"\n')
    settings = AgentSettings(home=tmp_path)
    engine = Engine(default_registry(), SqliteStore(settings.store_path), settings)
    patch = {"files": {"config.toml": {"a": BEARER, "b": JWT, "c": HMAC_HEX}}}
    task_id = await engine.submit(Task(type="config-patch", params=patch))
    await engine.wait(task_id, timeout=20)
    server = AgentServer(engine, AgentMetrics(), host="127.0.0.1", port=0, seictl_settings=settings)
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url) as session:
            for path in ("/v0/tasks", f"/v0/tasks/{task_id}", "/nodetask/v0/tasks", f"/nodetask/v0/tasks/{task_id}"):
                async with session.get(path) as answer:
                    assert answer.status == 200
                    text = await answer.text()
                assert task_id in text
                for secret in ("8f2a1c9e-token.Value_42", JWT, HMAC_HEX):
                    assert secret not in text, f"{path} shows {secret[:12]}..."
    finally:
        await server.stop()
        await engine.shutdown()
        await engine.store.close()

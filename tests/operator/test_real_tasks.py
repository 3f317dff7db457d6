"""Shipped task types end to end through the agent (default registry): a long real task and a secret-making one."""

from __future__ import annotations

import json
import logging
import re

import pytest

from agent.tasks import default_registry
from tests.fixtures.cometbft import FakeCometBFT
from tests.fixtures.waiting import poll_until
from tests.operator.agents import AgentFactory
from tests.operator.kit import kubectl_wait, nodetask, status_of, table, wait_status

pytestmark = pytest.mark.kube


def test_await_condition_reports_block_progress_until_the_chain_reaches_the_height(
    agents: AgentFactory, cometbft: FakeCometBFT
) -> None:
    pod = agents.pod("node-0")
    pod.extra_env["SEI_RPC_ENDPOINT"] = cometbft.url
    agents.thread(pod, default_registry())
    target = cometbft.height + 40
    pod.ns.apply(
        nodetask(
            "sync",
            "node-0",
            "await-condition",
            {"condition": "height", "targetHeight": target, "pollIntervalSeconds": 0.1},
        )
    )

    running = wait_status(pod.ns, "sync", lambda s: bool(s.get("progress", {}).get("summary")), what="block progress")
    assert running["progress"]["unit"] == "blocks" and running["progress"]["total"] == target
    [row] = table(pod.ns.kubectl("get", "nodetasks").stdout)
    assert re.match(rf"\d+/{target} blocks", row["PROGRESS"])

    cometbft.advance(40)
    kubectl_wait(pod.ns, "sync", "Succeeded")
    assert status_of(pod.ns, "sync")["result"]["height"] >= target


def test_generate_identity_keeps_private_keys_out_of_status_events_logs_and_http(
    agents: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pod = agents.pod("node-0")
    agents.thread(pod, default_registry())
    pod.ns.apply(nodetask("identity", "node-0", "generate-identity", {"chainId": "test-chain", "moniker": "node-0"}))

    kubectl_wait(pod.ns, "identity", "Succeeded")

    secrets = [
        json.loads((pod.home / "config" / "priv_validator_key.json").read_text())["priv_key"]["value"],
        json.loads((pod.home / "config" / "node_key.json").read_text())["priv_key"]["value"],
    ]
    status = status_of(pod.ns, "identity")
    assert status["result"]  # public identity only: node ID, address, public key
    events = poll_until(
        lambda: (lambda items: items if len(items) >= 3 else None)(
            [
                e
                for e in pod.ns.cluster.get_json("events", namespace=pod.ns.name)["items"]
                if e["involvedObject"]["name"] == "identity"
            ]
        ),
        what="the Events",
        timeout=15,
    )
    http_view = pod.http(f"/v0/tasks/{status['taskId']}")[1]
    exposed = {
        "status": json.dumps(status),
        "events": json.dumps(events),
        "http": json.dumps(http_view),
        "logs": caplog.text,
    }
    for secret in secrets:
        for part in (secret, secret[:24], secret[-24:]):  # the base64 value or any long piece of it
            for where, text in exposed.items():
                assert part not in text, f"private key material in {where}"

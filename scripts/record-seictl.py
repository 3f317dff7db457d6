#!/usr/bin/env python3
"""Record the Go sidecar's HTTP answers to the controller's calls, for the replay test (`test_seictl_replay.py`).

Drives a running sidecar (the original `seictl serve`, or anything answering its API) at `--url` with one scripted
session and writes every request with the answer it got to `<out>/exchanges.json` (with the commit; the README there
says how the sidecar was run). It builds nothing and needs only the Python standard library.

How to record (one sidecar per mode, each on a fresh, empty home; recordings go to tests/fixtures/seictl/<commit>/):

    SEI_HOME=$(mktemp -d) SEI_CHAIN_ID=replay-1 SEI_GENESIS_BUCKET=g SEI_GENESIS_REGION=us-east-1 \\
      SEI_SNAPSHOT_BUCKET=s SEI_SNAPSHOT_REGION=us-east-1 seictl serve --port 7777 &
    scripts/record-seictl.py --url http://127.0.0.1:7777 --commit <seictl commit> --out tests/fixtures/seictl/<commit>
    # again with SEI_SIDECAR_AUTHN_MODE=trusted-header and --trusted-header (adds the 401 cases; "trusted" file names)

The script is the scenario: the bodies are the ones the client's builders send (seictl `sidecar/client`, v0.0.26 and
HEAD), in the controller's order (probe, identity, node ID, config, readiness), then error cases. Task IDs are fixed
UUIDs so that a replay sends the same requests. A task submission is followed by polling `GET /v0/tasks/{id}` until
it is no longer `running`; the final answer is recorded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

CHAIN_ID = "replay-1"
POLL_SECONDS = 60.0


def _id(number: int) -> str:
    return f"5e1c7a00-0000-4000-8000-{number:012d}"


def scenario(trusted: bool) -> list[dict[str, Any]]:
    """The scripted session: each step is a request; `"wait": true` polls the task to its end and records that."""
    patch = {"files": {"config.toml": {"moniker": "replayed"}}}
    steps: list[dict[str, Any]] = [
        {"name": "healthz-before-mark-ready", "method": "GET", "path": "/v0/healthz"},
        {"name": "node-id-before-identity", "method": "GET", "path": "/v0/node-id"},
        {"name": "status", "method": "GET", "path": "/v0/status"},
        {
            "name": "generate-identity",
            "method": "POST",
            "path": "/v0/tasks",
            "body": {"id": _id(1), "type": "generate-identity", "params": {"chainId": CHAIN_ID, "moniker": "node-0"}},
            "wait": True,
        },
        {"name": "node-id", "method": "GET", "path": "/v0/node-id"},
        {
            "name": "config-patch",
            "method": "POST",
            "path": "/v0/tasks",
            "body": {"id": _id(2), "type": "config-patch", "params": patch},
            "wait": True,
        },
        {
            "name": "config-patch-same-id-again",
            "method": "POST",
            "path": "/v0/tasks",
            "body": {"id": _id(2), "type": "config-patch", "params": patch},
        },
        {
            "name": "config-patch-same-id-other-params",
            "method": "POST",
            "path": "/v0/tasks",
            "body": {"id": _id(2), "type": "config-patch", "params": {"files": {"app.toml": {"halt-height": 0}}}},
        },
        {
            "name": "config-patch-without-files",
            "method": "POST",
            "path": "/v0/tasks",
            "body": {"id": _id(3), "type": "config-patch"},
            "wait": True,
        },
        {
            "name": "mark-ready",
            "method": "POST",
            "path": "/v0/tasks",
            "body": {"id": _id(4), "type": "mark-ready"},
            "wait": True,
        },
        {"name": "healthz-after-mark-ready", "method": "GET", "path": "/v0/healthz"},
        {
            "name": "mark-not-ready",
            "method": "POST",
            "path": "/v0/tasks",
            "body": {"id": _id(5), "type": "mark-not-ready"},
            "wait": True,
        },
        {"name": "healthz-after-mark-not-ready", "method": "GET", "path": "/v0/healthz"},
        {
            "name": "gov-vote-without-keyring",
            "method": "POST",
            "path": "/v0/tasks",
            "body": {
                "id": _id(6),
                "type": "gov-vote",
                "params": {
                    "chainId": CHAIN_ID,
                    "keyName": "node_admin",
                    "proposalId": 1,
                    "option": "yes",
                    "fees": "4000usei",
                    "gas": 200000,
                },
            },
            "wait": True,
        },
        {"name": "unknown-type", "method": "POST", "path": "/v0/tasks", "body": {"type": "no-such-task"}},
        {"name": "missing-type", "method": "POST", "path": "/v0/tasks", "body": {"params": {}}},
        {"name": "malformed-body", "method": "POST", "path": "/v0/tasks", "raw": "{not json"},
        {"name": "malformed-id", "method": "POST", "path": "/v0/tasks", "body": {"id": "nope", "type": "mark-ready"}},
        {"name": "get-unknown-task", "method": "GET", "path": f"/v0/tasks/{_id(999)}"},
        {"name": "delete-unknown-task", "method": "DELETE", "path": f"/v0/tasks/{_id(999)}"},
        {"name": "list-tasks", "method": "GET", "path": "/v0/tasks"},
    ]
    # Every other builder's body (v0.0.26 and HEAD clients), submitted last and not awaited: the answer to the POST is
    # the contract (201, or 400 for what a stricter check refuses); the tasks themselves need seid, S3 or peers.
    common = {"chainId": CHAIN_ID, "keyName": "node_admin", "fees": "4000usei", "gas": 200000}
    proposal = {**common, "title": "t", "description": "d", "initialDeposit": "10000000usei"}
    builders: list[tuple[str, dict[str, Any] | None]] = [
        ("snapshot-restore", {"targetHeight": 100}),
        ("snapshot-restore", None),
        ("snapshot-upload", None),
        ("snapshot-upload-once", None),
        ("configure-genesis", None),
        ("configure-genesis", {"expectedGenesisHash": "ab" * 32}),
        ("configure-state-sync", {"useLocalSnapshot": True, "trustPeriod": "168h0m0s", "backfillBlocks": 10}),
        ("configure-state-sync", {"rpcServers": ["rpc-0.sei.svc:26657", "rpc-1.sei.svc:26657"]}),
        ("configure-state-sync", None),
        ("await-condition", {"condition": "height", "targetHeight": 100, "action": "SIGTERM_SEID"}),
        ("await-condition", {"condition": "catchingUp"}),
        ("config-apply", {"mode": "validator", "incremental": False, "targetVersion": 1}),
        ("config-validate", None),
        ("config-reload", {"fields": {"log_level": "debug"}}),
        ("result-export", {"bucket": "exports", "region": "us-east-1", "prefix": "shadow/"}),
        ("result-export", {"bucket": "exports", "region": "us-east-1", "canonicalRpc": "http://canon:26657"}),
        ("generate-gentx", {"chainId": CHAIN_ID, "stakingAmount": "1000000usei", "accountBalance": "10000000usei"}),
        ("upload-genesis-artifacts", {"nodeName": "node-0"}),
        (
            "assemble-and-upload-genesis",
            {"accountBalance": "10000000usei", "namespace": "sei", "nodes": [{"name": "node-0"}]},
        ),
        ("set-genesis-peers", None),
        ("gov-software-upgrade", {**proposal, "upgradeName": "v2", "upgradeHeight": 1000}),
        ("gov-param-change", {**proposal, "changes": [{"subspace": "staking", "key": "MaxValidators", "value": 150}]}),
        ("stop-seid", None),
        ("restart-seid", None),
        ("reset-data", None),
    ]
    for number, (task_type, params) in enumerate(builders, start=100):
        body: dict[str, Any] = {"id": _id(number), "type": task_type}
        if params is not None:
            body["params"] = params
        steps.append({"name": f"builder-{number}-{task_type}", "method": "POST", "path": "/v0/tasks", "body": body})
    if trusted:
        for step in steps:
            step.setdefault("headers", {"X-Remote-User": "system:serviceaccount:sei:controller"})
        steps += [
            {"name": "authn-missing-header", "method": "GET", "path": "/v0/status", "headers": {}},
            {"name": "authn-empty-header", "method": "GET", "path": "/v0/status", "headers": {"X-Remote-User": ""}},
            {
                "name": "authn-duplicate-header",
                "method": "GET",
                "path": "/v0/status",
                "headers": [["X-Remote-User", "a"], ["X-Remote-User", "b"]],
            },
            {"name": "authn-bypass-healthz", "method": "GET", "path": "/v0/healthz", "headers": {}},
        ]
    return steps


def _send(url: str, step: dict[str, Any], path: str | None = None, method: str | None = None) -> dict[str, Any]:
    """One request over http.client (which, unlike urllib, sends a header twice when told to)."""
    method = method or step["method"]
    data = None
    if method == "POST":
        data = step["raw"].encode() if "raw" in step else json.dumps(step["body"]).encode() if "body" in step else None
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
    try:
        connection.putrequest(method, path or step["path"], skip_accept_encoding=True)
        headers = step.get("headers", {})
        for name, value in headers if isinstance(headers, list) else headers.items():
            connection.putheader(name, value)
        if data is not None:
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        response = connection.getresponse()
        body = response.read()
        return {
            "status": response.status,
            "contentType": response.getheader("Content-Type", ""),
            "body": body.decode("utf-8", errors="replace"),
        }
    finally:
        connection.close()


def record(url: str, trusted: bool) -> list[dict[str, Any]]:
    exchanges = []
    for step in scenario(trusted):
        request = {key: step[key] for key in ("method", "path", "headers", "body", "raw") if key in step}
        exchanges.append({"name": step["name"], "request": request, "response": _send(url, step)})
        if step.get("wait") and exchanges[-1]["response"]["status"] == 201:
            task_id = step["body"]["id"]
            deadline = time.monotonic() + POLL_SECONDS
            while True:
                answer = _send(url, step, path=f"/v0/tasks/{task_id}", method="GET")
                if answer["status"] != 200 or json.loads(answer["body"]).get("status") != "running":
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"{step['name']}: task {task_id} still running after {POLL_SECONDS:g}s")
                time.sleep(0.2)
            exchanges.append(
                {
                    "name": f"{step['name']}/final",
                    "request": {
                        "method": "GET",
                        "path": f"/v0/tasks/{task_id}",
                        **({"headers": step["headers"]} if "headers" in step else {}),
                    },
                    "response": answer,
                }
            )
    return exchanges


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the running sidecar, e.g. http://127.0.0.1:7777")
    parser.add_argument("--commit", required=True, help="the seictl commit the sidecar was built from")
    parser.add_argument("--out", type=Path, required=True, help="directory for exchanges[-trusted].json")
    parser.add_argument("--trusted-header", action="store_true", help="the sidecar runs in trusted-header mode")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    name = "exchanges-trusted.json" if args.trusted_header else "exchanges.json"
    document = {
        "commit": args.commit,
        "url": args.url,
        "trustedHeader": args.trusted_header,
        "exchanges": record(args.url.rstrip("/"), args.trusted_header),
    }
    (args.out / name).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(document['exchanges'])} exchanges to {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Signing from the operator's Cosmos keyring on a real simd chain (Cosmos SDK v0.45, Sei's keyring format).

The keys are made by simd itself: `simd keys add` with `--keyring-backend test` (the validator's key, as the chain's
own commands make it) and with `--keyring-backend file` plus a passphrase (the operator key `node_admin`, as a
keyring Secret holds it). The agent reads them with the Go sidecar's variables and signs; simd must commit what it
signs. Covered: a proposal signed with a `test`-keyring key, votes signed with the `file`-keyring key and the
`test`-keyring key (simd's `query gov vote` shows each voter's option), and a wrong passphrase failing as
`KeyringUnreadable` before anything is signed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.models import TaskResult, TaskStatus, TaskType
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import SimdChain, SimdNode

pytestmark = pytest.mark.chain

CHAIN_ID = "keyring-real"
DENOM = "stake"
PREFIX = "cosmos"
PASSPHRASE = "operator keyring passphrase 7"
DEPOSIT = "1000stake"
GAS = 300_000
FEES = "3000stake"


def _ok(result: TaskResult) -> dict[str, Any]:
    assert result.status is TaskStatus.COMPLETED, f"{result.reason}: {result.error}"
    assert isinstance(result.result, dict)
    return result.result


def _query(node: SimdNode, *args: str) -> Any:
    output = subprocess.run(
        [str(node.tools.simd), "query", *args, "--node", f"tcp://127.0.0.1:{node.rpc_port}", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return json.loads(output)


def _file_keyring_key(node: SimdNode, root: Path, name: str) -> str:
    """`simd keys add <name> --keyring-backend file --keyring-dir <root>` (passphrase entered twice); its address."""
    added = node.simd(
        "keys",
        "add",
        name,
        "--keyring-backend",
        "file",
        "--keyring-dir",
        str(root),
        "--output",
        "json",
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )
    address: str = json.loads(added.strip().splitlines()[-1])["address"]
    assert (root / "keyring-file" / f"{name}.info").is_file() and (root / "keyring-file" / "keyhash").is_file()
    return address


@pytest.mark.slow
async def test_keys_made_by_simd_keys_add_sign_what_simd_commits(
    simd_chain: SimdChain, chain_agent: Any, tmp_path: Path
) -> None:
    node = simd_chain.validator("val", chain_id=CHAIN_ID)  # key "val" made by `simd keys add --keyring-backend test`
    secret_mount = tmp_path / "operator-keyring"
    admin = _file_keyring_key(node, secret_mount, "node_admin")
    node.simd("add-genesis-account", admin, f"{10**9}{DENOM}")

    def short_governance(genesis: dict[str, Any]) -> None:
        genesis["app_state"]["gov"]["deposit_params"]["min_deposit"] = [{"denom": DENOM, "amount": "1000"}]

    node.edit_genesis(short_governance)
    node.start()

    common = {"chainId": CHAIN_ID, "fees": FEES, "gas": GAS}
    identity = {"chain_id": CHAIN_ID, "rpc_endpoint": node.rpc_url, "bech32_prefix": PREFIX, "bond_denom": DENOM}
    # Spending ceilings at exactly what the test pays (NODETASK_MAX_GAS_PRICE, NODETASK_MAX_DEPOSIT).
    identity |= {"max_gas_price": f"{int(FEES.removesuffix(DENOM)) / GAS}{DENOM}", "max_deposit": DEPOSIT}
    validator_agent: InProcessAgent = chain_agent(
        node.home,
        keyring_backend="test",
        keyring_dir=node.home,  # simd's own keyring: <home>/keyring-test
        db_path=tmp_path / "validator-agent.db",
        **identity,
    )
    operator_agent: InProcessAgent = chain_agent(
        node.home,
        keyring_backend="file",
        keyring_dir=secret_mount / "keyring-file",  # as the controller mounts it; the trailing element is dropped
        keyring_passphrase=PASSPHRASE,
        db_path=tmp_path / "operator-agent.db",
        **identity,
    )

    proposal = _ok(
        await validator_agent.run(
            TaskType.GOV_PARAM_CHANGE,
            {
                **common,
                "keyName": "val",
                "title": "Raise MaxValidators",
                "description": "signed from the test keyring",
                "changes": [{"subspace": "staking", "key": "MaxValidators", "value": 120}],
                "initialDeposit": DEPOSIT,
            },
        )
    )
    assert proposal["signer"] == node.key_address and proposal["code"] == 0
    proposal_id = proposal["proposalId"]

    vote = {**common, "proposalId": proposal_id}
    by_admin = _ok(await operator_agent.run(TaskType.GOV_VOTE, {**vote, "keyName": "node_admin", "option": "no"}))
    by_validator = _ok(await validator_agent.run(TaskType.GOV_VOTE, {**vote, "keyName": "val", "option": "yes"}))
    assert (by_admin["signer"], by_validator["signer"]) == (admin, node.key_address)
    for voter, option in ((admin, "VOTE_OPTION_NO"), (node.key_address, "VOTE_OPTION_YES")):
        recorded = _query(node, "gov", "vote", str(proposal_id), voter)
        assert [entry["option"] for entry in recorded["options"]] == [option]

    wrong: InProcessAgent = chain_agent(
        node.home,
        keyring_backend="file",
        keyring_dir=secret_mount,
        keyring_passphrase="not the passphrase",
        db_path=tmp_path / "wrong-agent.db",
        **identity,
    )
    refused = await wrong.run(TaskType.GOV_VOTE, {**vote, "keyName": "node_admin", "option": "yes"})
    assert (refused.status, refused.reason) == (TaskStatus.FAILED, "KeyringUnreadable")
    assert "not the passphrase" not in (refused.error or "")
    recorded = _query(node, "gov", "vote", str(proposal_id), admin)
    assert [entry["option"] for entry in recorded["options"]] == ["VOTE_OPTION_NO"]  # nothing else was signed

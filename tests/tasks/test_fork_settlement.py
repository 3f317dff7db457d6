"""assemble-genesis-fork on a real `simd export` (cosmos-sdk v0.45.16, recorded in tests/chain/data): the old stake is
settled so staking's and distribution's InitGenesis checks hold, and gentxs follow the chain's account-number rule.

The chain tier starts the resulting chain with the real simd (tests/chain_real/test_genesis_real.py); these tests
pin the bookkeeping without the binaries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.chain.cosmos.address import Bech32Prefixes
from agent.chain.cosmos.gentx import check_signature, verify_gentx
from agent.chain.crypto import bech32
from agent.models import TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.chain.test_fork_stream import _synthetic_export
from tests.fixtures.ceremony import ValidatorPod, new_pod, seid_init_genesis
from tests.fixtures.waiting import wait_until

EXPORT = Path(__file__).parents[1] / "chain" / "data" / "simd-v0.45.16-export.json"
SOURCE = "src-1"
FORK_CHAIN = "fork-1"
NAMES = ["val-a", "val-b", "val-c"]
COSMOS = Bech32Prefixes.from_main("cosmos")
SIMD_IDENTITY = {"bech32_prefix": "cosmos", "bond_denom": "stake", "gentx_account_numbers": "initial-height"}


def export() -> dict[str, Any]:
    return json.loads(EXPORT.read_text())  # type: ignore[no-any-return]


def module_address(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()[:20]


def account_positions(app_state: dict[str, Any]) -> dict[str, int]:
    bases = [entry.get("base_account", entry) for entry in app_state["auth"]["accounts"]]
    ordered = sorted(bases, key=lambda base: int(base["account_number"]))
    return {base["address"]: position for position, base in enumerate(ordered)}


def balances_by_bytes(app_state: dict[str, Any]) -> dict[bytes, dict[str, int]]:
    return {
        bech32.decode(entry["address"])[1]: {coin["denom"]: int(coin["amount"]) for coin in entry["coins"]}
        for entry in app_state["bank"]["balances"]
    }


async def fork_pods(
    tmp_path: Path, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, *, numbered: bool
) -> list[ValidatorPod]:
    s3_admin.put_object(Bucket=s3_bucket, Key=f"{SOURCE}/exported-state.json", Body=EXPORT.read_bytes())
    base = s3_settings.model_copy(update={**SIMD_IDENTITY, "chain_id": FORK_CHAIN})
    first_new_number = len(export()["app_state"]["auth"]["accounts"])
    pods: list[ValidatorPod] = []
    for index, name in enumerate(NAMES):
        genesis = seid_init_genesis(FORK_CHAIN, evm=False)
        genesis["app_state"]["staking"]["params"]["bond_denom"] = "stake"
        pod = new_pod(tmp_path / "pods", base, name, genesis)
        pod.settings = pod.runner.settings = pod.settings.model_copy(update={"chain_id": FORK_CHAIN})
        await pod.run(TaskType.GENERATE_IDENTITY, {"chainId": FORK_CHAIN, "moniker": name})
        gentx = {"stakingAmount": "5000000stake", "accountBalance": "100000000stake", "host": f"10.0.0.{index + 1}"}
        if numbered:
            gentx["accountNumber"] = first_new_number + index  # the fork appends new accounts in `nodes` order
        await pod.run(TaskType.GENERATE_GENTX, gentx)
        await pod.run(TaskType.UPLOAD_GENESIS_ARTIFACTS, {"nodeName": name})
        pods.append(pod)
    return pods


FORK_PARAMS = {
    "sourceChainId": SOURCE,
    "accountBalance": "100000000stake",
    "nodes": [{"name": name} for name in NAMES],
}


async def test_fork_of_a_simd_export_settles_pools_distribution_and_supply(
    tmp_path: Path, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    pods = await fork_pods(tmp_path, s3_settings, s3_admin, s3_bucket, numbered=True)
    source = export()["app_state"]
    before = balances_by_bytes(source)

    result = await pods[0].run(TaskType.ASSEMBLE_GENESIS_FORK, FORK_PARAMS)

    genesis = pods[0].genesis()
    app_state = genesis["app_state"]
    after = balances_by_bytes(app_state)
    bonded, not_bonded = module_address("bonded_tokens_pool"), module_address("not_bonded_tokens_pool")
    distribution = module_address("distribution")
    # staking's InitGenesis: no genesis validators, so both pools must be empty
    assert bonded not in after and not_bonded not in after
    # the old stake went to the distribution account, as community pool
    old_stake = before[bonded].get("stake", 0) + before.get(not_bonded, {}).get("stake", 0)
    assert after[distribution]["stake"] == before[distribution]["stake"] + old_stake
    assert result["movedToCommunityPool"] == f"{old_stake}stake" and result["burned"] == "nothing"
    # distribution's InitGenesis: its balance equals the whole part of community pool + outstanding rewards (none)
    assert app_state["distribution"]["outstanding_rewards"] == []
    [pool] = app_state["distribution"]["fee_pool"]["community_pool"]
    assert int(Decimal(pool["amount"])) == after[distribution]["stake"]
    old_fraction = Decimal(source["distribution"]["fee_pool"]["community_pool"][0]["amount"]) % 1
    assert Decimal(pool["amount"]) % 1 == old_fraction
    # bank: supply is unchanged by the settlement and grows by the new accounts only
    total = sum(coins.get("stake", 0) for coins in after.values())
    assert app_state["bank"]["supply"] == [{"denom": "stake", "amount": str(total)}]
    assert total == int(source["bank"]["supply"][0]["amount"]) + 3 * 100_000_000
    # each gentx verifies with its account's position (auth's InitGenesis renumbers in order): 8, 9, 10
    positions = account_positions(app_state)
    numbers = []
    for tx in app_state["genutil"]["gen_txs"]:
        verified = verify_gentx(tx, FORK_CHAIN, COSMOS, account_number=None)
        numbers.append(positions[verified.delegator_address])
        check_signature(verified, FORK_CHAIN, numbers[-1])
    assert numbers == [8, 9, 10]
    assert genesis["initial_height"] == export()["initial_height"]


async def test_zero_signed_gentxs_on_a_real_number_fork_fail_naming_the_number(
    tmp_path: Path, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    pods = await fork_pods(tmp_path, s3_settings, s3_admin, s3_bucket, numbered=False)
    with pytest.raises(TaskError, match=r"val-a.*signed with account number 0.*account number 8") as caught:
        await pods[0].run(TaskType.ASSEMBLE_GENESIS_FORK, FORK_PARAMS)
    assert caught.value.reason == "GentxInvalid"


async def test_sei_rule_keeps_account_number_zero_on_a_fork(
    tmp_path: Path, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    pods = await fork_pods(tmp_path, s3_settings, s3_admin, s3_bucket, numbered=False)
    for pod in pods:
        pod.runner.settings = pod.runner.settings.model_copy(update={"gentx_account_numbers": "zero"})
    result = await pods[0].run(TaskType.ASSEMBLE_GENESIS_FORK, FORK_PARAMS)
    assert result["validators"] == 3
    for tx in pods[0].genesis()["app_state"]["genutil"]["gen_txs"]:
        verify_gentx(tx, FORK_CHAIN, COSMOS)  # account number 0


@pytest.mark.slow
async def test_cancelling_a_fork_mid_rewrite_stops_it_and_leaves_nothing(
    tmp_path: Path, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    pods = await fork_pods(tmp_path, s3_settings, s3_admin, s3_bucket, numbered=True)
    big = tmp_path / "big-export.json"
    _synthetic_export(big, 30_000)  # seconds of streaming work, cancelled within a few thousand events
    s3_admin.put_object(Bucket=s3_bucket, Key=f"{SOURCE}/exported-state.json", Body=big.read_bytes())
    before = pods[0].genesis_path.read_bytes()

    task = asyncio.ensure_future(pods[0].run(TaskType.ASSEMBLE_GENESIS_FORK, FORK_PARAMS))
    await wait_until(
        lambda: any("rewriting" in report.message for report in pods[0].runner.progress),
        what="the fork to start rewriting the export",
        unless_done=task,
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert pods[0].genesis_path.read_bytes() == before
    leftovers = [path.name for path in (pods[0].home / "config").iterdir() if path.name.startswith(".")]
    assert leftovers == []  # neither the downloaded export nor a half-written genesis
    assert not any(
        key.startswith(f"{FORK_CHAIN}/") and key.endswith("genesis.json") for key in _keys(s3_admin, s3_bucket)
    )


def _keys(s3_admin: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3_admin.list_objects_v2(Bucket=bucket).get("Contents", [])]

"""assemble-and-upload-genesis with the current version's `accounts[]` (external and vesting) and `overrides`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.chain.cosmos.address import SEI
from agent.chain.crypto import bech32
from agent.io.files import marker_path
from agent.models import ParamsInvalid, TaskError, TaskType
from tests.fixtures.ceremony import CHAIN_ID, ValidatorPod
from tests.tasks.test_ceremony import NAMES, assemble_params, ready_pod, s3_object

ASSEMBLE = TaskType.ASSEMBLE_AND_UPLOAD_GENESIS
GENESIS_UNIX = int(datetime(2026, 4, 1, 10, tzinfo=UTC).timestamp())  # the fixture genesis's genesis_time
TREASURY = bech32.encode(SEI.account, bytes([1] * 20))
INVESTOR = bech32.encode(SEI.account, bytes([2] * 20))
ADVISOR = bech32.encode(SEI.account, bytes([3] * 20))
ACCOUNTS = [
    {"address": TREASURY, "balance": "1000usei"},
    {
        "address": INVESTOR,
        "balance": "900usei,5uatom",
        "vesting": {"amount": "600usei", "endTime": GENESIS_UNIX + 3600},
    },
    {
        "address": ADVISOR,
        "balance": "300usei",
        "vesting": {"amount": "300usei", "endTime": str(GENESIS_UNIX + 60), "delayed": True},
    },
]
OVERRIDES = {"staking.params.max_validators": 50, "slashing.params.signed_blocks_window": "5000", "mint.params.x": 1}


@pytest.fixture
async def pods(make_pod: Callable[..., ValidatorPod]) -> list[ValidatorPod]:
    return [await ready_pod(make_pod, name) for name in NAMES]


def _by_address(genesis: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    def address(entry: dict[str, Any]) -> str:
        while "address" not in entry:
            entry = entry.get("base_account") or entry["base_vesting_account"]
        return str(entry["address"])

    app_state = genesis["app_state"]
    accounts = {address(entry): entry for entry in app_state["auth"]["accounts"]}
    balances = {entry["address"]: entry["coins"] for entry in app_state["bank"]["balances"]}
    return accounts, balances


async def test_external_and_vesting_accounts_and_overrides_land_in_the_uploaded_genesis(
    pods: list[ValidatorPod], s3_admin: Any, s3_bucket: str
) -> None:
    overrides = {key: value for key, value in OVERRIDES.items() if not key.startswith("mint")}
    result = await pods[0].run(ASSEMBLE, assemble_params(accounts=ACCOUNTS, overrides=overrides))

    uploaded = s3_object(s3_admin, s3_bucket, f"{CHAIN_ID}/genesis.json")
    assert result["genesisHash"] == hashlib.sha256(uploaded).hexdigest()
    genesis = json.loads(uploaded)
    accounts, balances = _by_address(genesis)
    assert accounts[TREASURY]["@type"] == "/cosmos.auth.v1beta1.BaseAccount"
    investor = accounts[INVESTOR]
    assert investor["@type"] == "/cosmos.vesting.v1beta1.ContinuousVestingAccount"
    assert investor["start_time"] == str(GENESIS_UNIX)
    assert investor["base_vesting_account"]["original_vesting"] == [{"denom": "usei", "amount": "600"}]
    assert investor["base_vesting_account"]["end_time"] == str(GENESIS_UNIX + 3600)
    advisor = accounts[ADVISOR]
    assert advisor["@type"] == "/cosmos.vesting.v1beta1.DelayedVestingAccount" and "start_time" not in advisor
    assert balances[INVESTOR] == [{"denom": "uatom", "amount": "5"}, {"denom": "usei", "amount": "900"}]
    numbers = sorted(
        int((entry.get("base_vesting_account", {}).get("base_account") or entry)["account_number"])
        for entry in accounts.values()
    )
    assert numbers == list(range(len(NAMES) + len(ACCOUNTS)))  # validators' and external accounts, no gaps
    assert genesis["app_state"]["staking"]["params"]["max_validators"] == 50
    assert genesis["app_state"]["slashing"]["params"]["signed_blocks_window"] == "5000"
    assert len(genesis["validators"]) == len(NAMES)


async def test_a_retry_after_a_failure_past_the_genesis_write_accepts_its_own_accounts(
    pods: list[ValidatorPod], s3_admin: Any, s3_bucket: str
) -> None:
    """The original failed such a retry forever: its earlier accounts counted as collisions."""
    params = assemble_params(accounts=ACCOUNTS, overrides={"staking.params.max_validators": 50})
    first = await pods[0].run(ASSEMBLE, params)
    marker_path(pods[0].home, "assemble").unlink()  # as if the run had died after writing genesis, before the marker

    second = await pods[0].run(ASSEMBLE, params)

    assert second["genesisHash"] == first["genesisHash"]
    uploaded = s3_object(s3_admin, s3_bucket, f"{CHAIN_ID}/genesis.json")
    assert hashlib.sha256(uploaded).hexdigest() == first["genesisHash"]


async def test_an_account_that_differs_from_the_one_in_genesis_is_a_collision(pods: list[ValidatorPod]) -> None:
    await pods[0].run(ASSEMBLE, assemble_params(accounts=ACCOUNTS[:1]))
    marker_path(pods[0].home, "assemble").unlink()
    before = pods[0].genesis_path.read_bytes()

    with pytest.raises(TaskError, match=f"external account {TREASURY} collides with an existing genesis account"):
        await pods[0].run(ASSEMBLE, assemble_params(accounts=[{"address": TREASURY, "balance": "2000usei"}]))
    assert pods[0].genesis_path.read_bytes() == before


async def test_a_validators_own_account_is_a_collision(pods: list[ValidatorPod]) -> None:
    validator = json.loads((pods[1].home / "keyring-nodetask" / "validator.json").read_text())["address"]

    with pytest.raises(TaskError, match=f"{validator} collides with a validator's account"):
        await pods[0].run(ASSEMBLE, assemble_params(accounts=[{"address": validator, "balance": "1usei"}]))


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ({"accounts": [{"address": "cosmos1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v6", "balance": "1usei"}]},
         ParamsInvalid, "params.accounts[0].address"),
        ({"accounts": [{"address": TREASURY, "balance": "1usei", "vesting": {"amount": "2usei", "endTime": 1}}]},
         ParamsInvalid, "more than the balance"),
        ({"accounts": [{"address": TREASURY, "balance": "1usei"}, {"address": TREASURY, "balance": "2usei"}]},
         ParamsInvalid, "listed twice"),
        ({"overrides": {"staking.params": {}, "staking.params.max_validators": 5}}, ParamsInvalid, "overlap"),
        ({"overrides": {"bank.balances": []}}, ParamsInvalid, "written by the ceremony"),
        ({"overrides": {"staking": 5}}, ParamsInvalid, "<module>.<key>"),
        ({"overrides": {"staking.params.x": None}}, ParamsInvalid, "null is not a value"),
        ({"overrides": {"mint.params.x": 1}}, TaskError, "genesis has no module 'mint'"),
        ({"overrides": {"staking.params.max_validators.x": 1}}, TaskError, "is not an object"),
        ({"accounts": [{"address": TREASURY, "balance": "1usei", "vesting": {"amount": "1usei",
                                                                             "endTime": GENESIS_UNIX}}]},
         TaskError, "is not after the genesis time"),
    ],
)  # fmt: skip
async def test_bad_accounts_and_overrides_fail_naming_what_is_wrong_and_write_nothing(
    pods: list[ValidatorPod], extra: dict[str, Any], error: type[Exception], message: str
) -> None:
    before = pods[0].genesis_path.read_bytes()

    with pytest.raises(error, match=message.replace("[", r"\[").replace(".", r"\.")):
        await pods[0].run(ASSEMBLE, assemble_params(**extra))

    assert pods[0].genesis_path.read_bytes() == before


@pytest.mark.parametrize("extra", [{"accounts": ACCOUNTS[:1]}, {"overrides": {"staking.params.max_validators": 5}}])
async def test_the_streamed_fork_refuses_accounts_and_overrides(
    make_pod: Callable[..., ValidatorPod], extra: dict[str, Any]
) -> None:
    pod = make_pod("val-a")
    with pytest.raises(ParamsInvalid, match="not supported by assemble-genesis-fork"):
        await pod.run(TaskType.ASSEMBLE_GENESIS_FORK, assemble_params(sourceChainId="old-chain", **extra))

"""Chain identity (Bech32 prefixes, bond denom, coin type) is configuration: Sei's by default, stock SDK on demand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.chain.cosmos.address import SEI, SEI_IDENTITY, Bech32Prefixes, ChainIdentity
from agent.chain.cosmos.gentx import GentxProblem, verify_gentx
from agent.chain.cosmos.keystore import keystore_path, load_account_key
from agent.chain.keys import load_node_key, node_key_path
from agent.models import ParamsInvalid, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.ceremony import CHAIN_ID, new_pod, seid_init_genesis

COSMOS = {"bech32_prefix": "cosmos", "bond_denom": "stake"}


def simd_genesis() -> dict[str, Any]:
    genesis = seid_init_genesis(evm=False)
    genesis["app_state"]["staking"]["params"]["bond_denom"] = "stake"
    return genesis


def test_defaults_are_seis() -> None:
    identity = ChainIdentity.from_settings(AgentSettings())
    assert identity == SEI_IDENTITY
    assert identity.prefixes == SEI
    assert (identity.bond_denom, identity.hd_path) == ("usei", "m/44'/118'/0'/0/0")


def test_environment_sets_the_identity() -> None:
    settings = AgentSettings.from_env(
        {
            "SEI_BECH32_PREFIX": "cosmos",
            "SEI_BOND_DENOM": "stake",
            "SEI_COIN_TYPE": "529",
            "SEI_BECH32_CONSENSUS_PREFIX": "cosmoscons",
        }
    )
    identity = ChainIdentity.from_settings(settings)
    assert identity.prefixes == Bech32Prefixes(
        "cosmos", "cosmospub", "cosmosvaloper", "cosmosvaloperpub", "cosmoscons", "cosmosconspub"
    )
    assert (identity.bond_denom, identity.hd_path) == ("stake", "m/44'/529'/0'/0/0")


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("SEI_BECH32_PREFIX", "Cosmos", "bech32_prefix"),
        ("SEI_BECH32_VALIDATOR_PREFIX", "val oper", "bech32_validator_prefix"),
        ("SEI_BOND_DENOM", "1stake", "bond_denom"),
        ("SEI_COIN_TYPE", "-1", "coin_type"),
    ],
)
def test_a_bad_identity_setting_names_the_field(variable: str, value: str, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        AgentSettings.from_env({variable: value})


async def test_generate_gentx_writes_the_configured_prefixes(tmp_path: Path, settings: AgentSettings) -> None:
    pod = new_pod(tmp_path, settings.model_copy(update=COSMOS), "val-a", simd_genesis())
    result = await pod.prepare(stakingAmount="5000000stake", accountBalance="100000000stake")

    assert result["accountAddress"].startswith("cosmos1")
    assert result["validatorAddress"].startswith("cosmosvaloper1")
    node_id = load_node_key(node_key_path(pod.home)).node_id
    document = json.loads((pod.home / "config" / "gentx" / f"gentx-{node_id}.json").read_bytes())
    cosmos = Bech32Prefixes.from_main("cosmos")
    assert verify_gentx(document, CHAIN_ID, cosmos).delegator_address == result["accountAddress"]
    with pytest.raises(GentxProblem, match="not the signer's address"):
        verify_gentx(document, CHAIN_ID, SEI)
    [account] = pod.genesis()["app_state"]["auth"]["accounts"]
    assert account["address"] == result["accountAddress"]


async def test_keystore_loads_under_another_prefix_by_its_bytes(tmp_path: Path, settings: AgentSettings) -> None:
    pod = new_pod(tmp_path, settings.model_copy(update=COSMOS), "val-a", simd_genesis())
    result = await pod.prepare(stakingAmount="5000000stake", accountBalance="100000000stake")

    key = load_account_key(keystore_path(pod.home), SEI_IDENTITY)
    assert key.address.startswith("sei1")
    assert (
        load_account_key(keystore_path(pod.home), ChainIdentity.from_settings(pod.settings)).address
        == (result["accountAddress"])
    )


@pytest.mark.parametrize(
    ("update", "accepted"),
    [({}, False), ({"bond_denom": "stake"}, True)],
    ids=["default-usei", "configured-stake"],
)
async def test_bond_denom_setting_applies_when_genesis_has_no_staking_params(
    tmp_path: Path, settings: AgentSettings, update: dict[str, str], accepted: bool
) -> None:
    genesis = simd_genesis()
    del genesis["app_state"]["staking"]
    pod = new_pod(tmp_path, settings.model_copy(update=update), "val-a", genesis)
    params = {"stakingAmount": "5000000stake", "accountBalance": "100000000stake"}
    if accepted:
        await pod.prepare(**params)
    else:
        with pytest.raises(ParamsInvalid, match=r"stakingAmount.*'usei'"):
            await pod.prepare(**params)


async def test_genesis_bond_denom_wins_over_the_setting(tmp_path: Path, settings: AgentSettings) -> None:
    pod = new_pod(tmp_path, settings.model_copy(update={"bond_denom": "stake"}), "val-a", seid_init_genesis())
    with pytest.raises(ParamsInvalid, match="genesis's bond denom 'usei'"):
        await pod.prepare(stakingAmount="5000000stake", accountBalance="100000000stake")
    await pod.run(TaskType.GENERATE_GENTX, {"stakingAmount": "5000000usei", "accountBalance": "100000000usei"})

"""generate-gentx against a real home: keys from generate-identity, a `seid init`-like genesis, files on disk."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from agent.chain.cosmos.address import SEI, account_address_bytes
from agent.chain.cosmos.gentx import verify_gentx
from agent.chain.cosmos.keystore import keystore_path, load_account_key
from agent.chain.crypto import bech32
from agent.chain.crypto.evm import eth_address
from agent.chain.keys import load_node_key, load_validator_key, node_key_path, validator_key_path
from agent.io.files import has_marker, marker_path
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.tasks import gentx as gentx_task
from tests.fixtures.ceremony import BALANCE, CHAIN_ID, STAKE, ValidatorPod, new_pod, seid_init_genesis

GENTX = TaskType.GENERATE_GENTX


def gentx_file(pod: ValidatorPod) -> Path:
    node_id = load_node_key(node_key_path(pod.home)).node_id
    return pod.home / "config" / "gentx" / f"gentx-{node_id}.json"


def accounts(pod: ValidatorPod) -> list[dict[str, Any]]:
    return pod.genesis()["app_state"]["auth"]["accounts"]  # type: ignore[no-any-return]


async def test_gentx_is_signed_by_the_new_account_for_this_nodes_consensus_key(gentx_pod: ValidatorPod) -> None:
    result = await gentx_pod.prepare()

    node_id = load_node_key(node_key_path(gentx_pod.home)).node_id
    verified = verify_gentx(json.loads(gentx_file(gentx_pod).read_bytes()), CHAIN_ID, SEI)
    assert verified.consensus_public_key == load_validator_key(validator_key_path(gentx_pod.home)).public_key
    assert verified.delegator_address == result["accountAddress"]
    assert verified.validator_address == result["validatorAddress"]
    assert verified.moniker == "moniker-val-a"  # config.toml's moniker from generate-identity, not the hostname
    assert verified.memo == f"{node_id}@val-a-0.val-a.sei.svc.cluster.local:26656" == result["memo"]
    assert str(verified.self_delegation) == STAKE
    assert result["gentxFile"] == f"config/gentx/gentx-{node_id}.json"
    assert stat.S_IMODE(gentx_file(gentx_pod).stat().st_mode) == 0o600
    assert has_marker(gentx_pod.home, "gentx")


async def test_genesis_gets_the_account_its_balance_and_evm_association(gentx_pod: ValidatorPod) -> None:
    result = await gentx_pod.prepare()

    app_state = gentx_pod.genesis()["app_state"]
    assert app_state["auth"]["accounts"] == [
        {
            "@type": "/cosmos.auth.v1beta1.BaseAccount",
            "address": result["accountAddress"],
            "pub_key": None,
            "account_number": "0",
            "sequence": "0",
        }
    ]
    assert app_state["bank"]["balances"] == [
        {
            "address": result["accountAddress"],
            "coins": [{"denom": "uatom", "amount": "7"}, {"denom": "usei", "amount": "100000000"}],
        }
    ]
    # An empty supply becomes the sum of the balances (SDK 0.45's add-genesis-account needs it; seid accepts it).
    assert app_state["bank"]["supply"] == app_state["bank"]["balances"][0]["coins"]
    key = load_account_key(keystore_path(gentx_pod.home))
    assert app_state["evm"]["address_associations"] == [
        {"sei_address": result["accountAddress"], "eth_address": eth_address(key.public_key)}
    ]


async def test_keystore_is_private_and_holds_no_mnemonic(gentx_pod: ValidatorPod, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    result = await gentx_pod.prepare()

    path = keystore_path(gentx_pod.home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    document = json.loads(path.read_text())
    assert set(document) == {"version", "name", "algorithm", "hdPath", "address", "publicKey", "privateKey"}
    assert document["hdPath"] == "m/44'/118'/0'/0/0"
    secret = document["privateKey"]
    key = load_account_key(path)
    assert bech32.encode("sei", account_address_bytes(key.public_key)) == result["accountAddress"]
    for text in (json.dumps(result), caplog.text, repr(key)):
        assert secret not in text


async def test_marker_present_reports_the_existing_gentx_and_changes_nothing(gentx_pod: ValidatorPod) -> None:
    first = await gentx_pod.prepare()
    before = {path: path.read_bytes() for path in gentx_pod.home.rglob("*.json")}

    again = await gentx_pod.run(GENTX, {"stakingAmount": "9000000usei", "accountBalance": "1usei"})

    assert again["alreadyDone"] is True
    assert again["accountAddress"] == first["accountAddress"]
    assert {path: path.read_bytes() for path in gentx_pod.home.rglob("*.json")} == before


def _drop_marker(pod: ValidatorPod) -> None:
    marker_path(pod.home, "gentx").unlink()


def _drop_marker_and_gentx(pod: ValidatorPod) -> None:
    _drop_marker(pod)
    gentx_file(pod).unlink()


def _restore_pristine_genesis(pod: ValidatorPod) -> None:
    _drop_marker_and_gentx(pod)
    pod.genesis_path.write_text(json.dumps(seid_init_genesis()))


@pytest.mark.parametrize(
    "interrupt",
    [_drop_marker, _drop_marker_and_gentx, _restore_pristine_genesis],
    ids=["before-marker", "before-gentx", "before-genesis"],
)
async def test_rerun_after_an_interruption_finishes_with_the_same_key_and_bytes(
    gentx_pod: ValidatorPod, interrupt: Any
) -> None:
    first = await gentx_pod.prepare()
    gentx_bytes = gentx_file(gentx_pod).read_bytes()
    genesis = gentx_pod.genesis()
    interrupt(gentx_pod)

    second = await gentx_pod.run(GENTX, {"chainId": CHAIN_ID, "stakingAmount": STAKE, "accountBalance": BALANCE})

    assert second["accountAddress"] == first["accountAddress"] and second["keyCreated"] is False
    assert gentx_file(gentx_pod).read_bytes() == gentx_bytes
    assert gentx_pod.genesis()["app_state"] == genesis["app_state"]
    assert len(accounts(gentx_pod)) == 1
    assert has_marker(gentx_pod.home, "gentx")


async def test_params_override_moniker_host_and_commission(gentx_pod: ValidatorPod) -> None:
    await gentx_pod.prepare(
        moniker="Validator A",
        host="10.1.2.3",
        p2pPort=26666,
        commissionRate="0.05",
        commissionMaxRate="0.5",
        commissionMaxChangeRate="0.02",
        minSelfDelegation="1000000",
        website="https://example.org",
    )
    document = json.loads(gentx_file(gentx_pod).read_bytes())
    message = document["body"]["messages"][0]
    assert message["description"]["moniker"] == "Validator A"
    assert message["description"]["website"] == "https://example.org"
    assert message["commission"] == {
        "rate": "0.050000000000000000",
        "max_rate": "0.500000000000000000",
        "max_change_rate": "0.020000000000000000",
    }
    assert message["min_self_delegation"] == "1000000"
    assert document["body"]["memo"].endswith("@10.1.2.3:26666")
    verify_gentx(document, CHAIN_ID, SEI)


async def test_genesis_without_evm_module_gets_no_association(tmp_path: Path, settings: Any) -> None:
    pod = new_pod(tmp_path, settings, "val-b", seid_init_genesis(evm=False))
    await pod.prepare()
    assert "evm" not in pod.genesis()["app_state"]


async def test_new_account_takes_the_next_number_and_balances_sort_by_address_bytes(
    tmp_path: Path, settings: Any
) -> None:
    genesis = seid_init_genesis()
    existing = [bech32.encode("sei", bytes([byte]) * 20) for byte in (0xFF, 0x00)]
    genesis["app_state"]["auth"]["accounts"] = [
        {"@type": "/cosmos.auth.v1beta1.BaseAccount", "address": address, "account_number": str(number)}
        for number, address in enumerate(existing)
    ]
    genesis["app_state"]["bank"]["balances"] = [{"address": a, "coins": []} for a in existing]
    genesis["app_state"]["bank"]["supply"] = [{"denom": "usei", "amount": "1000"}]
    pod = new_pod(tmp_path, settings, "val-c", genesis)

    result = await pod.prepare()

    app_state = pod.genesis()["app_state"]
    numbers = {entry["address"]: entry["account_number"] for entry in app_state["auth"]["accounts"]}
    assert numbers[result["accountAddress"]] == "2"
    balance_order = [bech32.decode(entry["address"])[1] for entry in app_state["bank"]["balances"]]
    assert balance_order == sorted(balance_order)
    assert app_state["bank"]["supply"] == [
        {"denom": "uatom", "amount": "7"},
        {"denom": "usei", "amount": str(1000 + 100_000_000)},
    ]


async def test_existing_account_with_too_little_balance_fails_insufficient_balance(gentx_pod: ValidatorPod) -> None:
    first = await gentx_pod.prepare()
    _drop_marker_and_gentx(gentx_pod)
    genesis = gentx_pod.genesis()
    genesis["app_state"]["bank"]["balances"][0]["coins"] = [{"denom": "usei", "amount": "1"}]
    gentx_pod.genesis_path.write_text(json.dumps(genesis))

    with pytest.raises(TaskError, match=f"account {first['accountAddress']} already holds 1usei") as caught:
        await gentx_pod.run(GENTX, {"stakingAmount": STAKE, "accountBalance": BALANCE})
    assert caught.value.reason == "InsufficientBalance"
    assert not gentx_file(gentx_pod).exists() and not has_marker(gentx_pod.home, "gentx")


BAD_PARAMS = [
    ({"stakingAmount": "5000000"}, "params.stakingAmount: .*'5000000' is not a coin"),
    ({"accountBalance": "abcusei"}, "params.accountBalance: .*'abcusei' is not a coin"),
    ({"accountBalance": "1.5usei"}, "params.accountBalance: .*'1.5usei' is not a coin"),
    ({"stakingAmount": "0usei"}, "params.stakingAmount: .*amount must be positive"),
    ({"stakingAmount": "5usei,5uatom"}, "stakingAmount: expected exactly one coin"),
    ({"stakingAmount": "5000000uatom", "accountBalance": "9000000uatom"}, "'uatom' is not genesis's bond denom"),
    ({"accountBalance": "100usei"}, "params.accountBalance 100usei does not cover the stakingAmount 5000000usei"),
    ({"chainId": "other-chain"}, "params.chainId: 'other-chain' differs from config/genesis.json's chain_id"),
    ({"host": "node@host:1"}, "params.host: .*is not a host name"),
    ({"commissionRate": "0.3"}, "commissionRate 0.3 is above commissionMaxRate 0.20"),
    ({"commissionMaxRate": "1.5"}, "params.commissionMaxRate: .*not between 0 and 1"),
    ({"minSelfDelegation": "abc"}, "params.minSelfDelegation: .*positive integer"),
    ({"genesisParams": {}}, "params.genesisParams: unknown field"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_PARAMS, ids=[m for _, m in BAD_PARAMS])
async def test_bad_params_fail_params_invalid_naming_the_value_and_write_nothing(
    gentx_pod: ValidatorPod, changes: dict[str, Any], message: str
) -> None:
    await gentx_pod.run(TaskType.GENERATE_IDENTITY, {"chainId": CHAIN_ID, "moniker": "m"})
    genesis_before = gentx_pod.genesis_path.read_bytes()
    params = {"chainId": CHAIN_ID, "stakingAmount": STAKE, "accountBalance": BALANCE, **changes}

    with pytest.raises(ParamsInvalid, match=message):
        await gentx_pod.run(GENTX, params)

    assert gentx_pod.genesis_path.read_bytes() == genesis_before
    assert not keystore_path(gentx_pod.home).exists()
    assert not (gentx_pod.home / "config" / "gentx").exists()
    assert not has_marker(gentx_pod.home, "gentx")


@pytest.mark.parametrize(
    ("pod_name", "namespace_file", "interface_ip", "host"),
    [
        ("val-d-0", "ns-from-mount", "10.1.2.3", "val-d-0.val-d.ns-from-mount.svc.cluster.local"),
        ("standalone", "ns-from-mount", "10.1.2.3", "10.1.2.3"),  # not a StatefulSet pod: the original's pod IP
        ("val-d-0", None, "10.1.2.3", "10.1.2.3"),
    ],
)
async def test_without_pod_variables_the_host_is_found_as_in_a_controller_pod(
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    pod_name: str,
    namespace_file: str | None,
    interface_ip: str,
    host: str,
) -> None:
    mount = tmp_path / "serviceaccount-namespace"
    if namespace_file is not None:
        mount.write_text(namespace_file + "\n")
    monkeypatch.setattr(gentx_task, "SERVICE_ACCOUNT_NAMESPACE", mount)
    monkeypatch.setattr(gentx_task, "external_ipv4", lambda: interface_ip)
    pod = new_pod(tmp_path, settings, "val-d")
    pod.runner.settings = pod.settings = pod.settings.model_copy(update={"pod_name": pod_name, "pod_namespace": ""})
    await pod.run(TaskType.GENERATE_IDENTITY, {"chainId": CHAIN_ID, "moniker": "m"})
    result = await pod.run(GENTX, {"stakingAmount": STAKE, "accountBalance": BALANCE})
    assert result["memo"] == f"{result['nodeId']}@{host}:26656"


async def test_without_host_pod_dns_name_or_ipv4_interface_the_host_param_is_required(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gentx_task, "external_ipv4", lambda: "")
    pod = new_pod(tmp_path, settings, "val-d")
    pod.runner.settings = pod.settings = pod.settings.model_copy(update={"pod_name": "standalone"})
    await pod.run(TaskType.GENERATE_IDENTITY, {"chainId": CHAIN_ID, "moniker": "m"})
    with pytest.raises(ParamsInvalid, match=r"params\.host: not given.*POD_NAME='standalone'.*no network interface"):
        await pod.run(GENTX, {"stakingAmount": STAKE, "accountBalance": BALANCE})
    assert not keystore_path(pod.home).exists()


def test_the_interface_address_is_one_of_this_hosts_non_loopback_ipv4_addresses() -> None:
    address = gentx_task.external_ipv4()
    if not address:
        pytest.skip("this host has no IPv4 interface besides loopback")
    assert not ipaddress.IPv4Address(address).is_loopback
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))  # only an address of this host can be bound


async def test_without_identity_keys_it_fails_naming_the_key_file(gentx_pod: ValidatorPod) -> None:
    with pytest.raises(TaskError, match=r"node_key\.json: file not found"):
        await gentx_pod.run(GENTX, {"chainId": CHAIN_ID, "stakingAmount": STAKE, "accountBalance": BALANCE})
    assert not keystore_path(gentx_pod.home).exists()

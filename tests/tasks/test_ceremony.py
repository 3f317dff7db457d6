"""The genesis ceremony through moto's S3 server: three validator homes, their artifacts, one assembled genesis."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from agent.chain.cosmos.address import SEI
from agent.chain.cosmos.gentx import ValidatorSpec, build_gentx, gentx_file_bytes, verify_gentx
from agent.chain.cosmos.keystore import keystore_path, load_account_key
from agent.chain.crypto.evm import eth_address
from agent.chain.keys import load_node_key, load_validator_key, node_key_path, validator_key_path
from agent.io.files import has_marker, marker_path
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.params.coins import Coin
from tests.fixtures.ceremony import CHAIN_ID, ValidatorPod, seid_init_genesis

ASSEMBLE = TaskType.ASSEMBLE_AND_UPLOAD_GENESIS
FORK = TaskType.ASSEMBLE_GENESIS_FORK
pytestmark = pytest.mark.slow  # every test builds a multi-validator ceremony on moto first (5-8 s each)

NAMES = ["val-a", "val-b", "val-c"]
NEW_ACCOUNT_BALANCE = "50000000usei"


def s3_object(s3_admin: Any, bucket: str, key: str) -> bytes:
    return s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def s3_keys(s3_admin: Any, bucket: str) -> set[str]:
    return {item["Key"] for item in s3_admin.list_objects_v2(Bucket=bucket).get("Contents", [])}


async def ready_pod(make_pod: Callable[..., ValidatorPod], name: str, **gentx_params: Any) -> ValidatorPod:
    pod = make_pod(name)
    await pod.prepare(**gentx_params)
    await pod.run(TaskType.UPLOAD_GENESIS_ARTIFACTS, {"nodeName": name})
    return pod


@pytest.fixture
async def pods(make_pod: Callable[..., ValidatorPod]) -> list[ValidatorPod]:
    return [await ready_pod(make_pod, name) for name in NAMES]


def assemble_params(names: list[str] = NAMES, **extra: Any) -> dict[str, Any]:
    return {"accountBalance": NEW_ACCOUNT_BALANCE, "nodes": [{"name": name} for name in names], **extra}


async def test_upload_publishes_gentx_and_public_identity_only(
    pods: list[ValidatorPod], s3_admin: Any, s3_bucket: str
) -> None:
    pod = pods[1]
    node_key_value = json.loads(node_key_path(pod.home).read_text())["priv_key"]["value"]
    identity = json.loads(s3_object(s3_admin, s3_bucket, f"{CHAIN_ID}/val-b/identity.json"))
    gentx = s3_object(s3_admin, s3_bucket, f"{CHAIN_ID}/val-b/gentx.json")

    node_id = load_node_key(node_key_path(pod.home)).node_id
    consensus = load_validator_key(validator_key_path(pod.home)).public_key
    assert identity["nodeId"] == node_id
    assert identity["p2pAddress"] == "val-b-0.val-b.sei.svc.cluster.local:26656"
    assert identity["consensusPubKey"] == {
        "type": "tendermint/PubKeyEd25519",
        "value": base64.b64encode(consensus).decode(),
    }
    assert gentx == (pod.home / "config" / "gentx" / f"gentx-{node_id}.json").read_bytes()
    secrets = [node_key_value, json.loads(keystore_path(pod.home).read_text())["privateKey"]]
    for secret in secrets:
        for key in s3_keys(s3_admin, s3_bucket):
            assert secret.encode() not in s3_object(s3_admin, s3_bucket, key)


async def test_three_validator_ceremony_ends_in_one_consistent_genesis(
    pods: list[ValidatorPod], s3_admin: Any, s3_bucket: str
) -> None:
    result = await pods[0].run(ASSEMBLE, assemble_params())

    uploaded = s3_object(s3_admin, s3_bucket, f"{CHAIN_ID}/genesis.json")
    assert result["genesisHash"] == hashlib.sha256(uploaded).hexdigest()
    assert uploaded == pods[0].genesis_path.read_bytes()
    genesis = json.loads(uploaded)
    app_state = genesis["app_state"]

    gen_txs = app_state["genutil"]["gen_txs"]
    verified = [verify_gentx(tx, CHAIN_ID, SEI) for tx in gen_txs]
    accounts = {entry["address"]: entry for entry in app_state["auth"]["accounts"]}
    balances = {entry["address"]: entry["coins"] for entry in app_state["bank"]["balances"]}
    associations = {entry["sei_address"]: entry["eth_address"] for entry in app_state["evm"]["address_associations"]}
    assert len(verified) == len(genesis["validators"]) == len(accounts) == len(balances) == len(associations) == 3

    for pod, gentx, validator in zip(pods, verified, genesis["validators"], strict=True):
        consensus = load_validator_key(validator_key_path(pod.home))
        account = load_account_key(keystore_path(pod.home))
        assert gentx.consensus_public_key == consensus.public_key
        assert gentx.delegator_address == account.address
        assert validator == {
            "address": consensus.address,
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": consensus.public_key_base64},
            "power": "5",
            "name": f"moniker-{pod.name}",
        }
        assert associations[account.address] == eth_address(account.public_key)
        assert account.address in accounts
    # The assembler's own account came from its generate-gentx; the others got accountBalance.
    assert balances[verified[0].delegator_address] == [
        {"denom": "uatom", "amount": "7"},
        {"denom": "usei", "amount": "100000000"},
    ]
    for gentx in verified[1:]:
        assert balances[gentx.delegator_address] == [{"denom": "usei", "amount": "50000000"}]
    assert sorted(int(entry["account_number"]) for entry in accounts.values()) == [0, 1, 2]

    peers = json.loads(s3_object(s3_admin, s3_bucket, f"{CHAIN_ID}/peers.json"))
    assert peers == [gentx.memo for gentx in verified]
    assert result["validators"] == 3 and has_marker(pods[0].home, "assemble")


async def test_reassembly_after_a_crash_uploads_the_same_bytes(
    pods: list[ValidatorPod], s3_admin: Any, s3_bucket: str
) -> None:
    first = await pods[0].run(ASSEMBLE, assemble_params())
    marker_path(pods[0].home, "assemble").unlink()

    second = await pods[0].run(ASSEMBLE, assemble_params())

    assert second["genesisHash"] == first["genesisHash"]
    assert (
        hashlib.sha256(s3_object(s3_admin, s3_bucket, f"{CHAIN_ID}/genesis.json")).hexdigest() == first["genesisHash"]
    )


async def test_marker_present_returns_the_local_genesis_hash(pods: list[ValidatorPod]) -> None:
    first = await pods[0].run(ASSEMBLE, assemble_params())
    again = await pods[0].run(ASSEMBLE, assemble_params(["val-a"]))
    assert again == {"alreadyDone": True, "genesisHash": first["genesisHash"]}


def _put(s3_admin: Any, bucket: str, key: str, body: bytes) -> None:
    s3_admin.put_object(Bucket=bucket, Key=key, Body=body)


def _gentx_document(s3_admin: Any, bucket: str, name: str) -> dict[str, Any]:
    return json.loads(s3_object(s3_admin, bucket, f"{CHAIN_ID}/{name}/gentx.json"))  # type: ignore[no-any-return]


def _malformed(pods: list[ValidatorPod], s3_admin: Any, bucket: str) -> None:
    _put(s3_admin, bucket, f"{CHAIN_ID}/val-b/gentx.json", b'{"body": 1}')


def _tampered(pods: list[ValidatorPod], s3_admin: Any, bucket: str) -> None:
    document = _gentx_document(s3_admin, bucket, "val-c")
    document["body"]["messages"][0]["value"]["amount"] = "900000000"
    _put(s3_admin, bucket, f"{CHAIN_ID}/val-c/gentx.json", json.dumps(document).encode())


def _without_memo(pods: list[ValidatorPod], s3_admin: Any, bucket: str) -> None:
    pod = pods[1]  # re-signed by val-b's own key: only the memo is wrong
    spec = ValidatorSpec(
        moniker="moniker-val-b",
        self_delegation=Coin("usei", 5_000_000),
        consensus_public_key=load_validator_key(validator_key_path(pod.home)).public_key,
        memo="",
    )
    tx = build_gentx(spec, load_account_key(keystore_path(pod.home)).private_key, CHAIN_ID)
    _put(s3_admin, bucket, f"{CHAIN_ID}/val-b/gentx.json", gentx_file_bytes(tx))


def _duplicate(pods: list[ValidatorPod], s3_admin: Any, bucket: str) -> None:
    for artifact in ("gentx.json", "identity.json"):
        _put(
            s3_admin,
            bucket,
            f"{CHAIN_ID}/val-d/{artifact}",
            s3_object(s3_admin, bucket, f"{CHAIN_ID}/val-a/{artifact}"),
        )


def _identity_mismatch(pods: list[ValidatorPod], s3_admin: Any, bucket: str) -> None:
    identity = json.loads(s3_object(s3_admin, bucket, f"{CHAIN_ID}/val-c/identity.json"))
    identity["p2pAddress"] = "elsewhere:26656"
    _put(s3_admin, bucket, f"{CHAIN_ID}/val-c/identity.json", json.dumps(identity).encode())


PROBLEMS = [
    (_malformed, NAMES, {}, "GentxInvalid", r"validator 'val-b': gentx not a valid transaction"),
    (_tampered, NAMES, {}, "GentxInvalid", r"validator 'val-c': gentx the signature does not verify"),
    (_without_memo, NAMES, {}, "GentxMissingMemo", r"validator 'val-b': gentx the memo is empty"),
    (_identity_mismatch, NAMES, {}, "GentxInvalid", r"validator 'val-c' .*p2pAddress 'elsewhere:26656'"),
    (
        _duplicate,
        [*NAMES, "val-d"],
        {},
        "DuplicateValidator",
        r"validator 'val-d' \(moniker-val-a\): has the same consensus key .* as validator 'val-a'",
    ),
    (
        lambda *_: None,
        NAMES,
        {"accountBalance": "1000usei"},
        "InsufficientBalance",
        r"validator 'val-b' .*holds 1000usei, which does not cover the self-delegation 5000000usei",
    ),
    (
        lambda *_: None,
        ["val-a", "nobody"],
        {},
        "GenesisArtifactsMissing",
        r"validator 'nobody': s3://.*/sei-ceremony-1/nobody/gentx\.json does not exist",
    ),
]


@pytest.mark.parametrize(
    ("break_it", "names", "extra", "reason", "message"),
    PROBLEMS,
    ids=["malformed", "tampered", "no-memo", "identity-mismatch", "duplicate", "insufficient-balance", "unknown-node"],
)
async def test_each_problem_fails_with_a_reason_naming_the_validator_and_writes_nothing(
    pods: list[ValidatorPod],
    s3_admin: Any,
    s3_bucket: str,
    break_it: Any,
    names: list[str],
    extra: dict[str, Any],
    reason: str,
    message: str,
) -> None:
    break_it(pods, s3_admin, s3_bucket)
    genesis_before = pods[0].genesis_path.read_bytes()

    with pytest.raises(TaskError, match=message) as caught:
        await pods[0].run(ASSEMBLE, assemble_params(names, **extra))

    assert caught.value.reason == reason
    assert caught.value.retryable is (reason == "GenesisArtifactsMissing")
    assert pods[0].genesis_path.read_bytes() == genesis_before
    assert not {f"{CHAIN_ID}/genesis.json", f"{CHAIN_ID}/peers.json"} & s3_keys(s3_admin, s3_bucket)
    assert not has_marker(pods[0].home, "assemble")


async def test_self_delegation_worth_no_voting_power_is_refused(
    pods: list[ValidatorPod], make_pod: Callable[..., ValidatorPod]
) -> None:
    await ready_pod(make_pod, "val-e", stakingAmount="999999usei")
    with pytest.raises(TaskError, match=r"validator 'val-e' .*999999usei is below 1000000usei") as caught:
        await pods[0].run(ASSEMBLE, assemble_params([*NAMES, "val-e"]))
    assert caught.value.reason == "GentxInvalid"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (assemble_params(accountBalance="10"), r"params\.accountBalance: .*'10' is not a coin"),
        (assemble_params(accountBalance="tenusei"), r"params\.accountBalance: .*'tenusei' is not a coin"),
        (assemble_params(["Val_A"]), r"params\.nodes\[0\]\.name: .*'Val_A' is not a node name"),
        (assemble_params(["val-a", "val-a"]), r"params\.nodes: .*'val-a' is listed twice"),
        (assemble_params([]), r"params\.nodes: .*at least 1"),
    ],
    ids=["amount-only", "non-numeric", "bad-name", "duplicate-name", "no-nodes"],
)
async def test_bad_params_fail_params_invalid_before_anything_is_read_or_written(
    make_pod: Callable[..., ValidatorPod], s3_admin: Any, s3_bucket: str, params: dict[str, Any], message: str
) -> None:
    pod = make_pod("val-a")
    before = pod.genesis_path.read_bytes()
    with pytest.raises(ParamsInvalid, match=message):
        await pod.run(ASSEMBLE, params)
    assert pod.genesis_path.read_bytes() == before and not s3_keys(s3_admin, s3_bucket)


# --- assemble-genesis-fork ----------------------------------------------------------------------------------------


def exported_state() -> dict[str, Any]:
    """What `seid export` of a small `old-chain` looks like: an old validator set, accounts, balances and supply."""
    document = seid_init_genesis("old-chain")
    document["initial_height"] = "1001"
    old = "sei1" + "q" * 38
    app_state = document["app_state"]
    app_state["auth"]["accounts"] = [
        {
            "@type": "/cosmos.auth.v1beta1.BaseAccount",
            "address": f"holder-{n}",
            "account_number": str(n),
            "sequence": "3",
        }
        for n in range(2)
    ]
    app_state["bank"]["balances"] = [
        {"address": f"holder-{n}", "coins": [{"denom": "usei", "amount": "500"}]} for n in range(2)
    ]
    app_state["bank"]["supply"] = [{"denom": "usei", "amount": "1000"}]
    app_state["staking"].update(
        validators=[{"operator_address": old}],
        delegations=[{"delegator_address": old}],
        last_total_power="77",
        exported=True,
    )
    app_state["slashing"]["signing_infos"] = [{"address": old}]
    app_state["distribution"].update(outstanding_rewards=[{"validator_address": old}], previous_proposer="ABCD")
    app_state["wasm"] = {"codes": [{"code_id": "1"}]}
    document["validators"] = [{"address": "OLD", "power": "77", "name": "old"}]
    return document


@pytest.fixture
async def fork_pods(pods: list[ValidatorPod], s3_admin: Any, s3_bucket: str) -> list[ValidatorPod]:
    _put(s3_admin, s3_bucket, "old-chain/exported-state.json", json.dumps(exported_state()).encode())
    return pods


async def test_fork_keeps_app_state_replaces_validators_and_rewrites_metadata(
    fork_pods: list[ValidatorPod], s3_admin: Any, s3_bucket: str
) -> None:
    result = await fork_pods[0].run(FORK, assemble_params(sourceChainId="old-chain"))

    uploaded = s3_object(s3_admin, s3_bucket, f"{CHAIN_ID}/genesis.json")
    assert result["genesisHash"] == hashlib.sha256(uploaded).hexdigest()
    genesis = json.loads(uploaded)
    app_state = genesis["app_state"]
    assert (genesis["chain_id"], genesis["initial_height"]) == (CHAIN_ID, "1001")
    assert genesis["genesis_time"] != "2026-04-01T10:00:00Z"
    assert app_state["staking"]["validators"] == app_state["staking"]["delegations"] == []
    assert (app_state["staking"]["last_total_power"], app_state["staking"]["exported"]) == ("0", False)
    assert app_state["staking"]["params"]["bond_denom"] == "usei"
    assert app_state["slashing"]["signing_infos"] == app_state["distribution"]["outstanding_rewards"] == []
    assert app_state["distribution"]["previous_proposer"] == ""
    assert app_state["wasm"] == {"codes": [{"code_id": "1"}]}
    numbers = [entry["account_number"] for entry in app_state["auth"]["accounts"]]
    assert numbers == ["0", "1", "2", "3", "4"]  # exported accounts keep theirs; new ones follow
    assert app_state["bank"]["supply"] == [{"denom": "usei", "amount": str(1000 + 3 * 50_000_000)}]
    gen_txs = [verify_gentx(tx, CHAIN_ID, SEI) for tx in app_state["genutil"]["gen_txs"]]
    assert [v["pub_key"]["value"] for v in genesis["validators"]] == [
        base64.b64encode(tx.consensus_public_key).decode() for tx in gen_txs
    ]
    assert not list((fork_pods[0].home / "config").glob(".exported-state.*"))


async def test_fork_rerun_keeps_the_genesis_time_and_hash(fork_pods: list[ValidatorPod]) -> None:
    first = await fork_pods[0].run(FORK, assemble_params(sourceChainId="old-chain"))
    marker_path(fork_pods[0].home, "fork-assemble").unlink()
    second = await fork_pods[0].run(FORK, assemble_params(sourceChainId="old-chain"))
    assert second["genesisHash"] == first["genesisHash"]


async def test_fork_params_set_genesis_time_and_initial_height(fork_pods: list[ValidatorPod]) -> None:
    await fork_pods[0].run(
        FORK, assemble_params(sourceChainId="old-chain", genesisTime="2030-01-02T03:04:05Z", initialHeight=5)
    )
    genesis = fork_pods[0].genesis()
    assert (genesis["genesis_time"], genesis["initial_height"]) == ("2030-01-02T03:04:05.000000Z", "5")


async def test_fork_without_an_export_fails_naming_the_object(fork_pods: list[ValidatorPod]) -> None:
    with pytest.raises(TaskError, match=r"s3://.*/missing-chain/exported-state\.json") as caught:
        await fork_pods[0].run(FORK, assemble_params(sourceChainId="missing-chain"))
    assert caught.value.reason == "S3NotFound"
    assert not has_marker(fork_pods[0].home, "fork-assemble")


async def test_fork_to_the_same_chain_id_is_params_invalid(make_pod: Callable[..., ValidatorPod]) -> None:
    with pytest.raises(ParamsInvalid, match="must differ from sourceChainId"):
        await make_pod("val-a").run(FORK, assemble_params(sourceChainId=CHAIN_ID, chainId=CHAIN_ID))


async def test_upload_without_a_gentx_fails_gentx_missing_and_uploads_nothing(
    make_pod: Callable[..., ValidatorPod], s3_admin: Any, s3_bucket: str
) -> None:
    pod = make_pod("val-a")
    await pod.run(TaskType.GENERATE_IDENTITY, {"chainId": CHAIN_ID, "moniker": "m"})
    with pytest.raises(TaskError, match=r"gentx-[0-9a-f]{40}\.json: no gentx for this node") as caught:
        await pod.run(TaskType.UPLOAD_GENESIS_ARTIFACTS, {"nodeName": "val-a"})
    assert caught.value.reason == "GentxMissing"
    assert not s3_keys(s3_admin, s3_bucket) and not has_marker(pod.home, "artifact-upload")

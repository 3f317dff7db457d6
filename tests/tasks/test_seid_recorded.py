"""The ceremony against what a current Sei node wrote: seid v6.1.6-2474-g73f917bbd's gentx (with
`auth_info.fee.gas_estimate`), its `collect-gentxs` genesis and its `export` (tests/fixtures/seid/README.md).

No test can run seid (it cannot be built in CI), so these recorded files are the evidence for Sei: the agent's
assembly of seid's own gentx must give the genesis `seid collect-gentxs` gave, and a fork of seid's export must
settle its pools the way the SDK's InitGenesis checks require (proven to start on simd in tests/chain_real).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent.chain.cosmos import artifacts
from agent.chain.cosmos.address import consensus_address_bytes, with_prefix
from agent.chain.cosmos.gentx import verify_gentx
from agent.chain.crypto import bech32
from agent.chain.crypto.evm import eth_address
from agent.models import TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.ceremony import new_pod, seid_init_genesis

SEID = Path(__file__).parents[1] / "fixtures" / "seid" / "v6.1.6-2474-g73f917bbd"
GENTX = SEID / "gentx" / "gentx.json"
CHAIN = "fixture-1"


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_current_seid_gentx_verifies_and_its_zero_gas_estimate_is_not_written_back() -> None:
    document = load(GENTX)
    assert document["auth_info"]["fee"]["gas_estimate"] == "0"  # the field stock SDK 0.45 does not know

    verified = verify_gentx(document, CHAIN)

    assert verified.delegator_address == (SEID / "gentx" / "validator-address.txt").read_text().strip()
    canonical = verified.to_json()
    assert "gas_estimate" not in canonical["auth_info"]["fee"]
    assert canonical["body"] == document["body"]
    # the EVM association the agent writes for an account is the one seid's add-genesis-account wrote
    associations = load(SEID / "gentx" / "genesis-before-gentx.json")["app_state"]["evm"]["address_associations"]
    assert associations == [
        {"sei_address": verified.delegator_address, "eth_address": eth_address(verified.account_public_key)}
    ]


def publish_recorded_gentx(s3_admin: Any, bucket: str, node_name: str) -> dict[str, Any]:
    """What upload-genesis-artifacts would publish for seid's gentx: the file as is and its public identity."""
    gentx = GENTX.read_bytes()
    verified = verify_gentx(json.loads(gentx), CHAIN)
    identity = artifacts.NodeIdentity(
        node_name=node_name,
        node_id=verified.node_id,
        p2p_address=verified.p2p_address,
        moniker=verified.moniker,
        consensus_public_key=verified.consensus_public_key,
        consensus_address=consensus_address_bytes(verified.consensus_public_key).hex().upper(),
        account_address=verified.delegator_address,
        validator_address=with_prefix(verified.delegator_address, "seivaloper"),
    )
    s3_admin.put_object(Bucket=bucket, Key=artifacts.gentx_key(CHAIN, node_name), Body=gentx)
    s3_admin.put_object(
        Bucket=bucket, Key=artifacts.identity_key(CHAIN, node_name), Body=json.dumps(identity.to_json())
    )
    return load(GENTX)  # type: ignore[no-any-return]


async def test_assembling_seids_gentx_gives_the_genesis_seid_collect_gentxs_gave(
    tmp_path: Path, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    before = load(SEID / "gentx" / "genesis-before-gentx.json")
    expected = load(SEID / "gentx" / "genesis-after-collect-gentxs.json")
    pod = new_pod(tmp_path, s3_settings, "val-0", before)
    pod.settings = pod.runner.settings = pod.settings.model_copy(update={"chain_id": CHAIN})
    publish_recorded_gentx(s3_admin, s3_bucket, "val-0")

    result = await pod.run(
        TaskType.ASSEMBLE_AND_UPLOAD_GENESIS, {"accountBalance": "1usei", "nodes": [{"name": "val-0"}]}
    )

    assembled = pod.genesis()
    assert "at least 3 nodes" in result["warning"]
    for module in set(expected["app_state"]) - {"genutil"}:
        assert assembled["app_state"][module] == expected["app_state"][module], module
    [ours] = assembled["app_state"]["genutil"]["gen_txs"]
    [theirs] = expected["app_state"]["genutil"]["gen_txs"]
    theirs["auth_info"]["fee"].pop("gas_estimate")  # seid writes its zero field; the agent writes the stock form
    assert ours == theirs
    strip = [{key: entry[key] for key in ("address", "pub_key", "power")} for entry in assembled["validators"]]
    assert strip == [{key: entry[key] for key in ("address", "pub_key", "power")} for entry in expected["validators"]]


async def test_fork_of_seids_export_settles_its_pools_and_keeps_its_state(
    tmp_path: Path, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    export = json.loads(gzip.decompress((SEID / "export" / "export.json.gz").read_bytes()))
    s3_admin.put_object(Bucket=s3_bucket, Key=f"{CHAIN}/exported-state.json", Body=json.dumps(export))
    pods = []
    for index, name in enumerate(("new-0", "new-1", "new-2")):
        pod = new_pod(tmp_path / "pods", s3_settings, name, seid_init_genesis("fork-1"))
        pod.settings = pod.runner.settings = pod.settings.model_copy(update={"chain_id": "fork-1"})
        await pod.run(TaskType.GENERATE_IDENTITY, {"chainId": "fork-1", "moniker": name})
        params = {"stakingAmount": "5000000usei", "accountBalance": "100000000usei", "host": f"10.0.0.{index + 1}"}
        await pod.run(TaskType.GENERATE_GENTX, params)
        await pod.run(TaskType.UPLOAD_GENESIS_ARTIFACTS, {"nodeName": name})
        pods.append(pod)

    result = await pods[0].run(
        TaskType.ASSEMBLE_GENESIS_FORK,
        {"sourceChainId": CHAIN, "accountBalance": "100000000usei", "nodes": [{"name": p.name} for p in pods]},
    )

    fork = pods[0].genesis()
    app_state = fork["app_state"]
    assert result["movedToCommunityPool"] == "1000000000usei"  # seid's single validator's bonded stake
    pools = {bech32.encode("sei", hashlib.sha256(name.encode()).digest()[:20]): name for name in
             ("bonded_tokens_pool", "not_bonded_tokens_pool", "distribution")}  # fmt: skip
    held = {pools[b["address"]]: b["coins"] for b in app_state["bank"]["balances"] if b["address"] in pools}
    assert held == {"distribution": [{"denom": "usei", "amount": "1000000000"}]}
    [pool] = app_state["distribution"]["fee_pool"]["community_pool"]
    assert Decimal(pool["amount"]) == 1_000_000_000
    total = sum(
        int(coin["amount"]) for b in app_state["bank"]["balances"] for coin in b["coins"] if coin["denom"] == "usei"
    )
    assert app_state["bank"]["supply"] == [{"denom": "usei", "amount": str(total)}]
    assert total == int(export["app_state"]["bank"]["supply"][0]["amount"]) + 3 * 100_000_000
    # Sei's state is carried over: wasm, the old EVM associations (plus the new validators'), every old account
    assert app_state["wasm"] == export["app_state"]["wasm"]
    associations = app_state["evm"]["address_associations"]
    assert (
        associations[: len(export["app_state"]["evm"]["address_associations"])]
        == (export["app_state"]["evm"]["address_associations"])
    )
    assert len(associations) == len(export["app_state"]["evm"]["address_associations"]) + 3
    assert len(app_state["auth"]["accounts"]) == len(export["app_state"]["auth"]["accounts"]) + 3
    assert app_state["staking"]["validators"] == app_state["staking"]["delegations"] == []
    assert fork["initial_height"] == export["initial_height"]
    for gentx in app_state["genutil"]["gen_txs"]:
        verify_gentx(gentx, "fork-1")  # Sei's rule: account number 0 also above height 1
    assert [v["pub_key"]["value"] for v in fork["validators"]] == [
        base64.b64encode(verify_gentx(t, "fork-1").consensus_public_key).decode()
        for t in app_state["genutil"]["gen_txs"]
    ]

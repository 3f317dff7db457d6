"""configure-state-sync against in-test CometBFT witnesses speaking real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.io.files import has_marker, write_marker
from agent.io.toml import read_toml
from agent.models import ParamsInvalid, TaskError, TaskType
from tests.chain.sei_files import install_sample_config, snapshot
from tests.fixtures.cometbft import CometBFTFactory, Fault, block_hash
from tests.fixtures.common import HandlerRunner


@pytest.fixture
def sei_home(home: Path) -> Path:
    install_sample_config(home)
    return home


def statesync(home: Path) -> dict[str, Any]:
    return dict(read_toml(home / "config" / "config.toml")["statesync"])


@pytest.mark.parametrize("shapes", [("flat", "flat"), ("flat", "envelope"), ("envelope", "envelope")])
async def test_two_agreeing_witnesses_set_the_trusted_block(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory, shapes: tuple[str, str]
) -> None:
    first, second = (cometbft_factory(f"w{i}", height=5000, shape=shape) for i, shape in enumerate(shapes))
    result = await run_handler(
        TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [first.address, second.address], "trustPeriod": "72h0m0s"}
    )
    expected_hash = block_hash("test-chain", 3000)
    assert result == {
        "trustHeight": 3000,
        "trustHash": expected_hash,
        "rpcServers": [first.address, second.address],
        "witnessesSkipped": [],
        "useLocalSnapshot": False,
        "chainId": "test-chain",
    }
    written = statesync(sei_home)
    assert written["enable"] is True
    assert (written["trust-height"], written["trust-hash"]) == (3000, expected_hash)
    assert written["rpc-servers"] == f"{first.address},{second.address}"
    assert written["trust-period"] == "72h0m0s"
    assert written["use-local-snapshot"] is False
    assert written["backfill-blocks"] == "0"  # not given: left as it was
    assert "# State sync is configured by configure-state-sync" in (sei_home / "config" / "config.toml").read_text()
    assert has_marker(sei_home, "statesync")
    assert "/block?height=3000" in first.requests and "/block?height=3000" in second.requests


async def test_a_lying_witness_fails_the_task_naming_both_witnesses_and_hashes(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    honest = cometbft_factory("honest", height=5000)
    liar = cometbft_factory("liar", height=5000, lying=True)
    before = snapshot(sei_home)
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [honest.address, liar.address]})
    error = caught.value
    assert error.reason == "WitnessMismatch"
    assert error.retryable is False
    for text in (honest.address, liar.address, honest.block_hash(3000), liar.block_hash(3000), "height 3000"):
        assert text in error.message
    assert snapshot(sei_home) == before
    assert not has_marker(sei_home, "statesync")


@pytest.mark.parametrize("fault", [Fault.HANG, Fault.HTTP_500, Fault.DROP])
async def test_a_witness_that_fails_is_skipped_when_two_agreeing_remain(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory, fault: Fault
) -> None:
    nodes = [cometbft_factory(f"w{i}", height=9000) for i in range(3)]
    nodes[1].fail(fault)
    result = await run_handler(
        TaskType.CONFIGURE_STATE_SYNC,
        {"rpcServers": [node.address for node in nodes], "witnessTimeoutSeconds": 0.5},
    )
    assert result is not None
    assert result["rpcServers"] == [nodes[0].address, nodes[2].address]
    assert [item["address"] for item in result["witnessesSkipped"]] == [nodes[1].address]
    assert statesync(sei_home)["rpc-servers"] == f"{nodes[0].address},{nodes[2].address}"


async def test_a_witness_that_cannot_serve_the_block_is_skipped(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    nodes = [cometbft_factory(f"w{i}", height=9000) for i in range(3)]
    nodes[2].fail(Fault.RPC_ERROR, path="/block")
    result = await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [node.address for node in nodes]})
    assert result is not None
    assert result["rpcServers"] == [nodes[0].address, nodes[1].address]
    assert "injected fault" in result["witnessesSkipped"][0]["error"]


async def test_one_answering_witness_is_not_enough(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    alive = cometbft_factory("alive")
    dead = cometbft_factory("dead")
    dead.stop()
    before = snapshot(sei_home)
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [alive.address, dead.address]})
    assert caught.value.reason == "WitnessUnavailable"
    assert caught.value.retryable
    assert "1 of 2 witnesses answered /status" in caught.value.message
    assert dead.address in caught.value.message and "cannot connect" in caught.value.message
    assert snapshot(sei_home) == before


async def test_witnesses_come_from_persistent_peers_when_none_are_given(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    first, second = cometbft_factory.on_one_port(["127.0.0.2", "127.0.0.3"], names=["a", "b"])
    first.set_height(4000)
    second.set_height(4100)
    peers = f"{first.node_id}@127.0.0.2:26656,{second.node_id}@127.0.0.3:26656"
    config = sei_home / "config" / "config.toml"
    config.write_text(config.read_text().replace('persistent-peers = ""', f'persistent-peers = "{peers}"'))
    result = await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"peerRpcPort": first.port, "trustHeightOffset": 500})
    assert result is not None
    assert result["trustHeight"] == 3500  # the lowest tip (4000) minus the offset
    assert result["rpcServers"] == [f"127.0.0.2:{first.port}", f"127.0.0.3:{first.port}"]


async def test_no_peers_and_no_witnesses_fail_before_any_query(sei_home: Path, run_handler: HandlerRunner) -> None:
    with pytest.raises(TaskError, match="persistent peers give 0 distinct host"):
        await run_handler(TaskType.CONFIGURE_STATE_SYNC, {})


@pytest.mark.parametrize(
    ("tip", "earliest", "offset", "expected"),
    [(5000, 1, 2000, 3000), (1500, 1, 2000, 1), (5000, 4000, 2000, 4000), (5000, 1, 4999, 1)],
)
async def test_the_trust_height_is_clamped(
    sei_home: Path,
    run_handler: HandlerRunner,
    cometbft_factory: CometBFTFactory,
    tip: int,
    earliest: int,
    offset: int,
    expected: int,
) -> None:
    nodes = [cometbft_factory(f"w{i}", height=tip, earliest_height=earliest) for i in range(2)]
    result = await run_handler(
        TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [node.address for node in nodes], "trustHeightOffset": offset}
    )
    assert result is not None and result["trustHeight"] == expected
    assert result["trustHash"] == block_hash("test-chain", expected)


async def test_local_snapshot_mode_trusts_the_newest_restored_snapshot(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    for name in ("100", "4200", "metadata.db", "999999.partial"):
        (sei_home / "data" / "snapshots" / name).mkdir(parents=True)
    nodes = [cometbft_factory(f"w{i}", height=9000) for i in range(2)]
    result = await run_handler(
        TaskType.CONFIGURE_STATE_SYNC,
        {"rpcServers": [node.address for node in nodes], "useLocalSnapshot": True, "backfillBlocks": 100},
    )
    assert result is not None
    assert (result["trustHeight"], result["useLocalSnapshot"]) == (4200, True)
    written = statesync(sei_home)
    assert (written["trust-height"], written["use-local-snapshot"]) == (4200, True)
    assert written["backfill-blocks"] == "100"  # the file holds it as a string, so it stays one


async def test_local_snapshot_mode_without_a_snapshot_fails(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    nodes = [cometbft_factory(f"w{i}") for i in range(2)]
    with pytest.raises(TaskError, match="no snapshot found in"):
        await run_handler(
            TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [n.address for n in nodes], "useLocalSnapshot": True}
        )
    assert nodes[0].requests == []


async def test_witnesses_on_another_chain_than_genesis_are_refused(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    (sei_home / "config" / "genesis.json").write_text(json.dumps({"chain_id": "pacific-1"}))
    nodes = [cometbft_factory(f"w{i}", chain_id="atlantic-2") for i in range(2)]
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [n.address for n in nodes]})
    assert caught.value.reason == "WitnessMismatch"
    assert "'atlantic-2'" in caught.value.message and "'pacific-1'" in caught.value.message


async def test_witnesses_on_two_chains_are_refused(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    first = cometbft_factory("a", chain_id="chain-a")
    second = cometbft_factory("b", chain_id="chain-b")
    with pytest.raises(TaskError, match="witnesses are on different chains") as caught:
        await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [first.address, second.address]})
    assert caught.value.reason == "WitnessMismatch"


async def test_the_marker_short_circuits_with_what_is_configured(
    sei_home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    nodes = [cometbft_factory(f"w{i}", height=5000) for i in range(2)]
    first = await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [n.address for n in nodes]})
    for node in nodes:
        node.requests.clear()
        node.advance(100)
    again = await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [n.address for n in nodes]})
    assert first is not None and again is not None
    assert again["alreadyConfigured"] is True
    assert (again["trustHeight"], again["trustHash"], again["rpcServers"]) == (
        first["trustHeight"],
        first["trustHash"],
        first["rpcServers"],
    )
    assert all(node.requests == [] for node in nodes)


async def test_keys_are_written_in_the_files_own_spelling(
    home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    install_sample_config(home, underscores=True)
    nodes = [cometbft_factory(f"w{i}", height=5000) for i in range(2)]
    await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [n.address for n in nodes]})
    written = statesync(home)
    assert written["trust_height"] == 3000
    assert written["use_local_snapshot"] is False
    assert not any("-" in key for key in written)


async def test_a_home_without_config_toml_is_refused(
    home: Path, run_handler: HandlerRunner, cometbft_factory: CometBFTFactory
) -> None:
    nodes = [cometbft_factory(f"w{i}") for i in range(2)]
    with pytest.raises(TaskError, match=r"config/config\.toml not found"):
        await run_handler(TaskType.CONFIGURE_STATE_SYNC, {"rpcServers": [n.address for n in nodes]})
    assert not (home / "config" / "config.toml").exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rpcServers": ["a.example:26657"]}, "one witness ('a.example:26657') cannot cross-check"),
        ({"rpcServers": ["a.example:26657", "a.example:26657"]}, "witnesses listed twice: a.example:26657"),
        ({"rpcServers": ["a.example", "b.example:26657"]}, "'a.example' has no :port"),
        ({"rpcServers": ["ftp://a:1", "b:2"]}, "scheme 'ftp' is not http, https or tcp"),
        ({"trustHeightOffset": 0}, "params.trustHeightOffset"),
        ({"trustHeightOffset": -5}, "params.trustHeightOffset"),
        ({"backfillBlocks": -1}, "params.backfillBlocks"),
        ({"trustPeriod": "a week"}, "'a week' is not a Go duration"),
    ],
)
async def test_bad_params_are_refused_by_name_and_touch_nothing(
    sei_home: Path, run_handler: HandlerRunner, params: dict[str, Any], message: str
) -> None:
    before = snapshot(sei_home)
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.CONFIGURE_STATE_SYNC, params)
    assert message in caught.value.message
    assert snapshot(sei_home) == before


async def test_a_marker_from_an_earlier_agent_is_honoured(sei_home: Path, run_handler: HandlerRunner) -> None:
    write_marker(sei_home, "statesync")
    result = await run_handler(TaskType.CONFIGURE_STATE_SYNC, {})
    assert result == {"alreadyConfigured": True, "trustHeight": 0, "trustHash": "", "rpcServers": []}

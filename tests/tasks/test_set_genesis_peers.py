"""set-genesis-peers: peers.json from moto into config.toml, own node removed, comments and key spelling kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.chain.keys import Ed25519Key
from agent.io.toml import read_toml
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.common import HandlerRunner

CONFIG = """# This is a TOML config file.
proxy-app = "tcp://127.0.0.1:26658"

#######################################################
###           P2P Configuration Options             ###
#######################################################
[p2p]

# Address to listen for incoming connections
laddr = "tcp://0.0.0.0:26656"

# Comma separated list of nodes to keep persistent connections to
{key} = ""

[mempool]
size = 5000
"""


def peer(index: int) -> str:
    return f"{index:040x}@validator-{index}.chain.svc:26656"


@pytest.fixture
def own_key(s3_settings: AgentSettings) -> Ed25519Key:
    key = Ed25519Key.generate()
    (s3_settings.home / "config" / "node_key.json").write_text(key.node_key_json())
    return key


def put_peers(s3_admin: Any, bucket: str, peers: Any) -> None:
    s3_admin.put_object(Bucket=bucket, Key="test-chain/peers.json", Body=json.dumps(peers).encode())


@pytest.mark.slow
@pytest.mark.parametrize("spelling", ["persistent-peers", "persistent_peers"])
async def test_peers_minus_self_are_written_keeping_comments_and_spelling(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    s3_admin: Any,
    s3_bucket: str,
    own_key: Ed25519Key,
    spelling: str,
) -> None:
    config = s3_settings.home / "config" / "config.toml"
    config.write_text(CONFIG.format(key=spelling))
    mine = f"{own_key.node_id}@validator-0.chain.svc:26656"
    shouted = f"{0xAB:040X}@validator-171.chain.svc:26656"  # the same node ID as peer(0xab), in capitals
    put_peers(s3_admin, s3_bucket, [peer(0xAB), mine, peer(2), shouted])

    result = await s3_run_handler(TaskType.SET_GENESIS_PEERS, {})

    text = config.read_text()
    assert f'{spelling} = "{peer(0xAB)},{peer(2)}"' in text
    assert "# Comma separated list of nodes to keep persistent connections to" in text
    assert "###           P2P Configuration Options             ###" in text
    assert read_toml(config)["mempool"]["size"] == 5000
    assert result == {
        "source": f"s3://{s3_bucket}/test-chain/peers.json",
        "peers": 2,
        "removedSelf": True,
        "changed": True,
    }


async def test_rerun_is_harmless_and_reports_no_change(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, own_key: Ed25519Key
) -> None:
    config = s3_settings.home / "config" / "config.toml"
    config.write_text(CONFIG.format(key="persistent-peers"))
    put_peers(s3_admin, s3_bucket, [peer(1)])
    await s3_run_handler(TaskType.SET_GENESIS_PEERS, {})
    before = config.read_bytes()

    result = await s3_run_handler(TaskType.SET_GENESIS_PEERS, {})

    assert result is not None and result["changed"] is False
    assert config.read_bytes() == before


async def test_only_self_leaves_an_empty_peer_list(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, own_key: Ed25519Key
) -> None:
    config = s3_settings.home / "config" / "config.toml"
    config.write_text(CONFIG.format(key="persistent-peers").replace('= ""', f'= "{peer(9)}"'))
    put_peers(s3_admin, s3_bucket, [f"{own_key.node_id}@self:26656"])

    await s3_run_handler(TaskType.SET_GENESIS_PEERS, {})

    assert read_toml(config)["p2p"]["persistent-peers"] == ""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("peers", "text"),
    [
        ({"peers": []}, "expected a JSON array"),
        ([peer(1), 42], "entry 1 is 42"),
        ([peer(1), "not-a-peer"], "entry 1"),
        (["abc@host:26656"], "40 hexadecimal"),
    ],
)
async def test_malformed_peers_json_fails_naming_the_entry_and_writes_nothing(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    s3_admin: Any,
    s3_bucket: str,
    own_key: Ed25519Key,
    peers: Any,
    text: str,
) -> None:
    config = s3_settings.home / "config" / "config.toml"
    config.write_text(CONFIG.format(key="persistent-peers"))
    put_peers(s3_admin, s3_bucket, peers)

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.SET_GENESIS_PEERS, {})

    assert text in caught.value.message
    assert f"s3://{s3_bucket}/test-chain/peers.json" in caught.value.message
    assert config.read_text() == CONFIG.format(key="persistent-peers")


async def test_missing_peers_json_is_s3_not_found(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_bucket: str, own_key: Ed25519Key
) -> None:
    (s3_settings.home / "config" / "config.toml").write_text(CONFIG.format(key="persistent-peers"))
    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.SET_GENESIS_PEERS, {})
    assert caught.value.reason == "S3NotFound"


async def test_missing_node_key_or_config_fails_before_anything_is_written(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str
) -> None:
    put_peers(s3_admin, s3_bucket, [peer(1)])
    with pytest.raises(TaskError, match=r"config\.toml does not exist"):
        await s3_run_handler(TaskType.SET_GENESIS_PEERS, {})
    config = s3_settings.home / "config" / "config.toml"
    config.write_text(CONFIG.format(key="persistent-peers"))
    with pytest.raises(TaskError, match=r"node_key\.json"):
        await s3_run_handler(TaskType.SET_GENESIS_PEERS, {})
    assert config.read_text() == CONFIG.format(key="persistent-peers")


@pytest.mark.parametrize(
    ("params", "text"),
    [({"bucket": "UPPER"}, "params.bucket"), ({"chainId": "a b"}, "params.chainId"), ({"extra": 1}, "params.extra")],
)
async def test_bad_params_name_the_field(run_handler: HandlerRunner, params: dict[str, Any], text: str) -> None:
    with pytest.raises(ParamsInvalid, match=text.replace(".", r"\.")):
        await run_handler(TaskType.SET_GENESIS_PEERS, params)


async def test_no_bucket_anywhere_names_the_variable(run_handler: HandlerRunner, home: Path) -> None:
    with pytest.raises(ParamsInvalid, match="SEI_GENESIS_BUCKET"):
        await run_handler(TaskType.SET_GENESIS_PEERS, {})

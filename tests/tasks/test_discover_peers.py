"""discover-peers: static, EC2 (moto's server), DNS (a real UDP stub) and Kubernetes (a fake pod-list API over
HTTPS) sources, each candidate identified by an in-test CometBFT node's /status."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s_client  # type: ignore[import-untyped]

from agent.chain.keys import ensure_node_key, node_key_path
from agent.io.toml import read_toml
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.operator.kubeapi import Connection, KubeApi
from agent.tasks import discover_peers as discover_module
from agent.tasks.discover_peers import Ec2TagsSource
from tests.chain.sei_files import install_sample_config, snapshot
from tests.fixtures.cometbft import CometBFTFactory, FakeCometBFT, node_id_for
from tests.fixtures.common import HandlerRunner
from tests.fixtures.dns import DnsStub
from tests.fixtures.ec2 import REGION, Ec2
from tests.tasks.fake_kube_api import FakeKubeApi


@pytest.fixture
def sei_home(home: Path) -> Path:
    install_sample_config(home)
    return home


@pytest.fixture
def nodes(cometbft_factory: CometBFTFactory) -> list[FakeCometBFT]:
    """Three nodes on 127.0.0.2-4, all on one RPC port (`rpc_port(nodes)`)."""
    return cometbft_factory.on_one_port([f"127.0.0.{i + 2}" for i in range(3)])


def rpc_port(nodes: list[FakeCometBFT]) -> int:
    return nodes[0].port


def persistent_peers(home: Path) -> str:
    return str(read_toml(home / "config" / "config.toml")["p2p"]["persistent-peers"])


def peer(node: FakeCometBFT, p2p_port: int = 26656) -> str:
    return f"{node.node_id}@{node.host}:{p2p_port}"


async def test_static_peers_are_written_deduplicated_and_without_this_node(
    sei_home: Path, run_handler: HandlerRunner
) -> None:
    own, _ = ensure_node_key(node_key_path(sei_home))
    first, second = f"{'AB' * 20}@10.0.0.1:26656", f"{'cd' * 20}@seed.sei.example:26656"
    result = await run_handler(
        TaskType.DISCOVER_PEERS,
        {
            "sources": [
                {"type": "static", "addresses": [first, second, f"{'ab' * 20}@10.9.9.9:1", f"{own.node_id}@me:1"]}
            ]
        },
    )
    expected = [first.replace("AB" * 20, "ab" * 20), second]
    assert persistent_peers(sei_home) == ",".join(expected)
    assert result is not None
    assert (result["peers"], result["count"], result["changed"]) == (expected, 2, True)
    assert result["sources"] == [{"source": "sources[0] (static)", "candidates": 4, "peers": 2}]
    text = (sei_home / "config" / "config.toml").read_text()
    assert "# Comma separated list of nodes to keep persistent connections to" in text
    assert "  # filled in by the agent" in text


@pytest.mark.slow
async def test_ec2_instances_with_the_tags_are_queried_for_their_node_ids(
    sei_home: Path, run_handler: HandlerRunner, ec2: Ec2, cometbft_factory: CometBFTFactory
) -> None:
    nodes = cometbft_factory.on_one_port(
        [ec2.ip(k) for k in (2, 3, 4, 5)], names=[f"i{k}" for k in (2, 3, 4, 5)], refusing=[ec2.ip(6)]
    )
    tag = uuid.uuid4().hex
    ec2.launch(ec2.ip(2), {"network": tag, "role": "validator"})
    ec2.launch(ec2.ip(3), {"network": tag, "role": "validator"})
    ec2.launch(ec2.ip(4), {"network": tag, "role": "sentry"})  # other tag value
    ec2.launch(ec2.ip(5), {"network": tag, "role": "validator"}, running=False)  # stopped
    ec2.launch(ec2.ip(6), {"network": tag, "role": "validator"})  # its RPC port refuses connections
    result = await run_handler(
        TaskType.DISCOVER_PEERS,
        {
            "sources": [{"type": "ec2Tags", "region": REGION, "tags": {"network": tag, "role": "validator"}}],
            "rpcPort": rpc_port(nodes),
            "queryTimeoutSeconds": 2,
        },
    )
    assert result is not None
    assert sorted(result["peers"]) == sorted([peer(nodes[0]), peer(nodes[1])])
    assert [(item["address"], item["source"]) for item in result["skipped"]] == [(ec2.ip(6), "sources[0] (ec2Tags)")]
    assert "cannot connect" in result["skipped"][0]["reason"]
    assert nodes[2].requests == [] and nodes[3].requests == []
    assert sorted(persistent_peers(sei_home).split(",")) == sorted(result["peers"])


@pytest.mark.parametrize(("address", "expected"), [("public", "public"), ("private", "private")])
def test_ec2_prefers_the_public_ip_unless_told_otherwise(ec2: Ec2, address: str, expected: str) -> None:
    tag = uuid.uuid4().hex
    instance = ec2.describe(ec2.launch(ec2.ip(7), {"network": tag}, public_ip=True))
    source = Ec2TagsSource(type="ec2Tags", region=REGION, tags={"network": tag}, address=address)  # type: ignore[arg-type]
    addresses = discover_module._ec2_addresses(source, "sources[0] (ec2Tags)")
    assert addresses == [instance["PublicIpAddress"] if expected == "public" else ec2.ip(7)]


async def test_an_unreachable_ec2_api_fails_the_task_naming_the_source(
    sei_home: Path,
    run_handler: HandlerRunner,
    ec2: Ec2,
    monkeypatch: pytest.MonkeyPatch,
    refused_port: Callable[..., int],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{refused_port()}")
    before = snapshot(sei_home)
    with pytest.raises(TaskError) as caught:
        await run_handler(
            TaskType.DISCOVER_PEERS, {"sources": [{"type": "ec2Tags", "region": REGION, "tags": {"a": "b"}}]}
        )
    assert caught.value.message.startswith(f"sources[0] (ec2Tags): EC2 DescribeInstances in {REGION}")
    assert caught.value.retryable
    assert snapshot(sei_home) == before


async def test_dns_a_records_become_candidates_and_unknown_names_are_noted(
    sei_home: Path, run_handler: HandlerRunner, dns_stub: DnsStub, nodes: list[FakeCometBFT]
) -> None:
    dns_stub.add_a("validators.sei.test", "127.0.0.2", "127.0.0.3")
    result = await run_handler(
        TaskType.DISCOVER_PEERS,
        {
            "sources": [
                {"type": "dns", "hosts": ["validators.sei.test", "missing.sei.test"], "nameservers": [dns_stub.address]}
            ],
            "rpcPort": rpc_port(nodes),
        },
    )
    assert result is not None
    assert result["peers"] == [peer(nodes[0]), peer(nodes[1])]
    assert result["skipped"][0]["address"] == "missing.sei.test"
    assert "A lookup failed" in result["skipped"][0]["reason"]
    assert ("validators.sei.test.", "A") in dns_stub.queries


async def test_dns_srv_records_give_targets_and_p2p_ports(
    sei_home: Path, run_handler: HandlerRunner, dns_stub: DnsStub, nodes: list[FakeCometBFT]
) -> None:
    dns_stub.add_srv("_p2p._tcp.sei.test", "node-a.sei.test", 26666, priority=10)
    dns_stub.add_srv("_p2p._tcp.sei.test", "node-b.sei.test", 26667, priority=20)
    dns_stub.add_a("node-a.sei.test", "127.0.0.3")
    dns_stub.add_a("node-b.sei.test", "127.0.0.4")
    result = await run_handler(
        TaskType.DISCOVER_PEERS,
        {
            "sources": [{"type": "dns", "srv": ["_p2p._tcp.sei.test"], "nameservers": [dns_stub.address]}],
            "rpcPort": rpc_port(nodes),
        },
    )
    assert result is not None
    assert result["peers"] == [peer(nodes[1], 26666), peer(nodes[2], 26667)]


@pytest.fixture
async def kube_api(tmp_path: Path, run_handler: HandlerRunner) -> AsyncIterator[FakeKubeApi]:
    """The agent seen as running with API access: the operator's own client (`KubeApi`), with a ServiceAccount's
    bearer token and CA, pointed at a fake pod-list API, handed to the handler as `TaskContext.kube`."""
    api = FakeKubeApi(tmp_path / "kube", namespace="sei")
    configuration = k8s_client.Configuration()
    configuration.host = f"https://127.0.0.1:{api.port}"
    configuration.ssl_ca_cert = str(api.service_account / "ca.crt")
    configuration.api_key = {"authorization": f"Bearer {api.token}"}
    client = await KubeApi(Connection(configuration, "sei")).open()
    run_handler.kube = client
    yield api
    await client.close()
    api.stop()


async def test_kubernetes_pods_by_label_selector_skip_this_pod_and_pods_not_running(
    sei_home: Path, run_handler: HandlerRunner, kube_api: FakeKubeApi, nodes: list[FakeCometBFT]
) -> None:
    labels = {"app": "sei", "sei.io/node": "rpc"}
    kube_api.add_pod("node-0", "127.0.0.9", labels)  # this agent's own pod (settings.pod_name)
    kube_api.add_pod("rpc-1-0", "127.0.0.2", labels)
    kube_api.add_pod("rpc-2-0", "127.0.0.3", labels, phase="Pending")
    kube_api.add_pod("rpc-3-0", "127.0.0.4", labels)
    kube_api.add_pod("other-0", "127.0.0.5", {"app": "other"})
    kube_api.page_size = 2  # the handler must follow `continue`
    result = await run_handler(
        TaskType.DISCOVER_PEERS,
        {
            "sources": [{"type": "kubernetes", "labelSelector": "app=sei,sei.io/node=rpc", "namespace": "sei"}],
            "rpcPort": rpc_port(nodes),
        },
    )
    assert result is not None
    assert result["peers"] == [peer(nodes[0]), peer(nodes[2])]
    assert result["skipped"] == [
        {"source": "sources[0] (kubernetes)", "address": "rpc-2-0", "reason": "pod not running or has no IP yet"}
    ]
    assert len(kube_api.requests) == 2
    query = parse_qs(urlsplit(kube_api.requests[1]).query)
    assert query == {"labelSelector": ["app=sei,sei.io/node=rpc"], "limit": ["500"], "continue": ["2"]}


async def test_kubernetes_api_refusal_fails_the_task_with_an_rbac_hint(
    sei_home: Path, run_handler: HandlerRunner, kube_api: FakeKubeApi
) -> None:
    kube_api.status_override = 403
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.DISCOVER_PEERS, {"sources": [{"type": "kubernetes", "labelSelector": "app=sei"}]})
    assert "labelSelector 'app=sei' in namespace 'default'" in caught.value.message
    assert ": 403 " in caught.value.message
    assert "list on pods" in caught.value.hint


async def test_kubernetes_source_outside_a_cluster_is_refused(sei_home: Path, run_handler: HandlerRunner) -> None:
    assert run_handler.kube is None  # local mode: the engine has no Kubernetes access to hand over
    with pytest.raises(TaskError, match="not running with Kubernetes API access"):
        await run_handler(TaskType.DISCOVER_PEERS, {"sources": [{"type": "kubernetes", "labelSelector": "app=sei"}]})


async def test_sources_are_merged_in_order_first_found_wins_and_max_peers_applies(
    sei_home: Path, run_handler: HandlerRunner, dns_stub: DnsStub, nodes: list[FakeCometBFT]
) -> None:
    dns_stub.add_a("all.sei.test", "127.0.0.2", "127.0.0.3", "127.0.0.4")
    static_for_node1 = f"{nodes[1].node_id}@node-1.public.example:26656"
    result = await run_handler(
        TaskType.DISCOVER_PEERS,
        {
            "sources": [
                {"type": "static", "addresses": [static_for_node1]},
                {"type": "dns", "hosts": ["all.sei.test"], "nameservers": [dns_stub.address]},
            ],
            "rpcPort": rpc_port(nodes),
            "maxPeers": 2,
        },
    )
    assert result is not None
    assert result["peers"] == [static_for_node1, peer(nodes[0])]
    assert [item["peers"] for item in result["sources"]] == [1, 2]


async def test_no_peers_at_all_fails_and_writes_nothing(
    sei_home: Path, run_handler: HandlerRunner, dns_stub: DnsStub, refused_port: Callable[..., int]
) -> None:
    dns_stub.add_a("empty.sei.test", "127.0.0.2")
    before = snapshot(sei_home)
    with pytest.raises(TaskError) as caught:
        await run_handler(
            TaskType.DISCOVER_PEERS,
            {
                "sources": [{"type": "dns", "hosts": ["empty.sei.test"], "nameservers": [dns_stub.address]}],
                "rpcPort": refused_port("127.0.0.2"),  # reserved and refusing: a node on 127.0.0.2 changes nothing
                "queryTimeoutSeconds": 1,
            },
        )
    assert caught.value.reason == "NoPeersFound"
    assert "127.0.0.2: cannot connect" in caught.value.message
    assert snapshot(sei_home) == before


async def test_peers_are_written_in_the_files_own_spelling(home: Path, run_handler: HandlerRunner) -> None:
    install_sample_config(home, underscores=True)
    address = f"{node_id_for('x')}@10.0.0.1:26656"
    await run_handler(TaskType.DISCOVER_PEERS, {"sources": [{"type": "static", "addresses": [address]}]})
    p2p = read_toml(home / "config" / "config.toml")["p2p"]
    assert p2p["persistent_peers"] == address
    assert "persistent-peers" not in p2p


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sources": []}, "params.sources: List should have at least 1 item"),
        ({"sources": [{"type": "static", "addresses": ["10.0.0.1:26656"]}]}, "'10.0.0.1:26656' is not <node id>@"),
        ({"sources": [{"type": "static", "addresses": [f"{'ab' * 20}@:26656"]}]}, "empty host"),
        ({"sources": [{"type": "static", "addresses": [f"{'ab' * 20}@bad_host:1"]}]}, "'bad_host' is not a valid host"),
        ({"sources": [{"type": "static", "addresses": []}]}, "addresses: List should have at least 1 item"),
        ({"sources": [{"type": "consul"}]}, "params.sources[0]"),
        (
            {"sources": [{"type": "ec2Tags", "region": "us-east-1", "tags": {}}]},
            "tags: Dictionary should have at least",
        ),
        ({"sources": [{"type": "ec2Tags", "tags": {"a": "b"}}]}, "region: required field is missing"),
        ({"sources": [{"type": "dns"}]}, "give at least one name in `hosts`"),
        ({"sources": [{"type": "dns", "hosts": ["a.b"], "nameservers": ["resolver.local"]}]}, "must be an IP address"),
        ({"sources": [{"type": "dns", "srv": ["_p2p._tcp."]}]}, "is not a valid SRV name"),
        ({"sources": [{"type": "static", "addresses": [f"{'ab' * 20}@h:1"]}], "rpcPort": 0}, "params.rpcPort"),
    ],
)
async def test_bad_params_are_refused_by_name_and_touch_nothing(
    sei_home: Path, run_handler: HandlerRunner, params: dict[str, Any], message: str
) -> None:
    before = snapshot(sei_home)
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.DISCOVER_PEERS, params)
    assert message in caught.value.message
    assert snapshot(sei_home) == before


async def test_a_home_without_config_toml_is_refused(home: Path, run_handler: HandlerRunner) -> None:
    with pytest.raises(TaskError, match=r"config\.toml not found"):
        await run_handler(TaskType.DISCOVER_PEERS, {"sources": [{"type": "static", "addresses": [f"{'ab' * 20}@h:1"]}]})
    assert not (home / "config" / "config.toml").exists()

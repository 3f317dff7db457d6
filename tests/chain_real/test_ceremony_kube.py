"""The flagship: a genesis ceremony driven end to end by NodeTask manifests applied with kubectl to the real
kube-apiserver tier, one agent process (`nodetask-agent run`, every shipped handler) per validator pod,
and the chain it assembles started with stock simd until all three validators sign.

The pods are API objects with bound ServiceAccount tokens (tests/operator/agents.py); each pod's home is what its
volume would hold: `simd init` wrote config and a full genesis (the seid-init container's role), the agent creates the
keys. The controller's part (the order of the tasks) is played by the test: apply, `kubectl wait`, next.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.chain_real.test_genesis_real import BALANCE, KEY_FILES, STAKE
from tests.fixtures.chain import ChainTools, ProcessGroup, SimdChain, SimdNode, rpc_get
from tests.fixtures.s3 import REGION
from tests.operator.agents import AgentFactory, AgentPod, agents
from tests.operator.kit import kubectl_wait, nodetask, status_of

pytestmark = [pytest.mark.chain, pytest.mark.kube]

__all__ = ["agents"]  # the operator tests' fixture: agent pods with their own tokens and homes

CHAIN_ID = "kube-ceremony-1"
NAMES = ["validator-0", "validator-1", "validator-2"]


def validator_home(pod: AgentPod, chain_tools: ChainTools, processes: ProcessGroup) -> SimdNode:
    """`simd init` in the pod's home (ports reserved, 250 ms blocks), keys removed for the agent to create."""
    factory = SimdChain(chain_tools, pod.home.parent, processes)
    node = factory._init(pod.home.name, CHAIN_ID, "127.0.0.1", None)  # the chain fixture's home recipe
    node.name = pod.name
    for relative in KEY_FILES:
        (node.home / relative).unlink()
    return node


def apply_and_wait(pods: list[AgentPod], step: str, task_type: str, params: Any, **spec: Any) -> None:
    """One step of the controller's plan: a NodeTask per pod (`params(pod)` when callable), applied with kubectl,
    then `kubectl wait --for=condition=Succeeded`."""
    for pod in pods:
        pod.ns.apply(nodetask(f"{pod.name}-{step}", pod.name, task_type, params(pod) if callable(params) else params))
    for pod in pods:
        name = f"{pod.name}-{step}"
        try:
            kubectl_wait(pod.ns, name, "Succeeded", timeout=120)
        except Exception:
            raise AssertionError(f"{name} did not succeed: {json.dumps(status_of(pod.ns, name))}") from None


async def test_ceremony_by_nodetasks_through_the_apiserver_starts_a_chain_all_three_sign(
    agents: AgentFactory, chain_tools: ChainTools, chain_processes: ProcessGroup, s3_settings: Any, s3_bucket: str
) -> None:
    pods = [agents.pod(name) for name in NAMES]
    nodes = {pod.name: validator_home(pod, chain_tools, chain_processes) for pod in pods}
    for pod in pods:
        pod.extra_env.update(
            {
                "SEI_CHAIN_ID": CHAIN_ID,
                "SEI_BECH32_PREFIX": "cosmos",
                "SEI_BOND_DENOM": "stake",
                "SEI_GENESIS_BUCKET": s3_bucket,
                "SEI_GENESIS_REGION": REGION,
                "AWS_ENDPOINT_URL_S3": s3_settings.s3_endpoint_url,
            }
        )
        agents.process(pod, shipped=True)  # one real agent process per pod, every shipped handler

    await asyncio.to_thread(
        apply_and_wait, pods, "identity", "generate-identity", lambda pod: {"chainId": CHAIN_ID, "moniker": pod.name}
    )
    gentx = {"stakingAmount": STAKE, "accountBalance": BALANCE, "host": "127.0.0.1"}
    await asyncio.to_thread(
        apply_and_wait, pods, "gentx", "generate-gentx", lambda pod: {**gentx, "p2pPort": nodes[pod.name].p2p_port}
    )
    await asyncio.to_thread(
        apply_and_wait, pods, "artifacts", "upload-genesis-artifacts", lambda pod: {"nodeName": pod.name}
    )
    assemble = {"accountBalance": BALANCE, "nodes": [{"name": name} for name in NAMES]}
    await asyncio.to_thread(apply_and_wait, pods[:1], "assemble", "assemble-and-upload-genesis", assemble)
    await asyncio.to_thread(apply_and_wait, pods, "genesis", "configure-genesis", {})
    await asyncio.to_thread(apply_and_wait, pods, "peers", "set-genesis-peers", {})

    assembled = status_of(pods[0].ns, "validator-0-assemble")["result"]
    genesis = [(node.config_dir / "genesis.json").read_bytes() for node in nodes.values()]
    assert len(set(genesis)) == 1 and assembled["validators"] == 3
    identities = {status_of(pod.ns, f"{pod.name}-identity")["result"]["validatorAddress"] for pod in pods}

    for node in nodes.values():
        node.start(wait_height=None)
    for node in nodes.values():
        await asyncio.to_thread(node.wait_for_height, 5, 90.0)
    first = nodes["validator-0"]
    commit = rpc_get(first.rpc_url, "block?height=5")["block"]["last_commit"]["signatures"]
    assert {sig["validator_address"] for sig in commit if sig["block_id_flag"] == 2} == identities

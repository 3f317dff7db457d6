"""Reads the real API server answers 429 (a busy server's priority and fairness, or a resource whose watch cache is
still initialising: "storage is (re)initializing") are asked again after Retry-After; writes are left to their
callers. The 429s are injected by an HTTP fault proxy in front of the real kube-apiserver."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.operator import kubeapi
from agent.operator.kubeapi import ApiError, KubeApi, load_connection
from tests.fixtures.httpfaults import HttpFaultProxy, http_fault_proxy
from tests.fixtures.kube import redirect_kubeconfig
from tests.operator.agents import AgentFactory
from tests.operator.kit import nodetask

pytestmark = pytest.mark.kube


@pytest.fixture
def proxy(agents: AgentFactory) -> Iterator[HttpFaultProxy]:
    cluster = agents.ns.cluster
    context = ssl.create_default_context(cafile=str(cluster.pki.ca_cert))
    yield from http_fault_proxy(f"https://127.0.0.1:{cluster.api_port}", ssl_context=context)


@pytest.fixture
def through_proxy(agents: AgentFactory, proxy: HttpFaultProxy, tmp_path: Path) -> KubeApi:
    pod = agents.pod("node-0")
    return KubeApi(load_connection(str(redirect_kubeconfig(pod.kubeconfig, tmp_path / "proxied", proxy.url))))


async def test_a_list_answered_429_is_asked_again_after_retry_after(
    agents: AgentFactory, proxy: HttpFaultProxy, through_proxy: KubeApi
) -> None:
    agents.ns.apply(nodetask("mine", "node-0", "mark-ready"))
    throttled = proxy.status(429, method="GET", path="/nodetasks", times=2, retry_after="1")

    async with through_proxy as api:
        items = await api.list_nodetasks(agents.ns.name, field_selector="spec.targetPod=node-0")

    assert throttled.hits == 2
    assert [item["metadata"]["name"] for item in items] == ["mine"]


async def test_a_read_throttled_past_the_budget_fails_with_the_429(
    agents: AgentFactory, proxy: HttpFaultProxy, through_proxy: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubeapi, "READ_THROTTLE_BUDGET_SECONDS", 0.5)
    throttled = proxy.status(429, method="GET", path="/nodetasks", times=1000, retry_after="0")

    async with through_proxy as api:
        with pytest.raises(ApiError) as refused:
            await api.list_nodetasks(agents.ns.name)

    assert refused.value.status == 429 and refused.value.retryable
    assert 2 <= throttled.hits <= 10  # asked again every 0.1 s (the floor) until the budget ran out


async def test_a_status_patch_answered_429_is_not_retried_by_the_client(
    agents: AgentFactory, proxy: HttpFaultProxy, through_proxy: KubeApi
) -> None:
    agents.ns.apply(nodetask("mine", "node-0", "mark-ready"))
    throttled = proxy.status(429, method="PATCH", path="/status", times=5, retry_after="1")

    async with through_proxy as api:
        with pytest.raises(ApiError) as refused:
            await api.patch_status(agents.ns.name, "mine", {"phase": "Running", "run": 1})

    assert refused.value.status == 429 and throttled.hits == 1  # the status writer owns the backoff for writes

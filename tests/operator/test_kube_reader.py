"""Tasks read the Kubernetes API through the agent's own client (`KubeApi` as `TaskContext.kube`): pods listed by
label selector on the real apiserver, with the pod's ServiceAccount token, and an RBAC refusal explained."""

from __future__ import annotations

from typing import Any

import pytest

from agent.models import TaskError
from agent.operator.kubeapi import KubeApi, load_connection
from tests.fixtures.kube import KubeNamespace

pytestmark = pytest.mark.kube


def allow_listing_pods(namespace: KubeNamespace, service_account: str) -> None:
    namespace.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods")
    subject = f"--serviceaccount={namespace.name}:{service_account}"
    namespace.kubectl("create", "rolebinding", "pod-reader", "--role=pod-reader", subject)


async def test_pods_are_listed_by_label_selector_with_the_agents_own_credentials(
    kube_namespace: KubeNamespace,
) -> None:
    kube_namespace.service_account("agent")
    allow_listing_pods(kube_namespace, "agent")
    _, kubeconfig = kube_namespace.pod_identity("node-0", "agent")
    for name, labels in [("rpc-0", {"app": "sei", "role": "rpc"}), ("rpc-1", {"app": "sei", "role": "rpc"})]:
        kube_namespace.pod(name, "agent", labels=labels)
    kube_namespace.pod("other-0", "agent", labels={"app": "other"})

    async with KubeApi(load_connection(str(kubeconfig), namespace=kube_namespace.name)) as api:
        pods: list[dict[str, Any]] = await api.list_pods(kube_namespace.name, "app=sei,role=rpc")

    assert sorted(pod["metadata"]["name"] for pod in pods) == ["rpc-0", "rpc-1"]


async def test_a_missing_rbac_rule_fails_with_a_hint_naming_it(kube_namespace: KubeNamespace) -> None:
    kube_namespace.service_account("agent")  # no Role: the token may not list pods
    _, kubeconfig = kube_namespace.pod_identity("node-0", "agent")

    async with KubeApi(load_connection(str(kubeconfig), namespace=kube_namespace.name)) as api:
        with pytest.raises(TaskError) as raised:
            await api.list_pods(kube_namespace.name, "app=sei")

    assert f"in namespace {kube_namespace.name!r}" in raised.value.message and "403" in raised.value.message
    assert "list on pods" in raised.value.hint

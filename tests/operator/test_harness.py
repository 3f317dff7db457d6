"""The real-apiserver harness itself: identities it mints, restarts it survives, faults its proxy injects."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.kube import KubeCluster, KubectlError, KubeNamespace, redirect_kubeconfig

pytestmark = pytest.mark.kube


def whoami(cluster: KubeCluster, kubeconfig: Path) -> dict[str, Any]:
    output = cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)
    user: dict[str, Any] = json.loads(output.stdout)["status"]["userInfo"]
    return user


def test_pod_bound_token_authenticates_as_service_account_with_pod_claims(kube_namespace: KubeNamespace) -> None:
    kube_namespace.service_account("agent")
    pod, kubeconfig = kube_namespace.pod_identity("node-0", "agent")

    user = whoami(kube_namespace.cluster, kubeconfig)

    assert user["username"] == f"system:serviceaccount:{kube_namespace.name}:agent"
    assert "system:serviceaccounts" in user["groups"]
    extra = user["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["node-0"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]


def test_pod_bound_token_is_rejected_once_its_pod_is_deleted(kube_namespace: KubeNamespace) -> None:
    kube_namespace.service_account("agent")
    _, kubeconfig = kube_namespace.pod_identity("node-0", "agent")
    kube_namespace.kubectl("delete", "pod", "node-0", "--wait=false")

    with pytest.raises(KubectlError, match=r"Unauthorized|must be logged in"):
        whoami(kube_namespace.cluster, kubeconfig)


def test_certificate_identity_carries_user_and_groups(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    user_name = "system:serviceaccount:elsewhere:agent"
    kubeconfig = kube_cluster.certificate_kubeconfig(
        user_name, ["system:serviceaccounts", "system:serviceaccounts:elsewhere"], tmp_path / "cert.kubeconfig"
    )

    user = whoami(kube_cluster, kubeconfig)

    assert user["username"] == user_name
    assert {"system:serviceaccounts", "system:serviceaccounts:elsewhere"} <= set(user["groups"])
    # Without RBAC the identity can do nothing, which is what the RBAC tests build on.
    denied = kube_cluster.kubectl("get", "pods", "-n", "default", kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_apiserver_restart_keeps_objects(kube_namespace: KubeNamespace) -> None:
    cluster = kube_namespace.cluster
    kube_namespace.kubectl("create", "configmap", "survivor", "--from-literal=k=v")

    cluster.stop_apiserver()
    down = cluster.kubectl(
        "get", "configmap", "survivor", "--request-timeout=3s", namespace=kube_namespace.name, check=False
    )
    cluster.start_apiserver()

    assert down.returncode != 0
    assert kube_namespace.get("configmap", "survivor")["data"] == {"k": "v"}


@pytest.fixture
def proxied(
    kube_cluster: KubeCluster, fault_proxy_factory: type[FaultProxy], tmp_path: Path
) -> tuple[FaultProxy, Path]:
    proxy = fault_proxy_factory("127.0.0.1", kube_cluster.api_port).start()
    kubeconfig = redirect_kubeconfig(
        kube_cluster.kubeconfig, tmp_path / "proxied.kubeconfig", f"https://{proxy.address}"
    )
    return proxy, kubeconfig


def test_fault_proxy_passes_tls_through_untouched(kube_cluster: KubeCluster, proxied: tuple[FaultProxy, Path]) -> None:
    proxy, kubeconfig = proxied
    proxy.latency = 0.05

    assert whoami(kube_cluster, kubeconfig)["username"] == "admin"
    assert proxy.accepted >= 1


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
def test_fault_proxy_faults_make_requests_fail(
    kube_cluster: KubeCluster, proxied: tuple[FaultProxy, Path], fault: str
) -> None:
    proxy, kubeconfig = proxied
    setattr(proxy, fault, True)

    result = kube_cluster.kubectl("get", "namespaces", "--request-timeout=2s", kubeconfig=kubeconfig, check=False)

    assert result.returncode != 0


def test_fault_proxy_drop_cuts_a_live_watch(kube_cluster: KubeCluster, proxied: tuple[FaultProxy, Path]) -> None:
    proxy, _ = proxied
    connection = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=30, context=kube_cluster.ssl_context())
    connection.request("GET", "/api/v1/namespaces?watch=true")
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.readline())["type"] == "ADDED"  # the stream is live

    assert proxy.drop_connections() >= 1

    ended_by: BaseException | None = None
    try:
        while response.readline():  # drains what was buffered; then the cut surfaces as EOF or a reset
            pass
    except (OSError, http.client.HTTPException) as error:
        ended_by = error
    assert not isinstance(ended_by, TimeoutError), "the stream stayed open: the drop did not reach it"

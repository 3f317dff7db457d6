"""Helpers for the install tests: the helm binary, chart rendering, the agent's identities in an installed namespace.

helm comes from the same cache as kube-apiserver (`scripts/kube-tools.sh` builds it from the Go module proxy). Like
the kube tier, a missing helm skips locally and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kube import BUILD_COMMAND, K8S_VERSION, KubeCluster, KubectlError, tool_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
EXAMPLES = DEPLOY / "examples"
NODETASK_EXAMPLES = EXAMPLES / "nodetasks"
CRD_FILE = REPO_ROOT / "crds" / "nodetasks.sei.io.yaml"
POLICY_DENIED = "ValidatingAdmissionPolicy"


# --- helm ----------------------------------------------------------------------------------------------------------


def helm_binary() -> Path:
    """The cached helm, else skip (locally) or fail (CI=true), naming the command that builds it."""
    helm = tool_dir() / "helm"
    if os.access(helm, os.X_OK):
        return helm
    message = f"helm is missing from {tool_dir()}; run `{BUILD_COMMAND}` (it builds helm from the Go module proxy)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true requires it)", pytrace=False)
    pytest.skip(message)


def run_helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [str(helm_binary()), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/nodetask-helm/cache", "HELM_CONFIG_HOME": "/tmp/nodetask-helm/config"}
    env["HELM_DATA_HOME"] = "/tmp/nodetask-helm/data"
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=REPO_ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} -> exit {result.returncode}\n{result.stderr}{result.stdout}")
    return result


def render_chart(namespace: str, release: str = "nodetask-agent", values: Sequence[str] = ()) -> str:
    """`helm template` of the repository's chart, for the Kubernetes version the kube tier runs."""
    argv = ["template", release, ".", f"--namespace={namespace}", f"--kube-version={K8S_VERSION}"]
    for value in values:
        argv.append(f"--set={value}")
    return run_helm(*argv).stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def only(docs: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kustomize_build(path: Path, cluster: KubeCluster | None = None) -> list[dict[str, Any]]:
    """`kubectl kustomize` (kubectl's built-in kustomize, the one `kubectl apply -k` runs)."""
    from tests.fixtures.kube import find_kubectl

    kubectl = find_kubectl()
    assert kubectl is not None, "kubectl is missing (pip install -e '.[test]')"
    result = subprocess.run([str(kubectl), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return documents(result.stdout)


# --- an installation and the agent identities in it ----------------------------------------------------------------


def unique_namespace(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@dataclass
class Installation:
    """The agent's objects installed in `namespace` one way (helm or kustomize), with identities to act as."""

    how: str
    cluster: KubeCluster
    namespace: str
    service_account: str
    policy: str
    tmp: Path
    _identities: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("namespace", self.namespace)
        return self.cluster.kubectl(*args, **kwargs)

    def agent(self, pod_name: str) -> tuple[dict[str, Any], Path]:
        """A node pod running as the agent's ServiceAccount, and a kubeconfig with a token bound to it (what the
        kubelet would project into the agent container). Cached per pod name."""
        if pod_name not in self._identities:
            self.cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod_name, "labels": {"sei.io/nodetask-agent": "true"}},
                    "spec": {
                        "serviceAccountName": self.service_account,
                        "automountServiceAccountToken": False,
                        "containers": [{"name": "nodetask-agent", "image": "nodetask-agent:test"}],
                    },
                },
                namespace=self.namespace,
            )
            pod = self.cluster.get_json("pod", pod_name, namespace=self.namespace)
            kubeconfig = self.cluster.pod_token_kubeconfig(self.namespace, pod, self.tmp / f"{pod_name}.kubeconfig")
            self._identities[pod_name] = (pod, kubeconfig)
        return self._identities[pod_name]

    def as_agent(self, pod_name: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """kubectl as the agent of `pod_name` (namespace defaults to the installation's)."""
        _, kubeconfig = self.agent(pod_name)
        return self.cluster.kubectl(*args, namespace=self.namespace, kubeconfig=kubeconfig, check=check)

    def nodetask(self, name: str, target_pod: str, **spec: Any) -> dict[str, Any]:
        """Create (as admin, like a controller) a NodeTask addressed to `target_pod`."""
        self.cluster.apply(
            {
                "apiVersion": "sei.io/v1alpha1",
                "kind": "NodeTask",
                "metadata": {"name": name, "labels": {"sei.io/target-pod": target_pod}},
                "spec": {"targetPod": target_pod, "type": "mark-ready", **spec},
            },
            namespace=self.namespace,
        )
        task: dict[str, Any] = self.cluster.get_json("nodetask", name, namespace=self.namespace)
        return task

    def wait_policy_enforced(self, timeout: float = 60.0) -> None:
        """Wait until the admission policy refuses a write to another pod's NodeTask (policies load asynchronously)."""
        self.nodetask("policy-probe", "policy-probe-other")
        deadline = time.monotonic() + timeout
        while True:
            result = self.as_agent(
                "policy-probe-0", "patch", "nodetask", "policy-probe", "--subresource=status", "--type=merge",
                "-p", '{"status":{"phase":"Running"}}',
            )  # fmt: skip
            if result.returncode != 0 and POLICY_DENIED in result.stderr:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"policy {self.policy} not enforced after {timeout:.0f}s: {result.stderr}")
            time.sleep(0.5)


def install_chart(cluster: KubeCluster, tmp: Path, release: str = "agents") -> Installation:
    """`helm install` of the repository's chart into a new namespace, as a cluster admin would."""
    namespace = unique_namespace("chart")
    cluster.kubectl("create", "namespace", namespace)
    run_helm("install", release, ".", f"--namespace={namespace}", "--wait=false", kubeconfig=cluster.kubeconfig)
    docs = documents(render_chart(namespace, release))
    policy = only(docs, "ValidatingAdmissionPolicy")["metadata"]["name"]
    service_account = only(docs, "ServiceAccount")["metadata"]["name"]
    return Installation("helm", cluster, namespace, service_account, policy, tmp)


def overlay_kustomization(namespace: str, overlay_dir: Path) -> str:
    """The overlay docs/helm.md gives for installing deploy/ into another namespace (kustomize wants a relative path
    to this checkout's deploy/)."""
    return yaml.safe_dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": namespace,
            "resources": [os.path.relpath(DEPLOY, overlay_dir)],
        }
    )


def install_kustomize(cluster: KubeCluster, tmp: Path) -> Installation:
    """`kubectl apply -k` of an overlay of deploy/ that only sets the namespace (the documented recipe)."""
    namespace = unique_namespace("kustomize")
    overlay = tmp / "overlay"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(overlay_kustomization(namespace, overlay))
    cluster.kubectl("apply", "-k", str(overlay))
    return Installation("kustomize", cluster, namespace, "nodetask-agent", "nodetask-agent-pod-scope", tmp)


@pytest.fixture(scope="module", params=["helm", "kustomize"])
def installation(
    request: pytest.FixtureRequest, kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    """The agent's objects installed by the chart and by deploy/, one module-wide namespace each."""
    tmp = tmp_path_factory.mktemp(f"install-{request.param}")
    installer: Callable[[KubeCluster, Path], Installation] = (
        install_chart if request.param == "helm" else install_kustomize
    )
    installed = installer(kube_cluster, tmp)
    installed.wait_policy_enforced()
    yield installed


def forbidden(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and bool(re.search(r"forbidden", result.stderr, re.IGNORECASE))


def can_i(installation: Installation, pod_name: str, verb: str, resource: str, *extra: str) -> bool:
    """The API server's own authorization answer for the agent (SelfSubjectAccessReview)."""
    result = installation.as_agent(pod_name, "auth", "can-i", verb, resource, *extra)
    answer = result.stdout.strip()
    if answer not in ("yes", "no"):
        raise KubectlError(["kubectl", "auth", "can-i", verb, resource, *extra], result)
    return answer == "yes"


def status_patch(phase: str = "Running") -> str:
    return json.dumps({"status": {"phase": phase}})

"""In-cluster credentials read without the kubernetes library, against the real API server: the ServiceAccount
directory a kubelet mounts (token, ca.crt) and the KUBERNETES_SERVICE_* variables it sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from agent.models.settings import AgentSettings
from agent.operator import kubeapi
from agent.operator.kubeapi import ApiError, InClusterConfiguration, KubeApi, load_connection
from tests.operator.agents import AgentFactory
from tests.operator.kit import nodetask

pytestmark = pytest.mark.kube


@pytest.fixture
def service_account(agents: AgentFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A mounted-token directory for a pod's ServiceAccount, and the environment a kubelet gives the pod."""
    pod = agents.pod("node-0")
    document = yaml.safe_load(pod.kubeconfig.read_text())
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(document["users"][0]["user"]["token"] + "\n")
    shutil.copy(agents.ns.cluster.pki.ca_cert, directory / "ca.crt")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(agents.ns.cluster.api_port))
    return directory


async def test_the_pods_service_account_is_used_without_a_kubeconfig(
    agents: AgentFactory, service_account: Path
) -> None:
    agents.ns.apply(nodetask("mine", "node-0", "mark-ready"))
    connection = load_connection(
        namespace=agents.ns.name, service_account_dir=str(service_account), settings=AgentSettings.from_env()
    )

    assert isinstance(connection.configuration, InClusterConfiguration)
    async with KubeApi(connection) as api:
        items = await api.list_nodetasks(agents.ns.name, field_selector="spec.targetPod=node-0")
    assert [item["metadata"]["name"] for item in items] == ["mine"]


async def test_a_rotated_token_is_read_again(
    agents: AgentFactory, service_account: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = load_connection(
        namespace=agents.ns.name, service_account_dir=str(service_account), settings=AgentSettings.from_env()
    )
    monkeypatch.setattr(kubeapi, "TOKEN_REREAD_SECONDS", 0.0)
    (service_account / "token").write_text("not-a-token-the-api-server-issued\n")

    async with KubeApi(connection) as api:
        with pytest.raises(ApiError) as refused:
            await api.list_nodetasks(agents.ns.name)
    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("missing", "phrase"),
    [("KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_PORT"), ("ca.crt", "ca.crt"), ("token", "token")],
)
def test_an_unusable_service_account_is_refused_at_start_naming_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str, phrase: str
) -> None:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    for name in ("token", "ca.crt"):
        if name != missing:
            (directory / name).write_text("x\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    if missing != "KUBERNETES_SERVICE_PORT":
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    else:
        monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)

    with pytest.raises(ValueError, match=phrase):
        load_connection(service_account_dir=str(directory), settings=AgentSettings.from_env())

"""The image, really built (buildah, scripts/build-image.sh) and really run (podman): it prints its version, runs as
uid 65532 on a read-only root file system writing only to its volumes, carries its provenance labels, holds exactly
the pinned versions (constraints.txt) and no kubernetes package, stays under 200 MB, and the agent in it serves a
NodeTask against the real API server tier with nothing but its pod's ServiceAccount token, mounted where a kubelet
mounts it.

The image is built before pytest starts, by scripts/test.sh (`scripts/build-image.sh
localhost/nodetask-agent:test-<checkout>`, minutes when cold: it may make a local Debian base first), and named here
by NODETASK_IMAGE; these tests never build it, so no test's timeout has to cover a build. Like the kube tier, a
missing image skips them locally and fails them under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fixtures.kube import KubeCluster
from tests.fixtures.waiting import poll_until

from .conftest import NODETASK_EXAMPLES, REPO_ROOT, Installation, install_kustomize

pytestmark = [pytest.mark.image, pytest.mark.slow]

POD = "sei-node-0"
AGENT_UID = 65532
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
CONSTRAINTS = REPO_ROOT / "constraints.txt"


MAX_IMAGE_BYTES = 200_000_000
BUILD = "scripts/build-image.sh localhost/nodetask-agent:test && export NODETASK_IMAGE=localhost/nodetask-agent:test"


def unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true requires the image tier)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def image() -> str:
    """The image scripts/test.sh built for this run (NODETASK_IMAGE)."""
    if shutil.which("podman") is None:
        unavailable("podman is missing; run scripts/image-tools.sh (apt-get install buildah podman mmdebstrap)")
    name = os.environ.get("NODETASK_IMAGE", "")
    if not name:
        unavailable(f"NODETASK_IMAGE is not set: scripts/test.sh builds the image first; by hand: `{BUILD}`")
    if podman("image", "exists", name).returncode != 0:
        unavailable(f"NODETASK_IMAGE={name} does not exist; build it: `{BUILD}`")
    return name


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *GLOBAL, *args], capture_output=True, text=True, timeout=timeout, check=False)


GLOBAL = ["--runtime", "runc"] if shutil.which("runc") else []
"""crun refuses hosts whose cgroups are in hybrid mode (nested sandboxes, some CI runners); runc runs there."""
# Exactly the pod's restrictions (deploy/examples/statefulset.yaml): read-only root, a tmpfs /tmp, no capabilities.
# The explicit ulimits stay within what a nested sandbox allows (podman's defaults ask for more than it may set).
RESTRICTED = [
    "--read-only", "--tmpfs", "/tmp", "--cap-drop=ALL", "--security-opt=no-new-privileges",
    "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", "--network", "host",
]  # fmt: skip


def test_the_image_prints_its_version(image: str) -> None:
    ran = podman("run", "--rm", *RESTRICTED, image, "version")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"nodetask-agent {VERSION}"


def test_the_image_runs_as_a_non_root_user_on_a_read_only_root(image: str) -> None:
    probe = "import os; print(os.getuid(), os.getgid()); open('/opt/x', 'w')"
    ran = podman("run", "--rm", *RESTRICTED, "--entrypoint", "python", image, "-c", probe)
    assert ran.stdout.split() == [str(AGENT_UID), str(AGENT_UID)]
    assert "Read-only file system" in ran.stderr or "Permission denied" in ran.stderr


def test_the_agent_in_the_image_runs_the_quickstart_writing_only_to_its_home(image: str, tmp_path: Path) -> None:
    home = tmp_path / "sei"
    home.mkdir()
    os.chown(home, AGENT_UID, AGENT_UID)
    examples = REPO_ROOT / "examples" / "quickstart"
    ran = podman(
        "run", "--rm", *RESTRICTED, "-v", f"{home}:/sei", "-v", f"{examples}:/plan:ro", image,
        "local", "/plan", "--home", "/sei", timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "task(s) succeeded" in ran.stdout
    assert (home / "config" / "node_key.json").exists() and (home / "nodetask-agent.db").exists()


def test_the_image_carries_its_provenance(image: str) -> None:
    inspected = podman("image", "inspect", image)
    labels = json.loads(inspected.stdout)[0]["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if revision.returncode == 0:
        assert labels["org.opencontainers.image.revision"] == revision.stdout.strip()
    assert labels["org.opencontainers.image.source"]


def test_the_image_holds_exactly_the_pinned_versions_and_no_kubernetes(image: str) -> None:
    probe = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    ran = podman("run", "--rm", *RESTRICTED, "--entrypoint", "python", image, "-c", probe)
    assert ran.returncode == 0, ran.stderr
    installed = {normalized(name): version for name, version in json.loads(ran.stdout).items()}
    pinned = {
        normalized(name): version
        for name, version in (line.split("==") for line in CONSTRAINTS.read_text().splitlines() if "==" in line)
    }

    assert installed.pop("nodetask-agent") == VERSION
    assert {
        name: (version, pinned.get(name)) for name, version in installed.items() if pinned.get(name) != version
    } == {}
    assert "kubernetes" not in installed and "pip" not in installed and "setuptools" not in installed
    assert {"kopf", "pydantic", "pynacl", "boto3"} <= installed.keys()


def test_every_library_loads_in_the_image_and_botocore_keeps_the_services_the_agent_uses(image: str) -> None:
    """Stripped extension modules still load (on the base's own libraries), and the pruned botocore still builds the
    clients the agent (S3, EC2) and the AWS credential chain (STS, SSO, SSO OIDC, sign-in) create."""
    probe = (
        "import aiohttp, coincurve, Crypto.Hash.keccak, cryptography.hazmat.primitives.asymmetric.ed25519, h2, ijson, "
        "kopf, lz4.frame, multidict, nacl.bindings, peewee, prometheus_client, pydantic_core, tomlkit, yaml, yarl, "
        "zstandard\n"
        "zstandard.ZstdCompressor().compress(b'x'); yaml.CSafeLoader; nacl.bindings.crypto_secretbox_easy\n"
        "import boto3\n"
        "for service in ('s3', 'ec2', 'sts', 'sso', 'sso-oidc', 'signin'):\n"
        "    boto3.client(service, region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='y')\n"
        "print('loaded')"
    )
    ran = podman("run", "--rm", *RESTRICTED, "--entrypoint", "python", image, "-c", probe)

    assert ran.returncode == 0 and ran.stdout.strip() == "loaded", ran.stderr[-4000:]


def test_the_image_is_at_most_200_mb(image: str) -> None:
    inspected = podman("image", "inspect", "--format", "{{.Size}}", image)
    assert inspected.returncode == 0, inspected.stderr

    assert int(inspected.stdout.strip()) <= MAX_IMAGE_BYTES


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture
def installed(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Installation:
    installation = install_kustomize(kube_cluster, tmp_path_factory.mktemp("image-run"))
    installation.wait_policy_enforced()
    return installation


@pytest.fixture
def agent_container(image: str, installed: Installation, tmp_path: Path, free_port: int) -> Iterator[str]:
    """`nodetask-agent run` in the image, as the sidecar runs it: the pod's bound ServiceAccount token and the cluster's
    CA where a kubelet mounts them, `KUBERNETES_SERVICE_*` and downward-API env, the node's home as its only writable
    volume (host network: the test's API server listens on the host's loopback). No kubeconfig: the image has no
    kubernetes package to read one."""
    pod, kubeconfig = installed.agent(POD)
    home = tmp_path / "sei"
    home.mkdir()
    os.chown(home, AGENT_UID, AGENT_UID)
    service_account = tmp_path / "serviceaccount"
    service_account.mkdir()
    (service_account / "token").write_text(yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"] + "\n")
    shutil.copy(installed.cluster.pki.ca_cert, service_account / "ca.crt")
    for path in (service_account, *service_account.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    name = f"nodetask-agent-test-{free_port}"
    environment = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(installed.cluster.api_port),
        "POD_NAME": POD,
        "POD_NAMESPACE": installed.namespace,
        "POD_UID": pod["metadata"]["uid"],
        "NODETASK_HTTP_PORT": str(free_port),
        "NODETASK_HTTP_HOST": "127.0.0.1",
        "SEI_CHAIN_ID": "sei-devnet-1",
    }
    started = podman(
        "run", "--detach", "--name", name, *RESTRICTED,
        "-v", f"{home}:/sei", "-v", f"{service_account}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
        *[f"--env={key}={value}" for key, value in environment.items()], image, "run",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield name
    finally:
        podman("stop", "--time", "30", name, timeout=90)
        podman("rm", "--force", name)


def running(name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"


@pytest.mark.kube
def test_the_agent_in_the_image_serves_a_nodetask_against_the_api_server(
    installed: Installation, agent_container: str
) -> None:
    installed.kubectl("apply", "-f", str(NODETASK_EXAMPLES / "mark-ready.yaml"))

    def phase() -> str | None:
        task = installed.cluster.get_json("nodetask", f"{POD}-mark-ready", namespace=installed.namespace)
        value = task.get("status", {}).get("phase")
        return value if value in ("Succeeded", "Failed") else None

    def alive() -> bool:
        if running(agent_container):
            return True
        logs = podman("logs", agent_container)
        pytest.fail(f"the agent's container stopped:\n{(logs.stdout + logs.stderr)[-4000:]}")

    outcome = poll_until(phase, what="the mark-ready NodeTask to finish", timeout=180, alive=alive)
    logs = podman("logs", agent_container).stderr
    assert outcome == "Succeeded", logs[-4000:]
    assert "forbidden" not in logs.lower(), logs[-4000:]

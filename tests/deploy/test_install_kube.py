"""The shipped install on the real API server: the chart (rendered by the real helm) and deploy/ (kubectl apply -k),
their RBAC and admission policy exercised by the agent's own identity: a ServiceAccount token bound to a node pod."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.fixtures.kube import KubeCluster, KubeNamespace

from .conftest import (
    DEPLOY,
    EXAMPLES,
    NODETASK_EXAMPLES,
    POLICY_DENIED,
    Installation,
    can_i,
    documents,
    forbidden,
    only,
    render_chart,
    run_helm,
    status_patch,
    unique_namespace,
)

pytestmark = pytest.mark.kube

MONITORING_CRDS = Path(__file__).parent / "data" / "monitoring-crds.yaml"


# --- the artifacts are accepted by the API server ------------------------------------------------------------------


def test_helm_lint_passes_with_strict_checks() -> None:
    result = run_helm("lint", ".", "--strict", "--kube-version=1.37.2")
    assert "0 chart(s) failed" in result.stdout


def test_chart_renders_and_passes_server_side_dry_run(kube_namespace: KubeNamespace) -> None:
    rendered = render_chart(kube_namespace.name)

    applied = kube_namespace.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered).stdout

    kinds = {doc["kind"] for doc in documents(rendered)}
    assert kinds == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    assert applied.count("(server dry run)") == len(documents(rendered))


def test_chart_with_monitoring_passes_server_side_dry_run_against_the_monitoring_schemas(
    kube_cluster: KubeCluster, kube_namespace: KubeNamespace
) -> None:
    # Test-only CRDs that carry prometheus-operator's field names and types for what the chart renders, and refuse
    # any other field: a misspelt ServiceMonitor or PrometheusRule field fails here.
    kube_cluster.kubectl("apply", "-f", str(MONITORING_CRDS))
    for crd in documents(MONITORING_CRDS.read_text()):
        kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=60s")
    rendered = render_chart(
        kube_namespace.name,
        "agents",
        values=[
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "metrics.grafanaDashboard.enabled=true",
        ],
    )

    result = kube_namespace.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=rendered, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(documents(rendered))
    for applied in ("service/agents", "servicemonitor.monitoring.coreos.com/", "prometheusrule.monitoring.coreos.com/",
                    "configmap/agents-nodetask-agent-dashboard"):  # fmt: skip
        assert applied in result.stdout


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ["serviceAccountName: agents-nodetask-agent", "restartPolicy: Always", "(Deny): each pod's agent",
              '- name: NODETASK_LOG_FORMAT', 'value: "json"']),
        (
            ["logFormat=text", "admissionPolicy.enabled=false", "serviceAccount.create=false",
             "serviceAccount.name=sei-node", "metrics.service.enabled=true"],
            ["serviceAccountName: sei-node", "(existing, not managed by this release)",
             "WARNING: admissionPolicy.enabled=false", "Service agents-nodetask-agent-metrics", 'value: "text"'],
        ),
    ],
    ids=["defaults", "existing-account-no-policy"],
)  # fmt: skip
def test_helm_install_notes_say_what_was_installed(
    kube_cluster: KubeCluster, values: list[str], expected: list[str]
) -> None:
    namespace = "notes-check"
    kube_cluster.kubectl("create", "namespace", namespace, check=False)
    settings = [f"--set={value}" for value in values]

    result = run_helm("install", "agents", ".", f"--namespace={namespace}", "--dry-run=server", *settings,
                      kubeconfig=kube_cluster.kubeconfig)  # fmt: skip

    notes = result.stdout[result.stdout.index("NOTES:") :]
    for line in expected:
        assert line in notes


@pytest.mark.parametrize(
    "values",
    [[], ["rbac.extraRules[0].apiGroups={}", "rbac.extraRules[0].resources={pods}", "rbac.extraRules[0].verbs={list}"]],
    ids=["defaults", "extra-rules"],
)
def test_helm_install_notes_list_every_verb_the_role_grants(kube_cluster: KubeCluster, values: list[str]) -> None:
    namespace = "notes-check"
    kube_cluster.kubectl("create", "namespace", namespace, check=False)
    role = only(documents(render_chart(namespace, release="agents", values=values)), "Role")

    result = run_helm("install", "agents", ".", f"--namespace={namespace}", "--dry-run=server",
                      *[f"--set={value}" for value in values], kubeconfig=kube_cluster.kubeconfig)  # fmt: skip

    notes = result.stdout[result.stdout.index("NOTES:") :]
    for rule in role["rules"]:
        assert f"{','.join(rule['resources'])} {'/'.join(rule['verbs'])}" in notes, rule


def test_kubectl_apply_k_deploy_installs_the_agent_objects(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "-k", str(DEPLOY))

    namespace = kube_cluster.get_json("namespace", "sei-nodes")
    role = kube_cluster.get_json("role", "nodetask-agent", namespace="sei-nodes")
    binding = kube_cluster.get_json("rolebinding", "nodetask-agent", namespace="sei-nodes")
    assert namespace["metadata"]["labels"]["sei.io/nodetask-agent-policy"] == "enforced"
    assert {rule["resources"][0] for rule in role["rules"]} == {"nodetasks", "nodetasks/status", "events"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "nodetask-agent", "namespace": "sei-nodes"}]
    kube_cluster.get_json("validatingadmissionpolicy", "nodetask-agent-pod-scope")
    kube_cluster.get_json("crd", "nodetasks.sei.io")


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml")) + sorted(NODETASK_EXAMPLES.glob("*.yaml"))


@pytest.fixture(scope="module")
def nodetask_crd(kube_cluster: KubeCluster) -> None:
    """The shipped CRD, established (idempotent: other tests apply the same file)."""
    kube_cluster.kubectl("apply", "-f", str(DEPLOY / "crds" / "nodetasks.sei.io.yaml"))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd/nodetasks.sei.io", "--timeout=60s")


@pytest.mark.parametrize("example", example_files(), ids=lambda path: path.stem)
def test_every_deploy_example_passes_server_side_dry_run(
    nodetask_crd: None, kube_namespace: KubeNamespace, example: Path
) -> None:
    result = kube_namespace.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(example), check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(documents(example.read_text()))


# --- what the agent's identity may do ------------------------------------------------------------------------------


def test_agent_can_read_watch_and_select_its_own_tasks(installation: Installation) -> None:
    installation.nodetask("own-read", "node-a-0")

    listed = installation.as_agent(
        "node-a-0", "get", "nodetasks", "--field-selector=spec.targetPod=node-a-0", "-o", "json", check=True
    )
    single = installation.as_agent("node-a-0", "get", "nodetask", "own-read", "-o", "json", check=True)

    assert "own-read" in {item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]}
    assert json.loads(single.stdout)["spec"]["targetPod"] == "node-a-0"
    assert can_i(installation, "node-a-0", "watch", "nodetasks.sei.io")


def test_agent_can_patch_its_own_tasks_status(installation: Installation) -> None:
    installation.nodetask("own-status", "node-a-0")

    result = installation.as_agent(
        "node-a-0", "patch", "nodetask", "own-status", "--subresource=status", "--type=merge", "-p", status_patch()
    )

    assert result.returncode == 0, result.stderr
    assert installation.cluster.get_json("nodetask", "own-status", namespace=installation.namespace)["status"] == {
        "phase": "Running"
    }


def test_agent_can_post_a_core_event_about_its_task(installation: Installation) -> None:
    task = installation.nodetask("own-event", "node-a-0")
    pod, kubeconfig = installation.agent("node-a-0")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "own-event-"},
        "type": "Normal",
        "reason": "Started",
        "message": "run 1 started",
        "involvedObject": {
            "apiVersion": "sei.io/v1alpha1",
            "kind": "NodeTask",
            "name": "own-event",
            "namespace": installation.namespace,
            "uid": task["metadata"]["uid"],
        },
        "source": {"component": "nodetask-agent"},
        # As the agent posts it: naming its pod (the admission policy refuses an agent's Event that does not).
        "reportingComponent": "sei.io/nodetask-agent",
        "reportingInstance": "node-a-0",
        "related": {"apiVersion": "v1", "kind": "Pod", "name": "node-a-0", "uid": pod["metadata"]["uid"]},
    }

    result = installation.cluster.kubectl(
        "create", "-f", "-", namespace=installation.namespace, kubeconfig=kubeconfig, input=yaml.safe_dump(event),
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr


REFUSED = [
    pytest.param(["get", "secrets"], id="list-secrets"),
    pytest.param(["get", "secret", "anything"], id="get-secret"),
    pytest.param(["get", "pods"], id="list-pods"),
    pytest.param(["get", "configmaps"], id="list-configmaps"),
    pytest.param(["get", "serviceaccounts"], id="list-serviceaccounts"),
    pytest.param(["create", "token", "{sa}"], id="mint-service-account-tokens"),
    pytest.param(["create", "configmap", "smuggled", "--from-literal=k=v"], id="create-configmap"),
    pytest.param(["delete", "nodetask", "victim"], id="delete-unfinished-nodetask-without-ttl"),
    pytest.param(["label", "nodetask", "victim", "x=y"], id="patch-nodetask-itself"),
    pytest.param(["get", "nodetasks", "--namespace=default"], id="nodetasks-in-another-namespace"),
    pytest.param(["get", "events"], id="read-events"),
    pytest.param(["get", "namespaces"], id="cluster-scoped-namespaces"),
    pytest.param(["get", "customresourcedefinitions"], id="cluster-scoped-crds"),
    pytest.param(["get", "clusterroles"], id="cluster-scoped-clusterroles"),
    pytest.param(["get", "validatingadmissionpolicies"], id="cluster-scoped-admission-policies"),
    pytest.param(["create", "rolebinding", "escalate", "--clusterrole=admin", "--user=me"], id="escalate-rbac"),
]


@pytest.mark.parametrize("argv", REFUSED)
def test_agent_is_refused_what_it_must_not_do(installation: Installation, argv: list[str]) -> None:
    installation.nodetask("victim", "node-a-0")
    argv = [part.replace("{sa}", installation.service_account) for part in argv]

    result = installation.as_agent("node-a-0", *argv)

    assert forbidden(result), f"{argv} was not refused: {result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("verb", "resource", "extra", "granted"),
    [
        ("watch", "nodetasks.sei.io", [], True),
        ("delete", "nodetasks.sei.io", [], True),  # RBAC allows it; the admission policy narrows it to TTL expiry
        ("patch", "nodetasks.sei.io", ["--subresource=status"], True),
        ("create", "events", [], True),
        ("create", "nodetasks.sei.io", [], False),
        ("update", "nodetasks.sei.io", ["--subresource=status"], False),
        ("patch", "nodetasks.sei.io", [], False),
        ("deletecollection", "nodetasks.sei.io", [], False),
        ("create", "events.events.k8s.io", [], False),
        ("get", "leases.coordination.k8s.io", [], False),
        ("list", "nodes", [], False),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_agent_role_grants_exactly_the_agents_verbs(
    installation: Installation, verb: str, resource: str, extra: list[str], granted: bool
) -> None:
    assert can_i(installation, "node-a-0", verb, resource, *extra) is granted


# --- the admission policy: each pod's agent writes only its own pod's NodeTasks --------------------------------------


def test_agent_cannot_patch_another_pods_task_status(installation: Installation) -> None:
    installation.nodetask("b-status", "node-b-0")

    result = installation.as_agent(
        "node-a-0", "patch", "nodetask", "b-status", "--subresource=status", "--type=merge", "-p", status_patch()
    )

    assert result.returncode != 0
    assert POLICY_DENIED in result.stderr
    assert "the agent of pod node-a-0 may write only NodeTasks addressed to that pod" in result.stderr
    assert "spec.targetPod node-b-0" in result.stderr
    assert "status" not in installation.cluster.get_json("nodetask", "b-status", namespace=installation.namespace)


@pytest.mark.parametrize(
    ("owner", "ttl", "phase", "allowed", "refusal"),
    [
        ("node-a-0", 0, "Succeeded", True, ""),
        ("node-a-0", 60, "Failed", True, ""),
        ("node-a-0", None, "Succeeded", False, "may delete only finished NodeTasks that set"),
        ("node-a-0", 0, "Running", False, "may delete only finished NodeTasks that set"),
        ("node-b-0", 0, "Succeeded", False, "may write only NodeTasks addressed to that pod"),
    ],
    ids=["own-finished-ttl", "own-failed-ttl", "own-finished-no-ttl", "own-running-ttl", "other-pods"],
)
def test_agent_deletes_only_its_own_finished_tasks_that_ask_for_a_ttl(
    installation: Installation, owner: str, ttl: int | None, phase: str, allowed: bool, refusal: str
) -> None:
    name = f"ttl-{owner}-{ttl}-{phase}".lower()
    installation.nodetask(name, owner, **({} if ttl is None else {"ttlSecondsAfterFinished": ttl}))
    installation.cluster.kubectl(
        "patch", "nodetask", name, "--subresource=status", "--type=merge", "-p", status_patch(phase),
        namespace=installation.namespace,
    )  # fmt: skip

    result = installation.as_agent("node-a-0", "delete", "nodetask", name, "--wait=false")

    if allowed:
        assert result.returncode == 0, result.stderr
    else:
        assert POLICY_DENIED in result.stderr and refusal in result.stderr, result.stderr
        assert installation.cluster.get_json("nodetask", name, namespace=installation.namespace)


def test_other_pods_agent_can_patch_that_task(installation: Installation) -> None:
    installation.nodetask("b-own", "node-b-0")

    result = installation.as_agent(
        "node-b-0", "patch", "nodetask", "b-own", "--subresource=status", "--type=merge", "-p", status_patch()
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("pin", "allowed"), [("own", True), ("other", False)], ids=["own-uid", "other-uid"])
def test_task_pinned_to_a_pod_uid_is_writable_only_by_that_incarnation(
    installation: Installation, pin: str, allowed: bool
) -> None:
    pod, _ = installation.agent("node-a-0")
    uid = pod["metadata"]["uid"] if pin == "own" else "00000000-0000-4000-8000-000000000000"
    installation.nodetask(f"pinned-{pin}", "node-a-0", targetPodUID=uid.upper())

    result = installation.as_agent(
        "node-a-0", "patch", "nodetask", f"pinned-{pin}", "--subresource=status", "--type=merge", "-p", status_patch()
    )

    if allowed:
        assert result.returncode == 0, result.stderr
    else:
        assert POLICY_DENIED in result.stderr
        assert "is pinned to pod UID 00000000-0000-4000-8000-000000000000" in result.stderr


def test_service_account_token_not_bound_to_a_pod_cannot_write_status(installation: Installation) -> None:
    installation.nodetask("unbound", "node-a-0")
    token = installation.kubectl("create", "token", installation.service_account, "--duration=10m").stdout.strip()

    credentials = [
        f"--token={token}",
        f"--server={installation.cluster.server}",
        f"--certificate-authority={installation.cluster.pki.ca_cert}",
    ]

    result = installation.cluster.kubectl(
        *credentials, "patch", "nodetask", "unbound", "--subresource=status", "--type=merge", "-p", status_patch(),
        namespace=installation.namespace, kubeconfig=Path("/dev/null"), check=False,
    )  # fmt: skip

    assert POLICY_DENIED in result.stderr
    assert "only with a token bound to its pod" in result.stderr


def test_controller_identity_is_not_constrained_by_the_policy(installation: Installation) -> None:
    installation.nodetask("controller-write", "node-b-0")

    # The admin (a controller, a person) may still write any task's status: the policy matches the agent only.
    result = installation.kubectl(
        "patch", "nodetask", "controller-write", "--subresource=status", "--type=merge", "-p", status_patch("Failed")
    )

    assert result.returncode == 0


def test_policy_confines_even_a_widened_role_to_the_pods_own_tasks_and_never_the_spec(
    installation: Installation,
) -> None:
    # Someone grants the agent patch on the resource itself (rbac.extraRules): the policy still holds. Last test of
    # the module (tests run in file order per installation), and the grant is removed again.
    installation.kubectl(
        "create", "role", "widened", "--verb=patch", "--resource=nodetasks.sei.io", check=False
    )  # fmt: skip
    installation.kubectl(
        "create", "rolebinding", "widened", "--role=widened",
        f"--serviceaccount={installation.namespace}:{installation.service_account}", check=False,
    )  # fmt: skip
    installation.nodetask("widened-own", "node-a-0")
    installation.nodetask("widened-other", "node-b-0")

    own_metadata = installation.as_agent("node-a-0", "label", "nodetask", "widened-own", "agent=seen")
    other_metadata = installation.as_agent("node-a-0", "label", "nodetask", "widened-other", "agent=seen")
    own_spec = installation.as_agent(
        "node-a-0", "patch", "nodetask", "widened-own", "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )

    installation.kubectl("delete", "rolebinding,role", "widened", "--wait=false")
    assert own_metadata.returncode == 0, own_metadata.stderr
    assert POLICY_DENIED in other_metadata.stderr and "addressed to that pod" in other_metadata.stderr
    assert POLICY_DENIED in own_spec.stderr and "may not change the spec" in own_spec.stderr


def test_example_node_pod_meets_the_restricted_pod_security_standard(
    nodetask_crd: None, kube_namespace: KubeNamespace
) -> None:
    # The StatefulSet's pod, created (dry run) in a namespace that enforces Pod Security "restricted": non-root,
    # no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, only allowed volume types.
    kube_namespace.kubectl("label", "namespace", kube_namespace.name, "--namespace=",
                           "pod-security.kubernetes.io/enforce=restricted",
                           "pod-security.kubernetes.io/warn=restricted")  # fmt: skip
    statefulset = next(doc for doc in documents((EXAMPLES / "statefulset.yaml").read_text())
                       if doc["kind"] == "StatefulSet")  # fmt: skip
    template = statefulset["spec"]["template"]
    # What the StatefulSet controller adds: one PVC volume per claim template.
    claims = [
        {"name": name, "persistentVolumeClaim": {"claimName": f"{name}-sei-node-0"}}
        for name in (claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"])
    ]
    spec = {**template["spec"], "volumes": template["spec"]["volumes"] + claims}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sei-node-0", **template["metadata"]}, "spec": spec}

    result = kube_namespace.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr


def test_helm_upgrade_applies_new_values_and_uninstall_keeps_the_crd(kube_cluster: KubeCluster) -> None:
    namespace = unique_namespace("lifecycle")
    kube_cluster.kubectl("create", "namespace", namespace, check=False)
    common = [f"--namespace={namespace}", "--wait=false"]
    policy = f"agents-nodetask-agent-{namespace}"
    run_helm("install", "agents", ".", *common, kubeconfig=kube_cluster.kubeconfig)

    run_helm("upgrade", "agents", ".", *common, "--set=admissionPolicy.validationActions={Warn,Audit}",
             kubeconfig=kube_cluster.kubeconfig)  # fmt: skip
    upgraded = kube_cluster.get_json("validatingadmissionpolicybinding", policy)
    run_helm("uninstall", "agents", f"--namespace={namespace}", kubeconfig=kube_cluster.kubeconfig)

    assert upgraded["spec"]["validationActions"] == ["Warn", "Audit"]
    gone = kube_cluster.kubectl("get", "validatingadmissionpolicy", policy, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert kube_cluster.get_json("crd", "nodetasks.sei.io")["metadata"]["name"] == "nodetasks.sei.io"

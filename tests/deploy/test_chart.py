"""The chart rendered by the real helm (no cluster): values drive what they say, deploy/ installs the same rules and
policy, every value is documented, and the alerts watch metrics the agent really exports."""

from __future__ import annotations

import json
import re
import tarfile
from typing import Any

import jsonschema
import pytest
import yaml

from agent.runtime.metrics import AgentMetrics

from .conftest import CRD_FILE, DEPLOY, REPO_ROOT, by_kind, documents, kustomize_build, only, render_chart, run_helm

DOCS = REPO_ROOT / "docs" / "helm.md"
STATEFULSET = DEPLOY / "examples" / "statefulset.yaml"


def test_deploy_crd_is_a_byte_copy_of_the_generated_crd() -> None:
    copy = DEPLOY / "crds" / "nodetasks.sei.io.yaml"

    assert copy.read_bytes() == CRD_FILE.read_bytes(), "refresh it: cp crds/nodetasks.sei.io.yaml deploy/crds/"


def test_deploy_and_chart_install_the_same_account_rules_and_policy() -> None:
    chart = documents(render_chart("sei-nodes", values=["fullnameOverride=nodetask-agent"]))
    deploy = kustomize_build(DEPLOY)

    assert only(chart, "Role")["rules"] == only(deploy, "Role")["rules"]
    assert only(chart, "RoleBinding")["subjects"] == only(deploy, "RoleBinding")["subjects"]
    chart_account, deploy_account = only(chart, "ServiceAccount"), only(deploy, "ServiceAccount")
    assert chart_account["metadata"]["name"] == deploy_account["metadata"]["name"] == "nodetask-agent"
    assert chart_account["automountServiceAccountToken"] is deploy_account["automountServiceAccountToken"] is False
    assert only(chart, "ValidatingAdmissionPolicy")["spec"] == only(deploy, "ValidatingAdmissionPolicy")["spec"]
    chart_binding = only(chart, "ValidatingAdmissionPolicyBinding")["spec"]
    deploy_binding = only(deploy, "ValidatingAdmissionPolicyBinding")["spec"]
    assert chart_binding["validationActions"] == deploy_binding["validationActions"] == ["Deny"]
    # By design the selectors differ: the chart binds its release namespace by name, deploy/ every namespace carrying
    # the label its Namespace object sets (so an overlay only changes `namespace:`).
    assert chart_binding["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "sei-nodes"
    }
    label = deploy_binding["matchResources"]["namespaceSelector"]["matchLabels"]
    assert label.items() <= only(deploy, "Namespace")["metadata"]["labels"].items()


def test_overlay_with_another_namespace_moves_everything_namespaced(tmp_path: Any) -> None:
    from .conftest import overlay_kustomization

    (tmp_path / "kustomization.yaml").write_text(overlay_kustomization("validators", tmp_path))

    docs = kustomize_build(tmp_path)

    assert only(docs, "Namespace")["metadata"]["name"] == "validators"
    assert only(docs, "RoleBinding")["subjects"][0]["namespace"] == "validators"
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        assert only(docs, kind)["metadata"]["namespace"] == "validators"


def test_role_grants_nothing_cluster_wide_and_nothing_on_secrets() -> None:
    docs = documents(render_chart("ns"))
    rules = only(docs, "Role")["rules"]

    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    assert rules == [
        {"apiGroups": ["sei.io"], "resources": ["nodetasks"], "verbs": ["get", "list", "watch", "delete"]},
        {"apiGroups": ["sei.io"], "resources": ["nodetasks/status"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]


def test_policy_matches_the_service_account_the_role_is_bound_to() -> None:
    docs = documents(render_chart("ns", "validators"))
    account = only(docs, "ServiceAccount")["metadata"]["name"]
    condition = only(docs, "ValidatingAdmissionPolicy")["spec"]["matchConditions"][0]["expression"]

    assert only(docs, "RoleBinding")["subjects"][0]["name"] == account == "validators-nodetask-agent"
    assert condition.endswith(f"':{account}'")


def test_existing_service_account_must_be_named_and_is_then_used_everywhere() -> None:
    missing = run_helm("template", "x", ".", "--kube-version=1.37.2", "--set=serviceAccount.create=false", check=False)
    docs = documents(render_chart("ns", values=["serviceAccount.create=false", "serviceAccount.name=sei-node"]))

    assert missing.returncode != 0 and "serviceAccount.name must name an existing ServiceAccount" in missing.stderr
    assert not by_kind(docs, "ServiceAccount")
    assert only(docs, "RoleBinding")["subjects"][0]["name"] == "sei-node"
    assert "':sei-node'" in only(docs, "ValidatingAdmissionPolicy")["spec"]["matchConditions"][0]["expression"]


@pytest.mark.parametrize(
    ("values", "absent"),
    [
        (["rbac.create=false"], {"Role", "RoleBinding"}),
        (["admissionPolicy.enabled=false"], {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}),
        (["serviceAccount.create=false", "serviceAccount.name=x"], {"ServiceAccount"}),
    ],
    ids=["no-rbac", "no-policy", "no-service-account"],
)
def test_switches_leave_out_exactly_their_objects(values: list[str], absent: set[str]) -> None:
    everything = {doc["kind"] for doc in documents(render_chart("ns"))}

    rendered = {doc["kind"] for doc in documents(render_chart("ns", values=values))}

    assert rendered == everything - absent


def test_policy_actions_and_failure_policy_follow_values() -> None:
    docs = documents(
        render_chart(
            "ns", values=["admissionPolicy.validationActions={Warn,Audit}", "admissionPolicy.failurePolicy=Ignore"]
        )
    )

    assert only(docs, "ValidatingAdmissionPolicyBinding")["spec"]["validationActions"] == ["Warn", "Audit"]
    assert only(docs, "ValidatingAdmissionPolicy")["spec"]["failurePolicy"] == "Ignore"


def test_policies_of_two_releases_of_one_name_in_two_namespaces_do_not_collide() -> None:
    names = set()
    for namespace in ("validators", "rpc"):
        docs = documents(render_chart(namespace, "agents"))
        names.add(only(docs, "ValidatingAdmissionPolicy")["metadata"]["name"])
        names.add(only(docs, "ValidatingAdmissionPolicyBinding")["metadata"]["name"])

    assert names == {"agents-nodetask-agent-validators", "agents-nodetask-agent-rpc"}


def test_events_api_groups_follow_values() -> None:
    docs = documents(render_chart("ns", values=["rbac.eventsApiGroups={,events.k8s.io}"]))

    events = [rule for rule in only(docs, "Role")["rules"] if rule["resources"] == ["events"]]
    assert events == [{"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]}]


# --- monitoring ----------------------------------------------------------------------------------------------------


def monitoring_docs(*values: str) -> list[dict[str, Any]]:
    return documents(
        render_chart(
            "ns", values=["metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true", *values]
        )
    )


def test_metrics_service_and_monitor_select_the_example_statefulsets_agents() -> None:
    docs = monitoring_docs()
    service, monitor = only(docs, "Service"), only(docs, "ServiceMonitor")
    statefulset = next(doc for doc in documents(STATEFULSET.read_text()) if doc["kind"] == "StatefulSet")
    template = statefulset["spec"]["template"]
    agent = next(c for c in template["spec"]["initContainers"] if c["name"] == "nodetask-agent")

    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0]["targetPort"] in {port["name"] for port in agent["ports"]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def exported_metric_names() -> set[str]:
    """Sample names the agent's /metrics can carry (counters gain `_total`, histograms `_bucket/_sum/_count`)."""
    names: set[str] = set()
    for family in AgentMetrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_alerts_use_metrics_the_agent_exports() -> None:
    rules = only(monitoring_docs(), "PrometheusRule")["spec"]["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"\bnodetask_[a-z_]+\b", rule["expr"])}

    exported = exported_metric_names()

    assert used <= exported, f"not exported by the agent: {sorted(used - exported)}"
    assert "nodetask_overdue_tasks" in used  # the stuck-past-timeout alert


def test_alerts_cover_failures_stuck_tasks_and_status_patch_errors() -> None:
    rules = only(monitoring_docs(), "PrometheusRule")["spec"]["groups"][0]["rules"]

    assert [rule["alert"] for rule in rules] == [
        "NodeTaskFailed",
        "NodeTaskStuckPastTimeout",
        "NodeTaskStatusBacklog",
        "NodeTaskStatusPatchErrors",
        "NodeTaskStoreFailing",
    ]
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert 'namespace="ns"' in rule["expr"]
        assert "{{ $labels.pod }}" in rule["annotations"]["summary"]


def test_alerts_can_be_tuned_switched_off_and_extended() -> None:
    docs = monitoring_docs(
        "metrics.prometheusRule.stuckPastTimeout.enabled=false",
        "metrics.prometheusRule.taskFailures.severity=critical",
        "metrics.prometheusRule.taskFailures.window=1h",
        "metrics.prometheusRule.alertLabels.team=validators",
        "metrics.prometheusRule.additionalRules[0].alert=Custom",
        "metrics.prometheusRule.additionalRules[0].expr=vector(1)",
    )

    by_name = {rule["alert"]: rule for rule in only(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]}

    assert "NodeTaskStuckPastTimeout" not in by_name
    assert by_name["NodeTaskFailed"]["labels"] == {"severity": "critical", "team": "validators"}
    assert "[1h]" in by_name["NodeTaskFailed"]["expr"]
    assert by_name["Custom"] == {"alert": "Custom", "expr": "vector(1)"}


# --- documentation -------------------------------------------------------------------------------------------------


def value_paths(tree: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        # A map of labels, annotations or a selector is one value, not more settings.
        is_map_value = key.endswith(("abels", "nnotations", "Selector"))
        if isinstance(value, dict) and value and not is_map_value:
            paths.extend(value_paths(value, path + "."))
        else:
            paths.append(path)
    return paths


def test_every_value_is_documented_in_the_chart_docs() -> None:
    values = yaml.safe_load((REPO_ROOT / "values.yaml").read_text())
    text = DOCS.read_text()

    undocumented = [path for path in value_paths(values) if f"`{path}`" not in text]

    assert not undocumented, f"values missing from docs/helm.md: {undocumented}"


def test_chart_points_at_its_docs() -> None:
    chart = yaml.safe_load((REPO_ROOT / "Chart.yaml").read_text())

    assert chart["apiVersion"] == "v2" and chart["name"] == "nodetask-agent"
    assert (REPO_ROOT / chart["annotations"]["nodetask.sei.io/docs"]).exists()


def test_packaged_chart_holds_only_the_chart(tmp_path: Any) -> None:
    # The chart is the repository root: .helmignore must keep the Python package, tests, venv and docs out of it.
    run_helm("package", ".", f"--destination={tmp_path}")
    (archive,) = tmp_path.glob("nodetask-agent-*.tgz")

    with tarfile.open(archive) as packed:
        names = {name.split("/", 1)[1] for name in packed.getnames()}

    top_level = {name for name in names if "/" not in name}
    assert top_level <= {".helmignore", "Chart.yaml", "values.yaml", "values.schema.json", "README.md", "LICENSE"}
    assert "values.schema.json" in top_level
    assert {"Chart.yaml", "values.yaml", "crds/nodetasks.sei.io.yaml", "templates/NOTES.txt"} <= names
    assert {name.split("/")[0] for name in names - top_level} == {"crds", "templates"}


def test_extra_rules_are_appended_to_the_role() -> None:
    docs = documents(
        render_chart(
            "ns",
            values=[
                "rbac.extraRules[0].apiGroups={coordination.k8s.io}",
                "rbac.extraRules[0].resources={leases}",
                "rbac.extraRules[0].verbs={get}",
            ],
        )
    )

    rules = only(docs, "Role")["rules"]
    assert len(rules) == 4
    assert rules[-1] == {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}


def test_grafana_dashboard_is_valid_json_over_exported_metrics() -> None:
    docs = documents(render_chart("ns", values=["metrics.grafanaDashboard.enabled=true"]))
    config_map = only(docs, "ConfigMap")
    dashboard = json.loads(config_map["data"]["nodetask-agent.json"])
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]

    used = {name for expr in expressions for name in re.findall(r"\bnodetask_[a-z_]+\b", expr)}

    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert used <= exported_metric_names(), f"not exported by the agent: {sorted(used - exported_metric_names())}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert all('namespace="$namespace"' in expr for expr in expressions)
    # Every task family the agent exports is on the dashboard, and so are its memory, CPU and build.
    families = {family.name for family in AgentMetrics().registry.collect() if family.name.startswith("nodetask_")}
    assert {name.removesuffix("_total").removesuffix("_bucket") for name in used} == families
    process = {name for expr in expressions for name in re.findall(r"\bprocess_[a-z_]+\b", expr)}
    assert process == {"process_resident_memory_bytes", "process_cpu_seconds_total"}


def test_grafana_dashboard_can_live_in_grafanas_namespace() -> None:
    docs = documents(
        render_chart("ns", values=["metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.namespace=obs"])
    )

    assert only(docs, "ConfigMap")["metadata"]["namespace"] == "obs"


# --- values.schema.json and the kube version -------------------------------------------------------------------------

SCHEMA = json.loads((REPO_ROOT / "values.schema.json").read_text())


def test_the_shipped_values_satisfy_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(yaml.safe_load((REPO_ROOT / "values.yaml").read_text()), SCHEMA)


def test_every_value_in_values_yaml_has_a_schema_entry_and_vice_versa() -> None:
    def leaves(values: Any, schema: dict[str, Any], path: str) -> set[str]:
        found = {path} if path else set()
        properties = schema.get("properties")
        if isinstance(values, dict) and properties is not None:
            assert set(values) == set(properties), f"{path or 'values'}: values.yaml and the schema differ"
            for key, value in values.items():
                found |= leaves(value, properties[key], f"{path}.{key}".lstrip("."))
        return found

    assert leaves(yaml.safe_load((REPO_ROOT / "values.yaml").read_text()), SCHEMA, "")


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("admissionPolicy.failurePolicy=Maybe", "failurePolicy"),
        ("admissionPolicy.validationActions={Block}", "validationActions"),
        ("rbac.creat=false", "creat"),
        ("metrics.servcie.enabled=true", "servcie"),
        ("metrics.service.port=70000", "port"),
        ("image.digest=latest", "digest"),
        ("metrics.prometheusRule.taskFailures.severity=page", "severity"),
    ],
)
def test_a_misspelt_key_or_a_bad_value_is_refused_by_helm_naming_it(setting: str, named: str) -> None:
    refused = run_helm("template", "x", ".", f"--set={setting}", check=False)
    assert refused.returncode != 0
    assert "values don't meet the specifications of the schema" in refused.stderr
    assert named in refused.stderr


def test_helm_template_works_without_a_kube_version() -> None:
    """`helm template .` as a newcomer types it: helm's default kube version (its client-go's, for helm builds made
    the way helm's own Makefile makes them) satisfies the chart's kubeVersion constraint."""
    rendered = run_helm("template", "x", ".").stdout
    assert {doc["kind"] for doc in documents(rendered)} >= {"Role", "RoleBinding", "ServiceAccount"}


def test_kube_rbac_proxy_support_renders_its_config_and_auth_delegation_only_when_enabled() -> None:
    assert not by_kind(documents(render_chart("sei-nodes")), "ClusterRoleBinding")

    chart = documents(
        render_chart(
            "sei-nodes",
            values=[
                "fullnameOverride=nodetask-agent",
                "seictlApi.kubeRbacProxy.enabled=true",
                "seictlApi.kubeRbacProxy.resourceAttributes.verb=update",
            ],
        )
    )

    config = yaml.safe_load(only(chart, "ConfigMap")["data"]["config.yaml"])
    assert config == {
        "authorization": {
            "resourceAttributes": {
                "namespace": "sei-nodes",
                "apiGroup": "sei.io",
                "resource": "nodetasks",
                "verb": "update",
            }
        }
    }
    binding = only(chart, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "nodetask-agent", "namespace": "sei-nodes"}]


def test_network_policy_is_off_by_default_and_restricts_only_the_agent_port() -> None:
    assert not by_kind(documents(render_chart("ns")), "NetworkPolicy")
    prometheus = "networkPolicy.allowedFrom[0].namespaceSelector.matchLabels.team=monitoring"
    docs = documents(render_chart("ns", values=["networkPolicy.enabled=true", "networkPolicy.port=7777", prometheus]))

    policy = only(docs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"sei.io/nodetask-agent": "true"}
    restricted, others = policy["ingress"]
    assert restricted["from"] == [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
    assert restricted["ports"] == [{"port": 7777, "protocol": "TCP"}]
    assert "from" not in others  # every other port stays open to every source: seid's P2P and RPC are untouched
    open_tcp = [(p["port"], p["endPort"]) for p in others["ports"] if p["protocol"] == "TCP"]
    assert open_tcp == [(1, 7776), (7778, 65535)]
    assert {"port": 1, "endPort": 65535, "protocol": "UDP"} in others["ports"]


@pytest.mark.parametrize(
    "api_on",
    [["seictlApi.enabled=true"], ["seictlApi.kubeRbacProxy.enabled=true"]],
    ids=["task-api", "task-api-behind-kube-rbac-proxy"],
)
def test_network_policy_is_on_whenever_the_task_api_is(api_on: list[str]) -> None:
    controller = "networkPolicy.allowedFrom[0].podSelector.matchLabels.app=sei-controller"
    # Without networkPolicy.enabled, and even with it set false: the task API's port is never open to all by default.
    for values in (api_on, [*api_on, "networkPolicy.enabled=false"], [*api_on, controller]):
        policy = only(documents(render_chart("ns", values=values)), "NetworkPolicy")["spec"]
        restricted_or_open = policy["ingress"]
        agent_port = [rule for rule in restricted_or_open if {"port": 7777, "protocol": "TCP"} in rule["ports"]]
        if controller in values:
            assert agent_port == [
                {
                    "from": [{"podSelector": {"matchLabels": {"app": "sei-controller"}}}],
                    "ports": [{"port": 7777, "protocol": "TCP"}],
                }
            ]
        else:
            assert agent_port == [], "no peer may reach the API port until one is listed in allowedFrom"
        everything_else = restricted_or_open[-1]
        assert "from" not in everything_else
        assert [(p["port"], p["endPort"]) for p in everything_else["ports"] if p["protocol"] == "TCP"] == [
            (1, 7776),
            (7778, 65535),
        ]

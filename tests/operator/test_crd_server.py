"""The real API server enforces the committed CRD: schema, immutability, selectable field, names."""

from __future__ import annotations

import json

import pytest

from agent.operator.crd import render_crd
from tests.fixtures.kube import KubeCluster, KubectlError, KubeNamespace
from tests.fixtures.waiting import poll_until
from tests.operator.kit import nodetask

pytestmark = pytest.mark.kube


@pytest.fixture
def ns(nodetask_crd: KubeCluster, kube_namespace: KubeNamespace) -> KubeNamespace:
    return kube_namespace


@pytest.mark.parametrize(
    ("spec", "field", "why"),
    [
        ({"type": "mark-ready"}, "spec.targetPod", "Required value"),
        ({"targetPod": "node-0", "type": "make-coffee"}, "spec.type", "Unsupported value"),
        ({"targetPod": "node-0", "type": "mark-ready", "taskId": "task-1"}, "spec.taskId", "should match"),
        ({"targetPod": "Node_0", "type": "mark-ready"}, "spec.targetPod", "should match"),
        (
            {"targetPod": "node-0", "type": "mark-ready", "timeoutSeconds": 0},
            "spec.timeoutSeconds",
            "greater than or equal to 1",
        ),
        (
            {"targetPod": "node-0", "type": "mark-ready", "retry": {"limit": -1}},
            "spec.retry.limit",
            "greater than or equal to 0",
        ),
    ],
    ids=["no-target-pod", "unknown-type", "task-id-not-uuid", "target-pod-not-dns", "zero-timeout", "negative-retries"],
)
def test_server_refuses_invalid_spec_naming_the_field(ns: KubeNamespace, spec: dict, field: str, why: str) -> None:
    manifest = {"apiVersion": "sei.io/v1alpha1", "kind": "NodeTask", "metadata": {"name": "bad"}, "spec": spec}

    with pytest.raises(KubectlError) as refused:
        ns.apply(manifest)

    assert field in refused.value.stderr and why in refused.value.stderr
    assert ns.kubectl("get", "nodetasks", "-o", "name").stdout == ""


def test_uppercase_uuid_task_id_is_accepted(ns: KubeNamespace) -> None:
    ns.apply(nodetask("upper", "node-0", "mark-ready", taskId="0A1B2C3D-0000-4000-8000-00000000000F"))
    assert ns.get("nodetask", "upper")["spec"]["taskId"] == "0A1B2C3D-0000-4000-8000-00000000000F"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"targetPod": "node-1"}, "targetPod"),
        ({"type": "mark-not-ready"}, "type"),
        ({"params": {"extra": 1}}, "params"),
        ({"params": {"nested": {"value": 2}}}, "params"),
        ({"taskId": "00000000-0000-4000-8000-000000000001"}, "taskId"),
        ({"targetPodUID": "00000000-0000-4000-8000-000000000002"}, "targetPodUID"),
        ({"timeoutSeconds": 60}, "timeoutSeconds"),
        ({"retry": {"limit": 3}}, "retry"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_spec_edits_other_than_cancel_and_retry_nonce_are_refused(ns: KubeNamespace, patch: dict, field: str) -> None:
    ns.apply(nodetask("task", "node-0", "mark-ready", {"nested": {"value": 1}}))

    with pytest.raises(KubectlError) as refused:
        ns.kubectl("patch", "nodetask", "task", "--type=merge", "-p", json.dumps({"spec": patch}))

    assert f"spec.{field} is immutable" in refused.value.stderr
    assert ns.get("nodetask", "task")["spec"]["params"] == {"nested": {"value": 1}}


def test_cancel_and_retry_nonce_may_change_but_cancel_cannot_be_unset(ns: KubeNamespace) -> None:
    ns.apply(nodetask("task", "node-0", "mark-ready"))

    ns.kubectl("patch", "nodetask", "task", "--type=merge", "-p", '{"spec":{"retryNonce":"1"}}')
    ns.kubectl("patch", "nodetask", "task", "--type=merge", "-p", '{"spec":{"retryNonce":"2","cancel":true}}')
    with pytest.raises(KubectlError, match="cannot be unset once true"):
        ns.kubectl("patch", "nodetask", "task", "--type=merge", "-p", '{"spec":{"cancel":false}}')

    spec = ns.get("nodetask", "task")["spec"]
    assert spec["retryNonce"] == "2" and spec["cancel"] is True


def test_field_selector_on_target_pod_and_short_name_and_category(ns: KubeNamespace) -> None:
    ns.apply(nodetask("for-zero", "node-0", "mark-ready"), nodetask("for-one", "node-1", "mark-ready"))

    selected = ns.kubectl("get", "nt", "--field-selector=spec.targetPod=node-1", "-o", "name").stdout.split()
    in_category = ns.kubectl("get", "sei", "-o", "name").stdout.split()

    assert selected == ["nodetask.sei.io/for-one"]
    assert sorted(in_category) == ["nodetask.sei.io/for-one", "nodetask.sei.io/for-zero"]


def test_status_subresource_is_separate_from_spec(ns: KubeNamespace) -> None:
    ns.apply(nodetask("task", "node-0", "mark-ready"))
    generation = ns.get("nodetask", "task")["metadata"]["generation"]

    ns.kubectl(
        "patch",
        "nodetask",
        "task",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Running","run":1}}',
    )
    # a status in the main resource is ignored, as for every resource with a status subresource
    ns.kubectl("patch", "nodetask", "task", "--type=merge", "-p", '{"status":{"phase":"Failed"}}')

    stored = ns.get("nodetask", "task")
    assert stored["status"] == {"phase": "Running", "run": 1}
    assert stored["metadata"]["generation"] == generation


def test_status_schema_refuses_unknown_phase(ns: KubeNamespace) -> None:
    ns.apply(nodetask("task", "node-0", "mark-ready"))
    with pytest.raises(KubectlError, match=r"status\.phase"):
        ns.kubectl(
            "patch", "nodetask", "task", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Done"}}'
        )


def test_printer_columns_and_wide_columns(ns: KubeNamespace) -> None:
    ns.apply(nodetask("task", "node-0", "mark-ready"))
    status = {
        "phase": "Running",
        "run": 2,
        "reason": "Retrying",
        "message": "downloading",
        "progress": {"summary": "3/10 (30.0%)"},
    }
    ns.kubectl(
        "patch", "nodetask", "task", "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )

    narrow = ns.kubectl("get", "nodetasks").stdout.splitlines()
    wide = ns.kubectl("get", "nodetasks", "-o", "wide").stdout.splitlines()

    assert narrow[0].split() == ["NAME", "POD", "TYPE", "PHASE", "REASON", "RUN", "PROGRESS", "AGE"]
    assert narrow[1].split()[:8] == ["task", "node-0", "mark-ready", "Running", "Retrying", "2", "3/10", "(30.0%)"]
    assert wide[0].split() == [
        "NAME",
        "POD",
        "TYPE",
        "PHASE",
        "REASON",
        "RUN",
        "PROGRESS",
        "AGE",
        "STARTED",
        "COMPLETED",
        "MESSAGE",
    ]
    assert wide[1].split()[-1] == "downloading"


def test_server_stores_the_rendered_schema_unchanged_and_establishes_it(nodetask_crd: KubeCluster) -> None:
    served = nodetask_crd.get_json("crd", "nodetasks.sei.io")
    rendered = render_crd()

    served_version, rendered_version = served["spec"]["versions"][0], rendered["spec"]["versions"][0]
    for key in ("schema", "additionalPrinterColumns", "selectableFields", "subresources"):
        assert served_version[key] == rendered_version[key], f"the server rewrote {key}"
    assert served["spec"]["names"] == rendered["spec"]["names"]
    assert {c["type"]: c["status"] for c in served["status"]["conditions"]}["Established"] == "True"


@pytest.mark.parametrize("field", ["spec.retry", "spec.retry.limit", "status.conditions.type", "status.error.hint"])
def test_kubectl_explain_describes_the_field(nodetask_crd: KubeCluster, field: str) -> None:
    def explain() -> str:  # the server publishes a new CRD's OpenAPI schema a moment after establishing it
        result = nodetask_crd.kubectl("explain", f"nodetasks.{field}", check=False)
        return result.stdout if result.returncode == 0 else ""

    explained = poll_until(explain, what=f"kubectl explain nodetasks.{field}", timeout=30, interval=0.5)

    assert "DESCRIPTION:" in explained
    assert "<no description>" not in explained.split("DESCRIPTION:", 1)[1].split("FIELDS:", 1)[0], explained

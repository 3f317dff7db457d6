"""The committed CRD is exactly what the models render, and the rendering is a valid structural schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from agent.models import TaskType
from agent.models.resource import NodeTaskSpec
from agent.operator.crd import MUTABLE_SPEC_FIELDS, render_crd, render_crd_yaml, structural_schema
from tests.fixtures.kube import CRD_FILE


def test_committed_crd_file_matches_render_crd() -> None:
    committed = CRD_FILE.read_text()
    assert committed == render_crd_yaml(), (
        "crds/nodetasks.sei.io.yaml is stale: regenerate it with `nodetask-agent crd > crds/nodetasks.sei.io.yaml`"
    )
    assert yaml.safe_load(committed) == render_crd()


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path or ".", schema)]
    for name, child in schema.get("properties", {}).items():
        nodes += walk(child, f"{path}.{name}")
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


def version() -> dict[str, Any]:
    versions = render_crd()["spec"]["versions"]
    assert len(versions) == 1
    result: dict[str, Any] = versions[0]
    return result


def test_schema_is_structural_every_node_typed_no_refs_or_unions() -> None:
    for path, node in walk(version()["schema"]["openAPIV3Schema"]):
        assert "type" in node, f"{path} has no type"
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "default", "title", "nullable"):
            assert forbidden not in node, f"{path} carries {forbidden}"


def test_spec_constrains_type_to_every_task_type_and_task_id_to_uuid() -> None:
    spec = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["type"]["enum"] == [task_type.value for task_type in TaskType]
    assert spec["properties"]["taskId"]["pattern"].startswith("^[0-9a-fA-F]{8}-")
    assert spec["required"] == ["targetPod", "type"]
    assert spec["properties"]["params"]["x-kubernetes-preserve-unknown-fields"] is True


def test_every_spec_field_but_cancel_and_retry_nonce_has_an_immutability_rule() -> None:
    spec = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    guarded = {rule["fieldPath"].lstrip(".") for rule in spec["x-kubernetes-validations"] if "oldSelf" in rule["rule"]}
    wire_names = {field.alias or name for name, field in NodeTaskSpec.model_fields.items()}
    assert {"targetPodUID", "taskId", "params"} <= wire_names  # the wire spelling of docs/design.md section 3
    assert guarded - {"cancel"} == wire_names - set(MUTABLE_SPEC_FIELDS)
    assert "cancel" in guarded  # only the unset-once-true rule


def test_names_columns_and_selectable_fields() -> None:
    crd = render_crd()["spec"]
    assert crd["names"]["shortNames"] == ["nt"] and crd["names"]["categories"] == ["sei"]
    assert crd["scope"] == "Namespaced"
    columns = version()["additionalPrinterColumns"]
    default = ["Pod", "Type", "Phase", "Reason", "Run", "Progress", "Age"]
    assert [c["name"] for c in columns if not c.get("priority")] == default
    assert [c["name"] for c in columns if c.get("priority") == 1] == ["Started", "Completed", "Message"]
    assert version()["selectableFields"] == [{"jsonPath": ".spec.targetPod"}]
    assert version()["subresources"] == {"status": {}}


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or ".", node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")


def test_kubectl_explain_has_a_description_for_every_field() -> None:
    nodes = dict(schema_nodes(version()["schema"]["openAPIV3Schema"]))

    assert len(nodes) > 50 and {".spec.retry.limit", ".status.conditions[].type", ".status.error.reason"} <= set(nodes)
    # metadata is the one exception the API server imposes (no keyword but `type`); kubectl explain shows ObjectMeta's.
    assert [path for path, node in nodes.items() if not node.get("description")] == [".metadata"]


def test_status_conditions_are_a_map_list_keyed_by_type() -> None:
    conditions = version()["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {"type", "status", "reason", "lastTransitionTime"}


class Inner(BaseModel):
    size: int


class Sample(BaseModel):
    inner: Inner | None = None
    free: dict[str, Any] = {}
    names: list[str] = []
    mapping: dict[str, int] = {}


def test_structural_schema_inlines_refs_drops_null_branches_and_keeps_free_form_objects() -> None:
    schema = structural_schema(Sample.model_json_schema())
    assert schema["properties"]["inner"] == {
        "type": "object",
        "properties": {"size": {"type": "integer"}},
        "required": ["size"],
    }
    assert schema["properties"]["free"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert schema["properties"]["names"] == {"type": "array", "items": {"type": "string"}}
    assert schema["properties"]["mapping"] == {"type": "object", "additionalProperties": {"type": "integer"}}


def test_structural_schema_refuses_a_real_union() -> None:
    class Union(BaseModel):
        either: int | str

    with pytest.raises(ValueError, match="union of 2 types"):
        structural_schema(Union.model_json_schema())

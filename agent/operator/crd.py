"""The NodeTask CustomResourceDefinition, rendered from the pydantic models (`nodetask-agent crd`).

One source of truth: the spec schema comes from `NodeTaskSpec`, the status schema from `NodeTaskStatus`; this module
only translates pydantic's JSON Schema into a Kubernetes *structural* schema and adds what JSON Schema cannot say:

- `spec.type` is an enum of every `TaskType`, `spec.taskId` must be a UUID (canonical 8-4-4-4-12 form, any case),
  `spec.targetPod` a DNS subdomain. The agent re-checks both (an object stored under an older or newer CRD can still
  reach it) and fails such a task with `UnsupportedType` / `InvalidTaskID`.
- The spec is immutable after creation except `cancel` and `retryNonce` (CEL transition rules, one per field so the
  server's message names the field), and `cancel` cannot be unset once true.
- `spec.targetPod` is a selectable field, so each agent watches with `fieldSelector=spec.targetPod=<its pod>` and
  receives only its own tasks (Kubernetes >= 1.31).
- `params` and `result` are free-form (`x-kubernetes-preserve-unknown-fields`); the agent validates params per type.

Translation rules: `$ref`s are inlined, `X | None` becomes X (the API server prunes nulls of non-nullable fields, and
a merge patch's null deletes the key), pydantic defaults are dropped (the agent applies them, so stored objects keep
exactly what their author wrote), and `dict[str, Any]` becomes a preserve-unknown-fields object.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from agent.models import TaskType
from agent.models.resource import API_GROUP, API_VERSION, KIND, PLURAL, NodeTaskSpec
from agent.models.status import NodeTaskStatus

SINGULAR = "nodetask"
SHORT_NAMES = ["nt"]
CATEGORIES = ["sei"]
CRD_NAME = f"{PLURAL}.{API_GROUP}"

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

MUTABLE_SPEC_FIELDS = ("cancel", "retryNonce")
"""The only spec fields a user may change after creation: everything else is the request itself."""

# Extra schema keywords per spec property (wire name), layered over what pydantic derives from NodeTaskSpec.
_SPEC_OVERLAY: dict[str, dict[str, Any]] = {
    "targetPod": {"maxLength": 253, "pattern": DNS_SUBDOMAIN_PATTERN},
    "targetPodUID": {"pattern": UUID_PATTERN},
    "type": {"enum": [task_type.value for task_type in TaskType]},
    "taskId": {"pattern": UUID_PATTERN},
    "retryNonce": {"maxLength": 253},
}

_KEPT_KEYWORDS = (
    "description",
    "type",
    "format",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
)

_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Pod", "type": "string", "jsonPath": ".spec.targetPod"},
    {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    # In the default view: why a task failed (or is retrying) must not need `-o wide` to be seen.
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
    {"name": "Run", "type": "integer", "jsonPath": ".status.run"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress.summary"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Started", "type": "date", "jsonPath": ".status.startedAt", "priority": 1},
    {"name": "Completed", "type": "date", "jsonPath": ".status.completedAt", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]


def structural_schema(json_schema: dict[str, Any]) -> dict[str, Any]:
    """Translate a pydantic JSON Schema (with `$defs`) into a Kubernetes structural schema (see module docstring)."""
    definitions = json_schema.get("$defs", {})

    def convert(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            return convert({**target, **{k: v for k, v in node.items() if k != "$ref"}})
        if "anyOf" in node:
            choices = [choice for choice in node["anyOf"] if choice.get("type") != "null"]
            if len(choices) != 1:
                raise ValueError(f"cannot express a union of {len(choices)} types structurally: {node}")
            merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **choices[0]}
            return convert(merged)
        out = {key: node[key] for key in _KEPT_KEYWORDS if key in node}
        if node.get("type") == "object":
            properties = node.get("properties")
            if properties:
                out["properties"] = {name: convert(child) for name, child in properties.items()}
                if node.get("required"):
                    out["required"] = list(node["required"])
            elif node.get("additionalProperties", True) is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out["additionalProperties"] = convert(node["additionalProperties"])
        elif node.get("type") == "array":
            out["items"] = convert(node["items"])
        if "type" not in out:
            raise ValueError(f"a structural schema needs a type on every node: {node}")
        return out

    return convert(json_schema)


def immutability_rules(properties: dict[str, Any]) -> list[dict[str, str]]:
    """CEL transition rules: every spec field but `cancel`/`retryNonce` keeps its value (and its presence)."""
    rules = []
    for name in properties:
        if name in MUTABLE_SPEC_FIELDS:
            continue
        rules.append(
            {
                "rule": (
                    f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})"
                ),
                "message": f"spec.{name} is immutable: only spec.cancel and spec.retryNonce may change after creation",
                "reason": "FieldValueForbidden",
                "fieldPath": f".{name}",
            }
        )
    rules.append(
        {
            "rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
            "message": "spec.cancel cannot be unset once true: a cancelled task stays cancelled",
            "reason": "FieldValueForbidden",
            "fieldPath": ".cancel",
        }
    )
    return rules


def spec_schema() -> dict[str, Any]:
    schema = structural_schema(NodeTaskSpec.model_json_schema(by_alias=True, mode="validation"))
    schema["description"] = "What the agent of `targetPod` must do. Immutable except `cancel` and `retryNonce`."
    properties = schema["properties"]
    for name, extra in _SPEC_OVERLAY.items():
        if name not in properties:
            raise ValueError(f"NodeTaskSpec has no field {name!r} (the CRD overlay is out of date)")
        properties[name].update(extra)
    schema["x-kubernetes-validations"] = immutability_rules(properties)
    return schema


def status_schema() -> dict[str, Any]:
    schema = structural_schema(NodeTaskStatus.model_json_schema(by_alias=True, mode="serialization"))
    schema["description"] = "Written by the agent only (merge patches on the status subresource)."
    properties = schema["properties"]
    for name in ("submittedAt", "startedAt", "completedAt", "heartbeatAt"):
        properties[name]["format"] = "date-time"
    conditions = properties["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions["items"]["properties"]["lastTransitionTime"]["format"] = "date-time"
    return schema


def render_crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict (what `crds/nodetasks.sei.io.yaml` holds)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "selectableFields": [{"jsonPath": ".spec.targetPod"}],
                    "additionalPrinterColumns": copy.deepcopy(_PRINTER_COLUMNS),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A task for the nodetask-agent sidecar of one Sei node pod.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": f"{API_GROUP}/{API_VERSION}: the versioned schema of this object.",
                                },
                                "kind": {"type": "string", "description": f"{KIND}: the REST resource it represents."},
                                # (The API server allows nothing else on metadata; `kubectl explain` shows
                                # ObjectMeta's own description for it.)
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    """The CRD as the YAML committed under `crds/` (stable key order, so the file diff shows real changes only)."""
    header = "# Generated by `nodetask-agent crd` from agent/models (agent/operator/crd.py). Do not edit by hand.\n"
    return header + yaml.safe_dump(render_crd(), sort_keys=False, width=120)

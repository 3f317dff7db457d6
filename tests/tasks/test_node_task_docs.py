"""The example NodeTask manifests in the node tasks' docs are valid: kind, apiVersion, and params their handler
accepts (config overrides included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agent.chain.seiconfig import parse_overrides
from agent.models import TaskType
from agent.tasks import default_registry

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tasks"
TYPES = [
    "configure-state-sync",
    "await-condition",
    "discover-peers",
    "config-apply",
    "config-validate",
    "config-reload",
    "gov-vote",
    "gov-software-upgrade",
    "gov-param-change",
    "stop-seid",
    "restart-seid",
    "reset-data",
]


@pytest.mark.parametrize("task_type", TYPES)
def test_the_example_manifest_is_a_valid_node_task(task_type: str) -> None:
    text = (DOCS / f"{task_type}.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, f"{task_type}.md has no example manifest"
    manifest = yaml.safe_load(blocks[-1])
    assert (manifest["apiVersion"], manifest["kind"]) == ("sei.io/v1alpha1", "NodeTask")
    spec = manifest["spec"]
    assert spec["type"] == task_type and spec["targetPod"]
    handler = default_registry().get(TaskType(task_type))
    assert handler is not None
    params = handler.params_model.model_validate(spec.get("params") or {})
    for field in ("overrides", "fields"):
        if getattr(params, field, None):
            parse_overrides(getattr(params, field), field=field)

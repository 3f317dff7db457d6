"""What users copy must be what the agent accepts: every param named in a reference page's params tables
(docs/tasks/<type>.md) and every NodeTask manifest shipped as an example (deploy/examples/nodetasks/, examples/) is
accepted by its task type's params model. A renamed field keeps its old spelling as a deprecated alias."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from agent.models import TaskType
from agent.models.params.base import WIRE_CONTEXT, TaskParams, format_validation_error, wire_name
from agent.models.resource import NodeTaskManifest
from agent.tasks import default_registry
from agent.tasks.ceremony import UploadGenesisArtifactsParams
from agent.tasks.discover_peers import DiscoverPeersParams
from agent.tasks.export_state import ExportStateParams

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted((REPO / "docs" / "tasks").glob("*.md"))
MANIFESTS = sorted((REPO / "deploy" / "examples" / "nodetasks").glob("*.yaml")) + sorted(
    (REPO / "examples").rglob("*.yaml")
)
REGISTRY = default_registry()
_BACKTICKED = re.compile(r"`([^`]+)`")


def params_model(task_type: str) -> type[TaskParams]:
    spec = REGISTRY.get(TaskType(task_type))
    assert spec is not None, f"no handler for {task_type}"
    return spec.params_model


def wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _names_in(cell: str) -> list[str]:
    """`a`, `b` (note), `c`: x -> [a, b, c]: the first backticked word of each comma-separated part, notes dropped."""
    without_notes = re.sub(r"\([^)]*\)", "", cell.replace("\\|", " "))
    names = []
    for part in without_notes.split(","):
        found = _BACKTICKED.search(part)
        if found:
            names.append(found.group(1))
    return names


def documented_params(page: Path) -> list[tuple[str | None, str]]:
    """(variant, name) for every param in the page's `## Params` tables: `(None, name)` for a top-level field, and
    `(type, name)` for a field of a `type`-discriminated sub-object (a table whose first header is `type`)."""
    section = page.read_text().split("\n## Params", 1)
    if len(section) == 1:
        return []
    body = section[1].split("\n## ", 1)[0]
    found: list[tuple[str | None, str]] = []
    header: list[str] = []
    for line in body.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = _cells(line)
        if not header:
            header = cells
            continue
        if set(cells[0]) <= {"-", ":"}:
            continue
        if header[0] == "Field":
            found += [(None, name) for name in _names_in(cells[0])]
        elif header[0] == "`type`":
            variant = _names_in(cells[0])[0]
            found += [(variant, name) for name in _names_in(cells[1])]
    return found


def variant_model(model: type[BaseModel], variant: str) -> type[BaseModel]:
    """The sub-model whose `type` literal is `variant`, searched in the model's list-of-union fields."""
    for field in model.model_fields.values():
        for candidate in _flatten(field.annotation):
            is_variant = isinstance(candidate, type) and issubclass(candidate, BaseModel)
            if is_variant and variant in get_args(candidate.model_fields.get("type", _NO_TYPE).annotation):
                return candidate
    raise AssertionError(f"{model.__name__} has no sub-object of type {variant!r}")


_NO_TYPE = FieldInfo(annotation=None)


def _flatten(annotation: Any) -> list[Any]:
    found = [annotation]
    for argument in get_args(annotation):
        found += _flatten(argument)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.stem)
def test_every_documented_param_is_a_field_of_the_model(page: Path) -> None:
    model = params_model(page.stem)
    unknown = []
    for variant, name in documented_params(page):
        target = model if variant is None else variant_model(model, variant)
        if name not in wire_names(target):
            unknown.append(name if variant is None else f"{variant}.{name}")
    assert unknown == [], f"{page.relative_to(REPO)} documents params its model refuses: {unknown}"


def test_the_docs_parser_finds_the_documented_params() -> None:
    found = documented_params(REPO / "docs" / "tasks" / "discover-peers.md")
    assert (None, "p2pPort") in found and ("dns", "nameservers") in found and ("ec2Tags", "address") in found
    assert sum(len(documented_params(page)) for page in PAGES) > 3 * len(PAGES)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_example_manifest_is_accepted_by_its_params_model(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if not document or document.get("kind") != "NodeTask":
            continue
        manifest = NodeTaskManifest.model_validate(document)
        params_model(manifest.spec.type).model_validate(manifest.spec.params)


def test_wire_names_do_not_upper_case_a_letter_after_a_digit() -> None:
    assert [wire_name(name) for name in ("p2p_port", "s3_key", "rpc_port", "chain_id")] == [
        "p2pPort",
        "s3Key",
        "rpcPort",
        "chainId",
    ]


SOURCES = {"sources": [{"type": "static", "addresses": [f"{'ab' * 20}@10.0.0.1:26656"]}]}


@pytest.mark.parametrize(
    ("model", "base", "old", "new", "value", "attribute"),
    [
        (DiscoverPeersParams, SOURCES, "p2PPort", "p2pPort", 26666, "p2p_port"),
        (ExportStateParams, {}, "s3Bucket", "bucket", "genesis-bucket", "bucket"),
        (ExportStateParams, {}, "s3Region", "region", "eu-west-1", "region"),
        (ExportStateParams, {}, "s3Key", "key", "a/b.json", "key"),
        (UploadGenesisArtifactsParams, {"nodeName": "node-0"}, "s3Bucket", "bucket", "genesis-bucket", "bucket"),
    ],
)
def test_a_deprecated_spelling_is_accepted_logged_and_never_mixed_with_the_new_one(
    model: type[TaskParams],
    base: dict[str, Any],
    old: str,
    new: str,
    value: Any,
    attribute: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.params"):
        params = model.model_validate({**base, old: value})
    assert getattr(params, attribute) == value
    assert f"{old!r} is deprecated" in caplog.text
    assert getattr(model.model_validate({**base, new: value}), attribute) == value
    with pytest.raises(ValueError, match=f"{old!r} is the deprecated spelling of {new!r}"):
        model.model_validate({**base, old: value, new: value})


@pytest.mark.parametrize(
    ("base", "python_name", "wire", "value"),
    [
        (SOURCES, "p2p_port", "p2pPort", 26666),
        (SOURCES, "max_peers", "maxPeers", 3),
        ({"sources": [{"type": "kubernetes", "label_selector": "app=sei"}]}, None, None, None),  # a nested model
    ],
)
def test_a_python_field_name_from_the_wire_warns_and_is_refused_beside_the_wire_name(
    base: dict[str, Any], python_name: str | None, wire: str | None, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.params"):
        params = DiscoverPeersParams.model_validate(
            {**base, **({python_name: value} if python_name else {})}, context=WIRE_CONTEXT
        )
    name = python_name or "label_selector"
    assert f"params field {name!r} is deprecated, spell it" in caplog.text
    if python_name is not None:
        assert getattr(params, python_name) == value
        with pytest.raises(ValueError, match=f"{python_name!r} is the deprecated spelling of {wire!r}"):
            DiscoverPeersParams.model_validate({**base, python_name: value, wire: value}, context=WIRE_CONTEXT)


def test_code_may_build_params_by_python_name_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.params"):
        assert DiscoverPeersParams.model_validate({**SOURCES, "p2p_port": 26666}).p2p_port == 26666
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"addresses": ["x"]}, "params.sources[0]: 'type' is missing: one of static, ec2Tags, dns, kubernetes"),
        (
            {"type": "statik"},
            "params.sources[0]: unknown type 'statik' (did you mean 'static'?): "
            "one of static, ec2Tags, dns, kubernetes",
        ),
    ],
)
def test_a_discriminated_union_without_a_valid_type_lists_the_valid_types(source: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DiscoverPeersParams.model_validate({"sources": [source]})
    assert format_validation_error(caught.value, model=DiscoverPeersParams) == message

"""result-export from an in-test CometBFT node (real HTTP) into moto (through boto3)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.cometbft import CometBFTFactory, FakeCometBFT
from tests.fixtures.common import HandlerRunner

STATE = ".sei-sidecar-last-export.json"


def params(node: FakeCometBFT, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"bucket": bucket, "prefix": "results", "rpcEndpoint": node.url, "pageSize": 50, **extra}


def keys(s3_admin: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3_admin.list_objects_v2(Bucket=bucket).get("Contents", []))


def lines(s3_admin: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    body = s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read()
    return [json.loads(line) for line in gzip.decompress(body).decode().splitlines()]


def last_exported(home: Path) -> int:
    return int(json.loads((home / STATE).read_text())["lastExportedHeight"])


async def test_full_pages_are_exported_as_gzip_ndjson_and_the_state_follows(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, cometbft: FakeCometBFT
) -> None:
    cometbft.set_height(120)

    result = await s3_run_handler(TaskType.RESULT_EXPORT, params(cometbft, s3_bucket))

    assert keys(s3_admin, s3_bucket) == ["results/1-50.ndjson.gz", "results/51-100.ndjson.gz"]  # 101-120 not full
    page = lines(s3_admin, s3_bucket, "results/51-100.ndjson.gz")
    assert [line["height"] for line in page] == list(range(51, 101))
    assert page[0]["block_results"] == cometbft.block_results_body(51)
    assert all(list(line) == ["block_results", "exported_at", "height"] for line in page)
    assert page[0]["exported_at"].endswith("Z") and len(page[0]["exported_at"]) == 20
    assert last_exported(s3_settings.home) == 100
    assert result == {
        "latestHeight": 120,
        "fromHeight": 1,
        "lastExportedHeight": 100,
        "pages": 2,
        "lastKey": f"s3://{s3_bucket}/results/51-100.ndjson.gz",
    }
    assert s3_run_handler.progress[-1].current == s3_run_handler.progress[-1].total == 100


@pytest.mark.slow
async def test_envelope_bodies_are_kept_as_the_node_sent_them(
    s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, cometbft_factory: CometBFTFactory
) -> None:
    node = cometbft_factory("enveloped", height=60, shape="envelope")
    await s3_run_handler(TaskType.RESULT_EXPORT, params(node, s3_bucket))
    first = lines(s3_admin, s3_bucket, "results/1-50.ndjson.gz")[0]["block_results"]
    assert first["jsonrpc"] == "2.0"
    assert first["result"] == node.block_results_body(1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("files", "first_key"),
    [
        ({STATE: '{"lastExportedHeight": 50}'}, "results/51-100.ndjson.gz"),
        ({".sei-sidecar-snapshot-height": "100"}, "results/101-150.ndjson.gz"),
        ({STATE: "{corrupt", ".sei-sidecar-snapshot-height": "100"}, "results/101-150.ndjson.gz"),
    ],
)
async def test_start_resumes_from_state_or_bootstraps_from_the_snapshot_height(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    s3_admin: Any,
    s3_bucket: str,
    cometbft: FakeCometBFT,
    files: dict[str, str],
    first_key: str,
) -> None:
    for name, text in files.items():
        (s3_settings.home / name).write_text(text)
    cometbft.set_height(160)

    await s3_run_handler(TaskType.RESULT_EXPORT, params(cometbft, s3_bucket, maxPages=1))

    assert keys(s3_admin, s3_bucket) == [first_key]


async def test_a_pruned_node_starts_at_its_earliest_block(
    s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, cometbft_factory: CometBFTFactory
) -> None:
    node = cometbft_factory("pruned", height=200, earliest_height=101)
    result = await s3_run_handler(TaskType.RESULT_EXPORT, params(node, s3_bucket))
    assert keys(s3_admin, s3_bucket) == ["results/101-150.ndjson.gz", "results/151-200.ndjson.gz"]
    assert result is not None and result["fromHeight"] == 101


@pytest.mark.slow
async def test_a_failure_mid_page_keeps_finished_pages_and_a_rerun_resumes(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, cometbft: FakeCometBFT
) -> None:
    cometbft.set_height(150)
    first = await s3_run_handler(TaskType.RESULT_EXPORT, params(cometbft, s3_bucket, maxPages=1))
    assert first is not None and first["lastExportedHeight"] == 50
    cometbft.fail("http500", path="/block_results")

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.RESULT_EXPORT, params(cometbft, s3_bucket))

    assert caught.value.reason == "RpcError"
    assert "/block_results" in caught.value.message
    assert keys(s3_admin, s3_bucket) == ["results/1-50.ndjson.gz"]
    assert s3_admin.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert last_exported(s3_settings.home) == 50

    cometbft.clear_faults()
    await s3_run_handler(TaskType.RESULT_EXPORT, params(cometbft, s3_bucket))
    assert keys(s3_admin, s3_bucket) == [
        "results/1-50.ndjson.gz",
        "results/101-150.ndjson.gz",
        "results/51-100.ndjson.gz",
    ]


async def test_nothing_new_is_a_no_op(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, cometbft: FakeCometBFT
) -> None:
    cometbft.set_height(60)
    await s3_run_handler(TaskType.RESULT_EXPORT, params(cometbft, s3_bucket))
    before = {key: s3_admin.head_object(Bucket=s3_bucket, Key=key)["ETag"] for key in keys(s3_admin, s3_bucket)}

    result = await s3_run_handler(TaskType.RESULT_EXPORT, params(cometbft, s3_bucket))

    assert result is not None and result["pages"] == 0
    assert "no full page" in result["reason"]
    assert {key: s3_admin.head_object(Bucket=s3_bucket, Key=key)["ETag"] for key in keys(s3_admin, s3_bucket)} == before


async def test_an_unreachable_node_fails_retryably_instead_of_claiming_success(
    s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, refused_port: Callable[..., int]
) -> None:
    with pytest.raises(TaskError) as caught:
        await s3_run_handler(
            TaskType.RESULT_EXPORT, {"bucket": s3_bucket, "rpcEndpoint": f"http://127.0.0.1:{refused_port()}"}
        )
    assert caught.value.reason == "RpcError"
    assert caught.value.retryable
    assert keys(s3_admin, s3_bucket) == []


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        ({"canonicalRpc": "http://other:26657", "traceRpc": "http://t:8545"}, "needs both shadowEvmRpc"),
        ({"pageSize": 0}, "params.pageSize"),
        ({"rpcEndpoint": "ftp://node:21"}, "params.rpcEndpoint"),
        ({"bucket": ""}, "params.bucket: required"),
        ({"prefix": "/x"}, "params.prefix"),
    ],
)
async def test_bad_params_are_refused(run_handler: HandlerRunner, bad: dict[str, Any], text: str) -> None:
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.RESULT_EXPORT, {"bucket": "some-bucket", **bad})
    assert text in caught.value.message

"""result-export comparison mode: a shadow and a canonical in-test CometBFT node (real HTTP), results in moto."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from agent.models import ParamsInvalid, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.cometbft import CometBFTFactory, FakeCometBFT
from tests.fixtures.common import HandlerRunner

STATE = ".sei-sidecar-last-export.json"


def params(shadow: FakeCometBFT, canonical: FakeCometBFT, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"bucket": bucket, "prefix": "cmp", "rpcEndpoint": shadow.url, "canonicalRpc": canonical.url, **extra}


def keys(s3_admin: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3_admin.list_objects_v2(Bucket=bucket).get("Contents", []))


def gunzip(s3_admin: Any, bucket: str, key: str) -> bytes:
    return gzip.decompress(s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read())


def lines(s3_admin: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gunzip(s3_admin, bucket, key).decode().splitlines()]


def last_compared(home: Path) -> int:
    return int(json.loads((home / STATE).read_text())["lastExportedHeight"])


@pytest.fixture
def pair(cometbft_factory: CometBFTFactory) -> tuple[FakeCometBFT, FakeCometBFT]:
    return cometbft_factory("shadow", height=250), cometbft_factory("canonical", height=260)


@pytest.mark.slow
async def test_matching_nodes_give_full_pages_of_matches(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, pair: Any
) -> None:
    shadow, canonical = pair

    result = await s3_run_handler(TaskType.RESULT_EXPORT, params(shadow, canonical, s3_bucket))

    assert keys(s3_admin, s3_bucket) == ["cmp/1-100.compare.ndjson.gz", "cmp/101-200.compare.ndjson.gz"]
    page = lines(s3_admin, s3_bucket, "cmp/101-200.compare.ndjson.gz")
    assert [line["height"] for line in page] == list(range(101, 201))
    assert all(line["match"] is True and "layer1" not in line for line in page)
    assert list(page[0]) == ["height", "timestamp", "match", "layer0"]
    assert page[0]["layer0"] == {"appHashMatch": True, "lastResultsHashMatch": True, "gasUsedMatch": True}
    assert last_compared(s3_settings.home) == 200
    assert result is not None
    assert (result["mode"], result["pages"], result["blocksCompared"], result["diverged"]) == ("compare", 2, 200, False)


async def test_first_divergence_uploads_a_report_flushes_the_partial_page_and_completes(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str,
    cometbft_factory: CometBFTFactory,
) -> None:  # fmt: skip
    shadow = cometbft_factory("shadow", height=150)
    canonical = cometbft_factory("canonical", height=150, forged="other/")
    (s3_settings.home / STATE).write_text(json.dumps({"lastExportedHeight": 40}))

    result = await s3_run_handler(TaskType.RESULT_EXPORT, params(shadow, canonical, s3_bucket, pageSize=50))

    assert keys(s3_admin, s3_bucket) == ["cmp/41-41.compare.ndjson.gz", "cmp/divergence-41.report.json.gz"]
    (line,) = lines(s3_admin, s3_bucket, "cmp/41-41.compare.ndjson.gz")
    assert (line["match"], line["divergenceLayer"]) == (False, 0)
    assert line["layer0"]["shadowAppHash"] == shadow.block_body(41)["block"]["header"]["app_hash"]
    assert line["layer0"]["canonicalAppHash"] == canonical.block_body(41)["block"]["header"]["app_hash"]
    assert line["layer1"] == {"totalTxs": 2, "txCountMatch": True}  # ran, found the transactions equal
    report = json.loads(gunzip(s3_admin, s3_bucket, "cmp/divergence-41.report.json.gz"))
    assert report["height"] == 41 and report["comparison"]["divergenceLayer"] == 0
    assert report["shadow"]["blockResults"] == shadow.block_results_body(41)
    assert report["canonical"]["block"] == canonical.block_body(41)
    assert last_compared(s3_settings.home) == 41
    assert result is not None
    assert (result["diverged"], result["divergenceHeight"], result["divergenceLayer"]) == (True, 41, 0)
    assert result["reportKey"] == f"s3://{s3_bucket}/cmp/divergence-41.report.json.gz"


async def test_a_transaction_result_difference_is_a_layer_1_divergence(
    s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, cometbft_factory: CometBFTFactory
) -> None:
    shadow = cometbft_factory("shadow", height=100)
    canonical = cometbft_factory("canonical", height=100, forged="other/")
    honest = canonical.block_results_body

    def different_gas(height: int) -> dict[str, Any]:
        body = honest(height)
        for tx in body["txs_results"]:
            tx["gas_used"] = "1"
        return body

    canonical.block_results_body = different_gas  # type: ignore[method-assign]

    result = await s3_run_handler(TaskType.RESULT_EXPORT, params(shadow, canonical, s3_bucket))

    assert result is not None and (result["divergenceHeight"], result["divergenceLayer"]) == (1, 1)
    (line,) = lines(s3_admin, s3_bucket, "cmp/1-1.compare.ndjson.gz")
    assert line["layer1"]["divergences"] == [
        {"txIndex": 0, "fields": [{"field": "gasUsed", "shadow": "90001", "canonical": "1"}]}
    ]


@pytest.mark.slow
async def test_survey_mode_records_every_divergence_and_goes_on(
    s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, cometbft_factory: CometBFTFactory
) -> None:
    shadow = cometbft_factory("shadow", height=120)
    canonical = cometbft_factory("canonical", height=120, forged="other/")

    result = await s3_run_handler(
        TaskType.RESULT_EXPORT, params(shadow, canonical, s3_bucket, pageSize=60, continueOnDivergence=True)
    )

    assert keys(s3_admin, s3_bucket) == ["cmp/1-60.compare.ndjson.gz", "cmp/61-120.compare.ndjson.gz"]
    assert all(line["match"] is False for line in lines(s3_admin, s3_bucket, "cmp/61-120.compare.ndjson.gz"))
    assert result is not None
    assert (result["divergences"], result["firstDivergenceHeight"], result["diverged"]) == (120, 1, True)


@pytest.mark.slow
async def test_migration_mode_always_runs_layer_1_and_tolerates_an_app_hash_change(
    s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, pair: Any
) -> None:
    shadow, canonical = pair

    result = await s3_run_handler(
        TaskType.RESULT_EXPORT, params(shadow, canonical, s3_bucket, migrationMode=True, maxPages=1)
    )

    page = lines(s3_admin, s3_bucket, "cmp/1-100.compare.ndjson.gz")
    assert all(line["migrationMode"] is True and line["match"] is True and "layer1" in line for line in page)
    assert result is not None and result["pages"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"canonicalEvmRpc": "http://evm:8545"}, "Layer 2"),
        ({"canonicalRpc": None, "migrationMode": True}, "need canonicalRpc"),
        ({"canonicalRpc": None, "continueOnDivergence": True}, "need canonicalRpc"),
        ({"canonicalRpc": "ftp://x"}, "params.canonicalRpc"),
    ],
)
async def test_comparison_params_are_checked(
    s3_run_handler: HandlerRunner, s3_bucket: str, pair: Any, extra: dict[str, Any], message: str
) -> None:
    shadow, canonical = pair
    with pytest.raises(ParamsInvalid, match=message):
        await s3_run_handler(TaskType.RESULT_EXPORT, params(shadow, canonical, s3_bucket, **extra))

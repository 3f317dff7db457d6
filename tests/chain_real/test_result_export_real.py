"""result-export over a real simd chain: every exported line is the block_results the node serves for that height."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest

from agent.models import TaskStatus, TaskType
from tests.chain_real.conftest import InProcessAgent
from tests.fixtures.chain import SimdChain, rpc_get
from tests.fixtures.s3 import REGION

pytestmark = pytest.mark.chain

PAGE = 4


async def test_full_pages_of_real_block_results_are_exported_and_a_rerun_continues(
    simd_chain: SimdChain, chain_agent, s3_endpoint: str, s3_bucket: str, s3_admin: Any
) -> None:
    node = simd_chain.validator().start(wait_height=2 * PAGE + 1)
    agent: InProcessAgent = chain_agent(node.home, rpc_endpoint=node.rpc_url, s3_endpoint_url=s3_endpoint)
    params = {"bucket": s3_bucket, "region": REGION, "prefix": "results/", "pageSize": PAGE, "maxPages": 2}

    first = await agent.run(TaskType.RESULT_EXPORT, params)

    assert first.status is TaskStatus.COMPLETED, first.error
    keys = sorted(item["Key"] for item in s3_admin.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == [f"results/1-{PAGE}.ndjson.gz", f"results/{PAGE + 1}-{2 * PAGE}.ndjson.gz"]
    body = s3_admin.get_object(Bucket=s3_bucket, Key=keys[1])["Body"].read()
    lines = [json.loads(line) for line in gzip.decompress(body).decode().splitlines()]
    assert [line["height"] for line in lines] == list(range(PAGE + 1, 2 * PAGE + 1))
    for line in lines:
        exported = line["block_results"]
        exported = exported.get("result", exported)
        assert exported == rpc_get(node.rpc_url, f"block_results?height={line['height']}")

    await asyncio.to_thread(node.wait_for_height, 3 * PAGE + 1)
    second = await agent.run(TaskType.RESULT_EXPORT, {**params, "maxPages": 1})
    assert second.status is TaskStatus.COMPLETED, second.error
    keys = sorted(item["Key"] for item in s3_admin.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert f"results/{2 * PAGE + 1}-{3 * PAGE}.ndjson.gz" in keys and len(keys) == 3

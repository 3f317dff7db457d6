"""result-export comparison Layer 2 against two real `geth --dev` EVM JSON-RPCs that diverge by one transaction.

The CometBFT side is the in-test node pair (real HTTP) with forged app hashes on the canonical one, so that every
height is a real Layer 0 divergence and Layers 1 and 2 run; Layer 2's trace and reads go to the real gethes.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.chain.crypto.evm import to_checksum_address
from agent.models import TaskType
from tests.fixtures.cometbft import CometBFTFactory
from tests.fixtures.common import HandlerRunner
from tests.fixtures.evm_replay import JsonRpcRecorder, check_one_transaction_divergence
from tests.fixtures.geth import GethDev, geth_dev  # noqa: F401 - the fixture

pytestmark = [pytest.mark.evm, pytest.mark.slow]

STORE_42 = "0x602a600055600060005360016000f3"
"""Init code: SSTORE(0, 0x2a), then deploy the one-byte runtime code 0x00."""
OTHER = "0x00000000000000000000000000000000000000aa"


def page(s3_admin: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    body = gzip.decompress(s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read())
    return [json.loads(line) for line in body.decode().splitlines()]


async def test_layer2_finds_the_balances_one_transaction_changed_and_is_indeterminate_past_the_chain(
    geth_dev: Callable[[str], GethDev],  # noqa: F811
    cometbft_factory: CometBFTFactory,
    s3_run_handler: HandlerRunner,
    s3_admin: Any,
    s3_bucket: str,
) -> None:
    shadow_evm, canonical_evm = await asyncio.gather(
        asyncio.to_thread(geth_dev, "shadow-evm"), asyncio.to_thread(geth_dev, "canonical-evm")
    )
    assert shadow_evm.account == canonical_evm.account  # same developer key, same genesis
    for node in (shadow_evm, canonical_evm):  # block 1, the same on both: a contract with one storage slot
        receipt = await asyncio.to_thread(node.send, data=STORE_42)
    contract = receipt["contractAddress"]
    await asyncio.to_thread(shadow_evm.send, to=OTHER, value=1)  # block 2: the one differing transaction
    await asyncio.to_thread(canonical_evm.send, to=OTHER, value=2)
    assert shadow_evm.height() == canonical_evm.height() == 2
    shadow = cometbft_factory("shadow", height=3)  # height 3 has no EVM block: Layer 2 cannot read it
    canonical = cometbft_factory("canonical", height=3, forged="other/")

    async with JsonRpcRecorder(shadow_evm.url) as shadow_rec, JsonRpcRecorder(canonical_evm.url) as canonical_rec:
        result = await s3_run_handler(
            TaskType.RESULT_EXPORT,
            {
                "bucket": s3_bucket,
                "prefix": "cmp",
                "rpcEndpoint": shadow.url,
                "canonicalRpc": canonical.url,
                "pageSize": 3,
                "continueOnDivergence": True,
                "shadowEvmRpc": shadow_rec.url,
                "canonicalEvmRpc": canonical_rec.url,
            },
        )

    check_one_transaction_divergence(page(s3_admin, s3_bucket, "cmp/1-3.compare.ndjson.gz"), to_checksum_address(OTHER))
    if os.environ.get("NODETASK_RECORD_EVM"):  # refresh tests/fixtures/geth/ (its README)
        directory = Path(os.environ["NODETASK_RECORD_EVM"])
        for name, recorder in (("shadow", shadow_rec), ("canonical", canonical_rec)):
            (directory / f"{name}.json").write_text(json.dumps(recorder.exchanges, indent=1) + "\n")
    assert result is not None and result["divergences"] == 3
    # The storage the contract wrote is readable the way Layer 2 reads it (same slot, both sides).
    slot = shadow_evm.call("eth_getStorageAt", contract, "0x" + "00" * 32, "0x1")
    assert int(slot, 16) == 0x2A


async def test_the_key_cap_reads_the_first_keys_in_order_and_reports_the_rest(
    geth_dev: Callable[[str], GethDev],  # noqa: F811
    cometbft_factory: CometBFTFactory,
    s3_run_handler: HandlerRunner,
    s3_admin: Any,
    s3_bucket: str,
) -> None:
    node = await asyncio.to_thread(geth_dev, "evm")
    await asyncio.to_thread(node.send, data=STORE_42)
    shadow = cometbft_factory("shadow", height=1)
    canonical = cometbft_factory("canonical", height=1, forged="other/")

    await s3_run_handler(
        TaskType.RESULT_EXPORT,
        {
            "bucket": s3_bucket,
            "rpcEndpoint": shadow.url,
            "canonicalRpc": canonical.url,
            "pageSize": 1,
            "shadowEvmRpc": node.url,
            "canonicalEvmRpc": node.url,
            "traceRpc": node.url,
            "layer2MaxKeys": 3,
        },
    )

    (line,) = page(s3_admin, s3_bucket, "1-1.compare.ndjson.gz")
    assert line["layer2"]["keysChecked"] == 3 and line["layer2"]["keysCapped"] is True
    assert line["layer2"]["keysTouched"] > 3
    assert (line["match"], line["divergenceLayer"]) == (False, 0)  # nothing diverged among the keys read


async def test_layer2_reports_a_storage_slot_written_differently_with_its_slot_and_raw_values(
    geth_dev: Callable[[str], GethDev],  # noqa: F811
    cometbft_factory: CometBFTFactory,
    s3_run_handler: HandlerRunner,
    s3_admin: Any,
    s3_bucket: str,
) -> None:
    shadow_evm, canonical_evm = await asyncio.gather(
        asyncio.to_thread(geth_dev, "shadow-evm"), asyncio.to_thread(geth_dev, "canonical-evm")
    )
    receipt = await asyncio.to_thread(shadow_evm.send, data=STORE_42)
    await asyncio.to_thread(canonical_evm.send, data=STORE_42.replace("0x602a", "0x602b"))  # stores 0x2b instead
    shadow = cometbft_factory("shadow", height=1)
    canonical = cometbft_factory("canonical", height=1, forged="other/")

    result = await s3_run_handler(
        TaskType.RESULT_EXPORT,
        {
            "bucket": s3_bucket,
            "rpcEndpoint": shadow.url,
            "canonicalRpc": canonical.url,
            "pageSize": 1,
            "shadowEvmRpc": shadow_evm.url,
            "canonicalEvmRpc": canonical_evm.url,
            "traceRpc": shadow_evm.url,
        },
    )

    (line,) = page(s3_admin, s3_bucket, "1-1.compare.ndjson.gz")
    assert (line["match"], line["divergenceLayer"]) == (False, 2)
    assert line["layer2"]["divergences"] == [
        {
            "kind": "storage",
            "addr": to_checksum_address(receipt["contractAddress"]),
            "slot": "0x" + "00" * 32,
            "shadow": "0x" + "00" * 31 + "2a",
            "canonical": "0x" + "00" * 31 + "2b",
        }
    ]
    assert result is not None and result["diverged"] is True and result["divergenceLayer"] == 2
    assert any(key.endswith("divergence-1.report.json.gz") for key in result["reportKey"].split())

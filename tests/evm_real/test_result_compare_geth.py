"""result-export comparison Layer 2 against two real `geth --dev` EVM JSON-RPCs that diverge by one transaction.

The CometBFT side is the in-test node pair (real HTTP) with forged app hashes on the canonical one, so that every
height is a real Layer 0 divergence and Layers 1 and 2 run; Layer 2's trace and reads go to the real gethes.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest

from agent.chain.crypto.evm import to_checksum_address
from agent.models import TaskType
from tests.fixtures.cometbft import CometBFTFactory
from tests.fixtures.common import HandlerRunner
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
        receipt = await asyncio.to_thread(node.send, data=STORE_42, gas=100_000)
    contract = receipt["contractAddress"]
    await asyncio.to_thread(shadow_evm.send, to=OTHER, value=1)  # block 2: the one differing transaction
    await asyncio.to_thread(canonical_evm.send, to=OTHER, value=2)
    assert shadow_evm.height() == canonical_evm.height() == 2
    shadow = cometbft_factory("shadow", height=3)  # height 3 has no EVM block: Layer 2 cannot read it
    canonical = cometbft_factory("canonical", height=3, forged="other/")

    result = await s3_run_handler(
        TaskType.RESULT_EXPORT,
        {
            "bucket": s3_bucket,
            "prefix": "cmp",
            "rpcEndpoint": shadow.url,
            "canonicalRpc": canonical.url,
            "pageSize": 3,
            "continueOnDivergence": True,
            "shadowEvmRpc": shadow_evm.url,
            "canonicalEvmRpc": canonical_evm.url,
        },
    )

    first, second, third = page(s3_admin, s3_bucket, "cmp/1-3.compare.ndjson.gz")
    assert list(first) == ["height", "timestamp", "match", "divergenceLayer", "layer0", "layer1", "layer2"]
    # Block 1 matches in EVM state: the verdict stays with the real Layer 0 divergence.
    assert (first["match"], first["divergenceLayer"]) == (False, 0)
    assert "divergences" not in first["layer2"] and "indeterminate" not in first["layer2"]
    accounts = first["layer2"]["accountsChecked"]
    assert accounts >= 2  # at least the sender and the new contract
    assert first["layer2"]["keysChecked"] == 2 * accounts + 2  # balance + nonce each, the slot and the contract code
    # Block 2: both the sender's and the recipient's balances differ, by one wei.
    assert (second["match"], second["divergenceLayer"]) == (False, 2)
    sender = to_checksum_address(shadow_evm.account)
    recipient = to_checksum_address(OTHER)
    expected = [
        {"kind": "balance", "addr": recipient, "shadow": "1", "canonical": "2"},
        {
            "kind": "balance",
            "addr": sender,
            "shadow": str(int(shadow_evm.call("eth_getBalance", sender, "0x2"), 16)),
            "canonical": str(int(canonical_evm.call("eth_getBalance", sender, "0x2"), 16)),
        },
    ]
    assert sorted(second["layer2"]["divergences"], key=lambda d: bytes.fromhex(d["addr"][2:])) == sorted(
        expected, key=lambda d: bytes.fromhex(d["addr"][2:])
    )
    assert int(expected[1]["shadow"]) - int(expected[1]["canonical"]) == 1
    assert second["layer2"]["divergences"] == sorted(
        second["layer2"]["divergences"], key=lambda d: bytes.fromhex(d["addr"][2:])
    )
    # Height 3: no such EVM block, the trace fails on the real node.
    assert (third["match"], third["divergenceLayer"]) == (False, 2)
    assert third["layer2"]["indeterminate"] is True
    assert (third["layer2"]["accountsChecked"], third["layer2"]["keysChecked"]) == (0, 0)
    assert third["layer2"]["error"].startswith(
        "resolving touched accounts at height 3: debug_traceBlockByNumber at height 3: "
    )
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
    await asyncio.to_thread(node.send, data=STORE_42, gas=100_000)
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

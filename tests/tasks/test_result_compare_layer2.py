"""result-export comparison Layer 2 without an EVM node: merging a prestate trace, the verdict rule, and a node that
is unreachable or never answers (real sockets). The real-node tier is tests/evm_real/."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.models import ParamsInvalid, TaskType
from agent.tasks.result_compare import TouchedAccount, _TraceInvalid, compare_block, touched_accounts
from tests.fixtures.cometbft import CometBFTFactory
from tests.fixtures.common import HandlerRunner
from tests.fixtures.evm_replay import JsonRpcReplayer, check_one_transaction_divergence

GETH_RECORDINGS = Path(__file__).parents[1] / "fixtures" / "geth"
RECIPIENT = "0x00000000000000000000000000000000000000AA"
A = "0x00000000000000000000000000000000000000aa"
B = "0x0000000000000000000000000000000000000001"


def slot(n: int) -> str:
    return "0x" + f"{n:064x}"


def test_touched_accounts_are_the_sorted_union_of_every_pre_and_post() -> None:
    traces = [
        {"txHash": "0x1", "result": {"pre": {A: {"balance": "0x1", "storage": {slot(2): slot(0)}}}, "post": {}}},
        {
            "txHash": "0x2",
            "result": {
                "pre": {B: {"balance": "0x5", "nonce": 1}},
                "post": {A.upper().replace("0X", "0x"): {"code": "0x6000", "storage": {slot(1): slot(7)}}},
            },
        },
    ]
    assert touched_accounts(traces) == [
        TouchedAccount(bytes.fromhex(B[2:]), (), False),
        TouchedAccount(bytes.fromhex(A[2:]), (bytes.fromhex(slot(1)[2:]), bytes.fromhex(slot(2)[2:])), True),
    ]


@pytest.mark.parametrize(
    ("traces", "message"),
    [
        ({"not": "a list"}, "not a list"),
        ([{"error": "execution timeout"}], "transaction 0 could not be traced: execution timeout"),
        ([{"result": {"pre": {"0xzz": {}}}}], "address '0xzz' is not 0x-hex"),
        ([{"result": {"post": {A: {"storage": {"0x" + "1" * 66: "0x"}}}}}], "longer than 32 bytes"),
    ],
    ids=["not-a-list", "tx-error", "bad-address", "bad-slot"],
)
def test_a_trace_of_another_shape_is_refused_saying_what(traces: Any, message: str) -> None:
    with pytest.raises(_TraceInvalid, match=message):
        touched_accounts(traces)


DIVERGED_L1 = {"totalTxs": 1, "txCountMatch": True, "divergences": [{"txIndex": 0, "fields": []}]}
CLEAN_L2 = {"accountsChecked": 1, "keysChecked": 2}
DIVERGED_L2 = {**CLEAN_L2, "divergences": [{"kind": "nonce", "addr": B, "shadow": "1", "canonical": "2"}]}
INDETERMINATE_L2 = {"accountsChecked": 0, "keysChecked": 0, "indeterminate": True, "error": "x"}


@pytest.mark.parametrize(
    ("layer1", "layer2", "verdict"),
    [
        (DIVERGED_L1, DIVERGED_L2, 2),
        (DIVERGED_L1, INDETERMINATE_L2, 2),
        (DIVERGED_L1, CLEAN_L2, 1),
        ({"totalTxs": 0, "txCountMatch": True}, CLEAN_L2, 0),
    ],
    ids=["l2-diverged", "l2-indeterminate", "l1-wins-over-clean-l2", "only-l0"],
)
def test_the_deepest_layer_that_fired_sets_the_verdict(
    layer1: dict[str, Any], layer2: dict[str, Any], verdict: int
) -> None:
    block = {"block": {"header": {"app_hash": "AA", "last_results_hash": "BB"}}}
    other = {"block": {"header": {"app_hash": "CC", "last_results_hash": "BB"}}}
    line = compare_block(7, block, other, layer1, migration_mode=False, layer2=layer2)
    assert (line["match"], line["divergenceLayer"]) == (False, verdict)
    assert list(line) == ["height", "timestamp", "match", "divergenceLayer", "layer0", "layer1", "layer2"]
    assert line["layer2"] == layer2


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("endpoint", ["refused", "silent"])
async def test_an_evm_rpc_that_fails_makes_layer2_indeterminate_within_the_block_deadline(
    cometbft_factory: CometBFTFactory,
    s3_run_handler: HandlerRunner,
    s3_admin: Any,
    s3_bucket: str,
    refused_port: Callable[..., int],
    silent_port: int,
    endpoint: str,
) -> None:
    port = refused_port() if endpoint == "refused" else silent_port
    shadow = cometbft_factory("shadow", height=1)
    canonical = cometbft_factory("canonical", height=1, forged="other/")
    evm = f"http://127.0.0.1:{port}"

    result = await s3_run_handler(
        TaskType.RESULT_EXPORT,
        {
            "bucket": s3_bucket,
            "rpcEndpoint": shadow.url,
            "canonicalRpc": canonical.url,
            "pageSize": 1,
            "shadowEvmRpc": evm,
            "canonicalEvmRpc": evm,
            "layer2TimeoutSeconds": 0.5,
        },
    )

    body = gzip.decompress(s3_admin.get_object(Bucket=s3_bucket, Key="1-1.compare.ndjson.gz")["Body"].read())
    (line,) = [json.loads(text) for text in body.decode().splitlines()]
    assert (line["match"], line["divergenceLayer"]) == (False, 2)
    layer2 = line["layer2"]
    assert (layer2["accountsChecked"], layer2["keysChecked"], layer2["indeterminate"]) == (0, 0, True)
    expected = "cannot connect" if endpoint == "refused" else "deadline of 0.5s exceeded"
    assert expected in layer2["error"]
    assert result is not None and result["divergenceLayer"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"shadowEvmRpc": "http://evm:8545"}, "canonicalEvmRpc: comparison Layer 2 needs both"),
        (
            {"canonicalRpc": None, "shadowEvmRpc": "http://a:8545", "canonicalEvmRpc": "http://b:8545"},
            "needs canonicalRpc",
        ),
        ({"shadowEvmRpc": "ftp://a:1", "canonicalEvmRpc": "http://b:8545"}, "params.shadowEvmRpc"),
        ({"layer2MaxKeys": 0}, "params.layer2MaxKeys"),
    ],
)
async def test_layer2_params_are_checked(run_handler: HandlerRunner, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsInvalid, match=message):
        await run_handler(
            TaskType.RESULT_EXPORT, {"bucket": "some-bucket", "canonicalRpc": "http://other:26657", **extra}
        )


async def test_recorded_geth_answers_give_the_real_tiers_divergences(
    cometbft_factory: CometBFTFactory, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    """The exchanges of tests/evm_real's diverging-geth run, replayed over real HTTP: the same lines come out, and
    Layer 2 asks exactly what it asked the real nodes."""
    recorded = {name: json.loads((GETH_RECORDINGS / f"{name}.json").read_text()) for name in ("shadow", "canonical")}
    shadow = cometbft_factory("shadow", height=3)
    canonical = cometbft_factory("canonical", height=3, forged="other/")
    async with (
        JsonRpcReplayer(recorded["shadow"]) as shadow_evm,
        JsonRpcReplayer(recorded["canonical"]) as canonical_evm,
    ):
        await s3_run_handler(
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
    body = gzip.decompress(s3_admin.get_object(Bucket=s3_bucket, Key="cmp/1-3.compare.ndjson.gz")["Body"].read())
    check_one_transaction_divergence([json.loads(text) for text in body.decode().splitlines()], RECIPIENT)
    for replayer, name in ((shadow_evm, "shadow"), (canonical_evm, "canonical")):
        assert sorted(map(json.dumps, replayer.requests)) == sorted(
            json.dumps((item["method"], item["params"])) for item in recorded[name]
        )

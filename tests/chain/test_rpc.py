"""The CometBFT RPC client against the in-test node (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from agent.chain.cosmos.proto import MsgVote, QueryAccountRequest, VoteOption
from agent.chain.cosmos.tx import SignedTx, account_from_query, sign_tx
from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from agent.chain.rpc import RpcClient, RpcError, normalize_endpoint
from agent.models import TaskError
from tests.fixtures.cometbft import (
    CometBFTFactory,
    FakeCometBFT,
    Fault,
    block_hash,
    seid_exchange,
    seid_recorded,
)


@pytest.mark.parametrize("shape", ["flat", "envelope"])
async def test_status_is_typed_in_both_response_shapes(cometbft_factory: CometBFTFactory, shape: str) -> None:
    node = cometbft_factory("witness", height=4321, catching_up=True, shape=shape)
    async with RpcClient(node.url) as rpc:
        status = await rpc.status()
    assert status.node_id == node.node_id
    assert status.latest_height == 4321
    assert status.catching_up is True
    assert status.network == "test-chain"
    assert status.latest_block_hash == node.block_hash(4321)


@pytest.mark.parametrize("shape", ["flat", "envelope"])
async def test_block_hash_at_a_height_and_at_the_tip(cometbft_factory: CometBFTFactory, shape: str) -> None:
    node = cometbft_factory("n", height=50, shape=shape)
    async with RpcClient(node.url) as rpc:
        at_ten = await rpc.block(10)
        tip = await rpc.block()
    assert (at_ten.height, at_ten.hash) == (10, block_hash("test-chain", 10))
    assert (tip.height, tip.hash) == (50, node.block_hash(50))
    assert at_ten.chain_id == "test-chain"


@pytest.mark.parametrize("shape", ["flat", "envelope"])
async def test_raw_block_results_are_the_exact_bytes_the_node_sent(
    cometbft_factory: CometBFTFactory, shape: str
) -> None:
    node = cometbft_factory("n", height=50, shape=shape)
    with urllib.request.urlopen(f"{node.url}/block_results?height=44") as response:
        served = response.read()
    async with RpcClient(node.address) as rpc:
        raw = await rpc.block_results_raw(44)
        parsed = await rpc.block_results(44)
    assert raw == served
    assert ("jsonrpc" in json.loads(raw)) is (shape == "envelope")
    assert parsed["height"] == "44"
    assert len(parsed["txs_results"]) == 44 % 3


async def test_net_info_lists_the_nodes_peers(cometbft: FakeCometBFT) -> None:
    cometbft.add_peer("ab" * 20, "10.0.0.7", moniker="sentry-0")
    async with RpcClient(cometbft.url) as rpc:
        info = await rpc.net_info()
    assert info.listening
    assert [(peer.node_id, peer.remote_ip, peer.moniker) for peer in info.peers] == [
        ("ab" * 20, "10.0.0.7", "sentry-0")
    ]


async def test_the_client_sees_the_chain_advance(cometbft: FakeCometBFT) -> None:
    async with RpcClient(cometbft.url) as rpc:
        before = (await rpc.status()).latest_height
        cometbft.advance(5)
        after = (await rpc.status()).latest_height
    assert after == before + 5


async def test_a_chain_that_advances_on_its_own_grows_between_polls(cometbft: FakeCometBFT) -> None:
    cometbft.advance_every(0.02)
    async with RpcClient(cometbft.url) as rpc:
        first = (await rpc.status()).latest_height
        for _ in range(200):
            await asyncio.sleep(0.02)
            if (await rpc.status()).latest_height > first:
                break
        else:
            pytest.fail("the chain never advanced")


def test_the_fake_answers_synchronous_callers_too(cometbft: FakeCometBFT) -> None:
    with urllib.request.urlopen(f"{cometbft.url}/status") as response:
        body = json.loads(response.read())
    assert body["node_info"]["id"] == cometbft.node_id
    assert cometbft.requests == ["/status"]


def test_witnesses_may_share_a_port_on_different_loopback_addresses(cometbft_factory: CometBFTFactory) -> None:
    first, second = cometbft_factory.on_one_port(["127.0.0.2", "127.0.0.3"], names=["a", "b"])
    assert first.port == second.port
    ids = set()
    for node in (first, second):
        with urllib.request.urlopen(f"{node.url}/status") as response:
            ids.add(json.loads(response.read())["node_info"]["id"])
    assert ids == {first.node_id, second.node_id}


async def test_a_lying_witness_serves_a_different_well_formed_hash(cometbft_factory: CometBFTFactory) -> None:
    honest = cometbft_factory("honest")
    liar = cometbft_factory("liar", lying=True)
    async with RpcClient(honest.url) as a, RpcClient(liar.url) as b:
        truth, lie = await a.block(500), await b.block(500)
    assert truth.hash != lie.hash
    assert len(lie.hash) == 64


@pytest.mark.parametrize(
    ("fault", "kind", "cause"),
    [
        (Fault.HANG, "timeout", "no answer within 0.3s"),
        (Fault.HTTP_500, "http", "HTTP 500 Internal Server Error"),
        (Fault.DROP, "connect", "connection dropped"),
        (Fault.MALFORMED, "malformed", "body is not JSON"),
        (Fault.RPC_ERROR, "rpc", "JSON-RPC error -32603: Internal error: injected fault (HTTP 500)"),
    ],
)
async def test_each_failure_names_endpoint_path_and_cause(
    cometbft: FakeCometBFT, fault: Fault, kind: str, cause: str
) -> None:
    cometbft.fail(fault, path="/status")
    async with RpcClient(cometbft.url, timeout=0.3) as rpc:
        with pytest.raises(RpcError) as caught:
            await rpc.status()
    error = caught.value
    assert isinstance(error, TaskError)
    assert error.kind == kind
    assert f"{cometbft.url}/status" in error.message
    assert cause in error.message


async def test_connection_refused_names_the_endpoint(refused_port: Callable[..., int]) -> None:
    port = refused_port()
    async with RpcClient(f"127.0.0.1:{port}") as rpc:
        with pytest.raises(RpcError) as caught:
            await rpc.status()
    assert caught.value.kind == "connect"
    assert f"http://127.0.0.1:{port}/status: cannot connect" in caught.value.message


@pytest.mark.parametrize(
    ("height", "cause"),
    [
        (2000, "height 2000 must be less than or equal to the current blockchain height 1000"),
        (5, "height 5 is not available, lowest height is 100"),
    ],
)
async def test_a_height_the_node_does_not_have_is_a_json_rpc_error(
    cometbft_factory: CometBFTFactory, height: int, cause: str
) -> None:
    node = cometbft_factory("pruned", height=1000, earliest_height=100, shape="envelope")
    async with RpcClient(node.url) as rpc:
        with pytest.raises(RpcError) as caught:
            await rpc.block(height)
    assert caught.value.kind == "rpc"
    assert f"/block?height={height}" in caught.value.message
    assert cause in caught.value.message


async def test_the_per_call_timeout_overrides_the_clients(cometbft: FakeCometBFT) -> None:
    cometbft.fail(Fault.HANG, path="/status", times=1, seconds=0.5)
    async with RpcClient(cometbft.url, timeout=0.05) as rpc:
        status = await rpc.status(seconds=5)
    assert status.node_id == cometbft.node_id


async def test_a_fault_limited_to_some_calls_clears_after_them(cometbft: FakeCometBFT) -> None:
    cometbft.fail(Fault.HTTP_500, times=2)
    async with RpcClient(cometbft.url) as rpc:
        for _ in range(2):
            with pytest.raises(RpcError):
                await rpc.status()
        assert (await rpc.status()).latest_height == 1000


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"result": {"node_info": {"id": "not-hex"}, "sync_info": {}}}, "node_info.id is not a 40-hex node ID"),
        ([1, 2], "body is a JSON list, not an object"),
        ({"node_info": {"id": "ab" * 20}}, "result.sync_info is missing"),
    ],
)
async def test_a_status_body_of_the_wrong_shape_is_malformed(
    cometbft: FakeCometBFT, monkeypatch: pytest.MonkeyPatch, body: object, problem: str
) -> None:
    monkeypatch.setattr(cometbft, "status_body", lambda latest: body)
    async with RpcClient(cometbft.url) as rpc:
        with pytest.raises(RpcError) as caught:
            await rpc.status()
    assert caught.value.kind == "malformed"
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("10.0.0.1:26657", "http://10.0.0.1:26657"),
        ("rpc.example.com", "http://rpc.example.com:26657"),
        ("tcp://0.0.0.0:26657", "http://0.0.0.0:26657"),
        ("rpc.example.com:443", "https://rpc.example.com:443"),
        ("https://rpc.example.com/", "https://rpc.example.com"),
        ("http://[::1]:26657", "http://[::1]:26657"),
    ],
)
def test_rpc_addresses_are_normalized_to_urls(address: str, url: str) -> None:
    assert normalize_endpoint(address) == url


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("", "empty RPC address"),
        ("ftp://host:21", "scheme 'ftp'"),
        ("host:99999", "port is not a number"),
        ("http://host:26657/status", "only scheme://host:port"),
    ],
)
def test_unusable_rpc_addresses_are_refused_by_name(address: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        normalize_endpoint(address)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_that_arrives_in_pieces_is_read_whole(chunked: bool) -> None:
    """A large block_results from a busy node comes in several TCP segments; one read would cut it short."""
    body = json.dumps({"jsonrpc": "2.0", "id": -1, "result": {"height": "6", "pad": "x" * 300_000}}).encode()
    halves = [body[: len(body) // 2], body[len(body) // 2 :]]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing + b"\r\n\r\n")
        for half in halves:
            writer.write(f"{len(half):x}\r\n".encode() + half + b"\r\n" if chunked else half)
            await writer.drain()
            await asyncio.sleep(0.2)  # the second half arrives later
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RpcClient(f"http://127.0.0.1:{port}") as rpc:
            raw = await rpc.block_results_raw(6)
    finally:
        server.close()
        await server.wait_closed()
    assert raw == body


# --- both dialects: stock CometBFT v0.38 and seid's sei-tendermint ----------------------------------------------------

SEI_ADDRESS = "sei1" + "q" * 38
ACCOUNT_QUERY = "/cosmos.auth.v1beta1.Query/Account"


@pytest.mark.parametrize(
    ("name", "setup"),
    [
        ("abci_query-0x-hex-data", {}),
        ("tx-0x-hash", {}),
        ("tx-not-found", {}),
        ("tx-index-off", {"tx_index": False}),
        ("broadcast_tx_sync-vote-inactive-proposal", {"sequence": 2}),
        ("broadcast_tx_sync-wrong-sequence", {"sequence": 3}),
    ],
)
def test_the_fake_in_seids_dialect_answers_as_seid_did_byte_for_byte(
    cometbft_factory: CometBFTFactory, name: str, setup: dict[str, Any]
) -> None:
    """Each recorded GET exchange (tests/fixtures/seid/rpc) sent to the fake gets seid's status and exact body: the
    fake's seid dialect is seid's, not a guess (D1's refusal of `0x` hex, D2's flat errors with HTTP 200)."""
    node = cometbft_factory("seid", dialect="seid")
    for attribute, value in setup.items():
        setattr(node, attribute, value)
    exchange = seid_exchange(name)
    with urllib.request.urlopen(node.url + exchange["request"]["path"]) as response:
        assert (response.status, response.read().decode()) == (exchange["status"], exchange["body"])


async def test_seids_recorded_flat_status_is_read() -> None:
    async with _fixed_answer(200, seid_recorded("status")) as url, RpcClient(url) as rpc:
        status = await rpc.status()
    assert (status.network, status.node_id) == ("rec-1", "dcaf2e9ebfe6d452ac337d28b30d007050876531")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("tx-index-off", "unindexed"), ("tx-not-found", None), ("tx-vote-inactive-proposal", "found")],
)
async def test_seids_recorded_tx_answers_are_read_as_what_they_are(name: str, kind: str | None) -> None:
    """D2: before, each of these flat bodies was "a committed transaction" (height 0, code 0)."""
    async with _fixed_answer(200, seid_recorded(name)) as url, RpcClient(url) as rpc:
        if kind == "unindexed":
            with pytest.raises(RpcError) as caught:
                await rpc.tx("AB" * 32)
            assert caught.value.kind == "unindexed"
            return
        found = await rpc.tx("AB" * 32)
    if kind is None:
        assert found is None
    else:
        assert found is not None and found["height"] == "66" and found["tx_result"]["code"] == 3


@pytest.mark.parametrize("dialect", ["cometbft", "seid"])
async def test_the_account_query_is_answered_in_both_dialects(cometbft_factory: CometBFTFactory, dialect: str) -> None:
    """D1: seid refuses `0x` hex for a hex-typed byte argument, stock CometBFT needs it; the client speaks both."""
    node = cometbft_factory("n", dialect=dialect)
    node.sequence = 4
    async with RpcClient(node.url) as rpc:
        first = await rpc.abci_query(ACCOUNT_QUERY, QueryAccountRequest(SEI_ADDRESS).encode())
        second = await rpc.abci_query(ACCOUNT_QUERY, QueryAccountRequest(SEI_ADDRESS).encode())
    for response in (first, second):
        assert account_from_query(base64.b64decode(response["value"])).sequence == 4
    queries = [request for request in node.requests if request.startswith("/abci_query")]
    assert len(queries) == (3 if dialect == "seid" else 2)  # seid: one refusal, then the client remembers


@pytest.mark.parametrize("dialect", ["cometbft", "seid"])
async def test_a_committed_transaction_is_found_by_hash_in_both_dialects(
    cometbft_factory: CometBFTFactory, dialect: str
) -> None:
    node = cometbft_factory("n", dialect=dialect)
    tx = _signed_vote(sequence=0)
    async with RpcClient(node.url) as rpc:
        answer = await rpc.broadcast_tx_sync(tx.tx_bytes)
        found = await rpc.tx(tx.tx_hash)
        missing = await rpc.tx("AB" * 32)
    assert int(answer["code"]) == 0 and answer["hash"] == tx.tx_hash
    assert found is not None and int(found["height"]) == node.height and found["tx_result"]["code"] == 0
    assert missing is None


@pytest.mark.parametrize("dialect", ["cometbft", "seid"])
async def test_a_node_without_a_tx_index_is_unindexed_never_a_result(
    cometbft_factory: CometBFTFactory, dialect: str
) -> None:
    """D2: seid answers "transaction querying is disabled" as a flat body with HTTP 200; it is not a transaction."""
    node = cometbft_factory("n", dialect=dialect)
    node.tx_index = False
    async with RpcClient(node.url) as rpc:
        with pytest.raises(RpcError) as caught:
            await rpc.tx("AB" * 32)
    assert caught.value.kind == "unindexed"
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"code":-32603,"message":"Internal error","data":"tx (AB) not found"}', 200),
        (b'{"code":-32602,"message":"Invalid params","data":"encoding/hex: invalid byte"}', 200),
        (b'{"code":-32603,"message":"Internal error"}', 500),
        (b'{"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error","data":"x"}}', 200),
    ],
    ids=["flat-200", "flat-invalid-params", "flat-500-no-data", "envelope-200"],
)
async def test_an_error_body_is_an_error_whatever_the_http_status(body: bytes, status: int) -> None:
    """D2: a flat `{"code","message","data"}` body (seid's errors) is never read as a result."""
    async with _fixed_answer(status, body) as url, RpcClient(url) as rpc:
        with pytest.raises(RpcError) as caught:
            await rpc.get("/tx", {"hash": "0x00"})
    assert caught.value.kind == "rpc"


async def test_a_flat_result_with_a_code_is_still_a_result() -> None:
    """broadcast_tx_sync's result has `code`, `log`, `hash`: not an error object (it has no `message`)."""
    body = b'{"code":13,"data":"","log":"insufficient fees","codespace":"sdk","hash":"AB"}'
    async with _fixed_answer(200, body) as url, RpcClient(url) as rpc:
        result = await rpc.get("/broadcast_tx_sync", {"tx": "0x00"})
    assert result["code"] == 13


@pytest.mark.parametrize(
    ("error", "shown", "hidden"),
    [
        ({"code": -32603, "message": "Internal error", "data": "tx (AB) not found"}, "Internal error", ""),
        ({"code": -32603, "message": "password=hunter2", "data": "x"}, "Internal error", "hunter2"),
        ({"code": -31999, "message": "token=s3cr3t", "data": "y"}, "code -31999: y", "s3cr3t"),
        ({"code": -31999, "message": "a token=s3cr3t here"}, "code -31999: a token=[redacted] here", "s3cr3t"),
        ({"code": -32603, "message": "m", "data": "db password=hunter2 " + "z" * 2000}, "Internal error", "hunter2"),
    ],
    ids=[
        "known-code",
        "known-code-remote-message-dropped",
        "unknown-code-message-dropped",
        "unknown-code-only-message-scrubbed",
        "data-scrubbed-and-bounded",
    ],
)
@pytest.mark.parametrize("status", [200, 500])
async def test_a_json_rpc_error_reaches_the_message_only_mapped_scrubbed_and_bounded(
    error: dict[str, Any], shown: str, hidden: str, status: int
) -> None:
    """F9: the code through a fixed mapping; the remote's text scrubbed and bounded."""
    for body in (json.dumps(error).encode(), json.dumps({"jsonrpc": "2.0", "id": -1, "error": error}).encode()):
        async with _fixed_answer(status, body) as url, RpcClient(url) as rpc:
            with pytest.raises(RpcError) as caught:
                await rpc.status()
        message = caught.value.message
        assert shown in message
        if hidden:
            assert hidden not in message
        assert len(message) < 400


def _signed_vote(*, sequence: int) -> SignedTx:
    vote = MsgVote(proposal_id=1, voter=SEI_ADDRESS, option=VoteOption.VOTE_OPTION_YES)
    key = Secp256k1PrivateKey(bytes(range(1, 33)))
    return sign_tx(vote, key, chain_id="test-chain", account_number=7, sequence=sequence, fee=(), gas=100_000)


@contextlib.asynccontextmanager
async def _fixed_answer(status: int, body: bytes) -> AsyncIterator[str]:
    """A server that answers every request with `status` and `body` (content type JSON)."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()

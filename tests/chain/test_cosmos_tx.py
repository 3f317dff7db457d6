"""The protobuf codec, gentx building/signing and verification (agent.chain.cosmos.proto / .gentx).

Two kinds of external evidence that the bytes are the Go SDK's bytes:
- `data/sei-atlantic-sub-1-gentx-*.json` are real gentxs written by `seid gentx` for Sei's public testnet
  `atlantic-sub-1` (sei-protocol/testnet, atlantic-subchains/atlantic-sub-1/gentx/). Their signatures cover
  gogoproto's encoding, so they verify only if our re-encoding of the decoded JSON is byte-identical.
- cosmjs's published SIGN_MODE_DIRECT vectors (cosmos/cosmjs, packages/proto-signing/src/testutils.spec.ts): the
  faucet mnemonic signs the given sign bytes into the given signature, so our RFC 6979 signer matches theirs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.chain.cosmos.address import SEI, account_address_bytes
from agent.chain.cosmos.gentx import (
    GENTX_INVALID,
    GENTX_MISSING_MEMO,
    GentxProblem,
    ValidatorSpec,
    build_gentx,
    gentx_file_bytes,
    sign_doc_bytes,
    verify_gentx,
)
from agent.chain.cosmos.proto import (
    STRING,
    AuthInfo,
    Coin,
    CommissionRates,
    Description,
    Fee,
    Message,
    MsgCreateValidator,
    ProtoError,
    SignDoc,
    Tx,
    TxBody,
    TxRaw,
    proto_field,
)
from agent.chain.cosmos.proto import (
    Any as ProtoAny,
)
from agent.chain.crypto import bech32, bip32, bip39, secp256k1
from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from agent.models.params.coins import Coin as ParamCoin

DATA = Path(__file__).parent / "data"
REAL_GENTXS = sorted(DATA.glob("sei-atlantic-sub-1-gentx-*.json"))


def real_gentx(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@pytest.mark.parametrize("path", REAL_GENTXS, ids=lambda p: p.stem)
def test_real_seid_gentx_verifies_after_decode_and_reencode(path: Path) -> None:
    verified = verify_gentx(real_gentx(path), "atlantic-sub-1", SEI)
    assert verified.self_delegation == ParamCoin("usei", 10_000_000)
    assert verified.memo.startswith(verified.node_id + "@")


@pytest.mark.parametrize("path", REAL_GENTXS, ids=lambda p: p.stem)
def test_real_seid_gentx_proto_json_round_trips_exactly(path: Path) -> None:
    document = real_gentx(path)
    tx = Tx.from_json(document)
    assert tx.to_json() == document
    assert Tx.decode(tx.encode()) == tx


@pytest.mark.parametrize("path", REAL_GENTXS, ids=lambda p: p.stem)
def test_real_gentx_signer_key_gives_its_published_sei_addresses(path: Path) -> None:
    document = real_gentx(path)
    signer = ProtoAny.from_json(document["auth_info"]["signer_infos"][0]["public_key"]).unpack()
    account = account_address_bytes(signer.key)  # type: ignore[attr-defined]
    message = document["body"]["messages"][0]
    assert bech32.encode("sei", account) == message["delegator_address"]
    assert bech32.encode("seivaloper", account) == message["validator_address"]


def test_real_gentx_does_not_verify_for_another_chain() -> None:
    with pytest.raises(GentxProblem, match="does not verify for chain 'atlantic-2'") as caught:
        verify_gentx(real_gentx(REAL_GENTXS[0]), "atlantic-2", SEI)
    assert caught.value.reason == GENTX_INVALID


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("body", "messages", 0, "description", "moniker"), "someone-else"),
        (("body", "messages", 0, "value", "amount"), "99999999999"),
        (("body", "messages", 0, "commission", "rate"), "0.06"),
        (("body", "memo"), "11c84300b4417af7e6c081f413003176b33b3877@10.0.0.1:26656"),
        (("auth_info", "fee", "gas_limit"), "200001"),
    ],
    ids=["moniker", "amount", "commission", "memo", "gas"],
)
def test_tampering_with_a_signed_field_breaks_the_signature(path: tuple[Any, ...], value: str) -> None:
    document = copy.deepcopy(real_gentx(REAL_GENTXS[0]))
    target: Any = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(GentxProblem, match="signature does not verify"):
        verify_gentx(document, "atlantic-sub-1", SEI)


# --- cosmjs SIGN_MODE_DIRECT vectors ------------------------------------------------------------------------------

COSMJS_FAUCET = (
    "economy stock theory fatal elder harbor betray wasp final emotion task crumble siren bottom lizard educate "
    "guess current outdoor pair theory focus wife stone"
)
COSMJS_BODY = (
    "0a90010a1c2f636f736d6f732e62616e6b2e763162657461312e4d736753656e6412700a2d636f736d6f7331706b707472653766646b6c36"
    "6766727a6c65736a6a766878686c63337234676d6d6b38727336122d636f736d6f7331717970717870713971637273737a67327076787136"
    "7273307a716733797963356c7a763778751a100a0575636f736d120731323334353637"
)
COSMJS_SIGN_BYTES = (
    "0a97010a90010a1c2f636f736d6f732e62616e6b2e763162657461312e4d736753656e6412700a2d636f736d6f7331706b70747265376664"
    "6b6c366766727a6c65736a6a766878686c63337234676d6d6b38727336122d636f736d6f7331717970717870713971637273737a67327076"
    "7871367273307a716733797963356c7a763778751a100a0575636f736d12073132333435363712001800126b0a500a460a1f2f636f736d6f"
    "732e63727970746f2e736563703235366b312e5075624b657912230a21034f04181eeba35391b858633a765c4a0c189697b40d216354d508"
    "90d350c7029012040a020801180012170a0d0a0575636f736d12043230303010c09a0c1a0022001a0c73696d642d74657374696e672001"
)
COSMJS_SIGNED_TX = (  # signedTxBytes of the sequence-0 vector, verbatim
    "0a97010a90010a1c2f636f736d6f732e62616e6b2e763162657461312e4d736753656e6412700a2d636f736d6f7331706b70747265376664"
    "6b6c366766727a6c65736a6a766878686c63337234676d6d6b38727336122d636f736d6f7331717970717870713971637273737a67327076"
    "7871367273307a716733797963356c7a763778751a100a0575636f736d12073132333435363712001800126b0a500a460a1f2f636f736d6f"
    "732e63727970746f2e736563703235366b312e5075624b657912230a21034f04181eeba35391b858633a765c4a0c189697b40d216354d508"
    "90d350c7029012040a020801180012170a0d0a0575636f736d12043230303010c09a0c1a0022001a40d1bb55b0f3e5f9c260a20c8ccf2cb4"
    "4f19bafccba84c7fb6e2b77fac401b15c9228c33236a701dd7a7c4a481aa5dedb902c982fe565504c4f4e7f39ccfcd73d6"
)


@dataclasses.dataclass(frozen=True)
class MsgSend(Message):
    """cosmos.bank.v1beta1.MsgSend, defined here only to read cosmjs's vector (the agent never sends tokens)."""

    from_address: str = proto_field(1, STRING)
    to_address: str = proto_field(2, STRING)
    amount: tuple[Coin, ...] = proto_field(3, "message", message=Coin, repeated=True)


def test_cosmjs_sign_doc_decodes_to_its_parts_and_canonical_body() -> None:
    doc = SignDoc.decode(bytes.fromhex(COSMJS_SIGN_BYTES))
    assert (doc.chain_id, doc.account_number) == ("simd-testing", 1)
    body = TxBody.decode(doc.body_bytes)
    # cosmjs wrote the empty memo and zero timeout explicitly; re-encoding drops them, giving its canonical bodyBytes.
    assert doc.body_bytes.hex() == COSMJS_BODY + "12001800"
    assert body.encode().hex() == COSMJS_BODY
    send = MsgSend.decode(body.messages[0].value)
    assert body.messages[0].type_url == "/cosmos.bank.v1beta1.MsgSend"
    assert send.amount == (Coin("ucosm", 1234567),)
    assert AuthInfo.decode(doc.auth_info_bytes).fee == Fee(amount=(Coin("ucosm", 2000),), gas_limit=200000)


def test_our_signer_reproduces_cosmjs_signature_byte_for_byte() -> None:
    key = bip32.derive_path(bip39.mnemonic_to_seed(COSMJS_FAUCET), bip32.COSMOS_HD_PATH).private_key
    sign_bytes = bytes.fromhex(COSMJS_SIGN_BYTES)
    published = TxRaw.decode(bytes.fromhex(COSMJS_SIGNED_TX)).signatures[0]
    assert key.sign(sign_bytes) == published
    assert secp256k1.verify(key.public_key, sign_bytes, published)
    assert (
        bech32.encode("cosmos", account_address_bytes(key.public_key))
        == "cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6"
    )


# --- gogoproto encoding rules -------------------------------------------------------------------------------------


def test_non_nullable_and_customtype_fields_are_always_encoded() -> None:
    # description (1), commission (2) with its three Dec fields, min_self_delegation (3) and value (7) with its
    # Int amount appear although every one is empty or zero; the plain strings (4, 5) and the nullable pubkey do not.
    encoded = MsgCreateValidator().encode()
    assert encoded == bytes.fromhex("0a00" + "1209" + "0a01301201301a0130" + "1a0130" + "3a03" + "120130")


def test_dec_travels_as_scaled_integer_text_on_the_wire_and_18_decimals_in_json() -> None:
    rates = CommissionRates(Decimal("0.1"), Decimal("0.2"), Decimal("0.01"))
    assert rates.encode() == b"\n\x12100000000000000000\x12\x12200000000000000000\x1a\x1110000000000000000"
    assert rates.to_json() == {
        "rate": "0.100000000000000000",
        "max_rate": "0.200000000000000000",
        "max_change_rate": "0.010000000000000000",
    }


def _spec(
    memo: str = "0123456789abcdef0123456789abcdef01234567@node-0.node.ns.svc.cluster.local:26656",
) -> ValidatorSpec:
    return ValidatorSpec(
        moniker="node-0",
        self_delegation=ParamCoin("usei", 5_000_000),
        consensus_public_key=bytes(range(32)),
        memo=memo,
        details="a validator",
    )


ACCOUNT_KEY = Secp256k1PrivateKey(bytes.fromhex("11" * 32))
BUILT = build_gentx(_spec(), ACCOUNT_KEY, "test-chain")

ROUND_TRIP_MESSAGES: list[Message] = [
    BUILT,
    BUILT.body,  # type: ignore[list-item]
    BUILT.auth_info,  # type: ignore[list-item]
    TxRaw(BUILT.body.encode(), BUILT.auth_info.encode(), BUILT.signatures),  # type: ignore[union-attr]
    SignDoc(b"\x01", b"\x02", "chain", 7),
    CommissionRates(Decimal("0.123456789012345678"), Decimal(1), Decimal(0)),
    Description("m", "i", "w", "s", "d"),
    Fee(amount=(Coin("usei", 1), Coin("uatom", 0)), gas_limit=1, payer="p", granter="g"),
    MsgCreateValidator(),
]


@pytest.mark.parametrize("message", ROUND_TRIP_MESSAGES, ids=lambda m: type(m).__name__)
def test_encode_decode_encode_gives_equal_bytes(message: Message) -> None:
    encoded = message.encode()
    decoded = type(message).decode(encoded)
    assert decoded == message
    assert decoded.encode() == encoded


@pytest.mark.parametrize("message", ROUND_TRIP_MESSAGES, ids=lambda m: type(m).__name__)
def test_proto_json_round_trips(message: Message) -> None:
    assert type(message).from_json(json.loads(json.dumps(message.to_json()))) == message


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (bytes.fromhex("2a0130"), "unknown field number 5"),
        (bytes.fromhex("0801"), "wire type 0, expected 2"),
        (bytes.fromhex("0a01750a0176"), "appears more than once"),
        (bytes.fromhex("0a05757365"), "runs past the end"),
        (bytes.fromhex("0aff"), "truncated varint"),
        (bytes.fromhex("120178"), "not an integer string"),
    ],
    ids=["unknown-field", "wire-type", "duplicate", "truncated", "varint", "int-text"],
)
def test_decoder_refuses_what_it_could_not_re_encode(data: bytes, problem: str) -> None:
    with pytest.raises(ProtoError, match=problem):
        Coin.decode(data)


def test_any_with_an_unknown_type_is_refused() -> None:
    with pytest.raises(ProtoError, match=r"unsupported type '/cosmos\.bank\.v1beta1\.MsgSend'"):
        ProtoAny.from_json({"@type": "/cosmos.bank.v1beta1.MsgSend", "from_address": "x"})


# --- building and verifying our own gentxs ------------------------------------------------------------------------


def test_built_gentx_verifies_against_its_own_key_and_recomputed_sign_bytes() -> None:
    verified = verify_gentx(json.loads(gentx_file_bytes(BUILT)), "test-chain", SEI)
    account = bech32.encode("sei", account_address_bytes(ACCOUNT_KEY.public_key))
    assert verified.delegator_address == account
    assert verified.validator_address == bech32.encode("seivaloper", account_address_bytes(ACCOUNT_KEY.public_key))
    assert verified.consensus_public_key == bytes(range(32))
    assert verified.p2p_address == "node-0.node.ns.svc.cluster.local:26656"
    assert BUILT.auth_info is not None and BUILT.auth_info.fee == Fee(gas_limit=200_000)
    assert BUILT.body is not None
    sign_bytes = sign_doc_bytes(BUILT.body, BUILT.auth_info, "test-chain", 0)
    assert secp256k1.verify(ACCOUNT_KEY.public_key, sign_bytes, BUILT.signatures[0])


def test_building_twice_gives_identical_bytes() -> None:
    assert gentx_file_bytes(build_gentx(_spec(), ACCOUNT_KEY, "test-chain")) == gentx_file_bytes(BUILT)


def test_gentx_file_is_compact_json_with_a_trailing_newline() -> None:
    data = gentx_file_bytes(BUILT)
    assert data.endswith(b"}\n") and b"\n" not in data[:-1] and b": " not in data
    assert json.loads(data)["body"]["messages"][0]["@type"] == "/cosmos.staking.v1beta1.MsgCreateValidator"


def _resigned(mutate: Any, key: Secp256k1PrivateKey = ACCOUNT_KEY) -> dict[str, Any]:
    """A gentx document changed by `mutate` and then signed again (so only the changed rule can fail)."""
    tx = mutate(BUILT)
    assert tx.body is not None and tx.auth_info is not None
    signature = key.sign(sign_doc_bytes(tx.body, tx.auth_info, "test-chain", 0))
    return dataclasses.replace(tx, signatures=(signature,)).to_json()  # type: ignore[no-any-return]


def _with_message(tx: Tx, **changes: Any) -> Tx:
    assert tx.body is not None
    message = dataclasses.replace(tx.body.messages[0].unpack(), **changes)  # type: ignore[type-var]
    return dataclasses.replace(tx, body=dataclasses.replace(tx.body, messages=(ProtoAny.pack(message),)))


def _with_memo(memo: str) -> Any:
    return lambda tx: dataclasses.replace(tx, body=dataclasses.replace(tx.body, memo=memo))


OTHER_KEY = Secp256k1PrivateKey(bytes.fromhex("22" * 32))
OTHER_ACCOUNT = bech32.encode("sei", account_address_bytes(OTHER_KEY.public_key))


@pytest.mark.parametrize(
    ("document", "reason", "problem"),
    [
        (_resigned(_with_memo("")), GENTX_MISSING_MEMO, "memo is empty"),
        (_resigned(_with_memo("node@host")), GENTX_INVALID, "is not <nodeID>@<host>:<port>"),
        (_resigned(lambda tx: _with_message(tx, delegator_address=OTHER_ACCOUNT)), GENTX_INVALID, "is not the signer"),
        (
            _resigned(lambda tx: _with_message(tx, min_self_delegation=6_000_000)),
            GENTX_INVALID,
            "min_self_delegation 6000000",
        ),
        (
            _resigned(lambda tx: _with_message(tx, commission=CommissionRates(Decimal("0.5"), Decimal("0.2")))),
            GENTX_INVALID,
            "commission rates",
        ),
        (
            _resigned(lambda tx: dataclasses.replace(tx, body=dataclasses.replace(tx.body, messages=()))),
            GENTX_INVALID,
            "exactly one message",
        ),
        ({"body": {"messages": "x"}}, GENTX_INVALID, "expected a list"),
        ({"body": {}, "auth_info": {}, "extra": 1}, GENTX_INVALID, "unknown field 'extra'"),
    ],
    ids=["no-memo", "bad-memo", "not-signer", "min-self", "commission", "no-message", "malformed", "unknown-field"],
)
def test_broken_gentx_is_refused_with_a_clear_reason(document: Any, reason: str, problem: str) -> None:
    with pytest.raises(GentxProblem, match=problem) as caught:
        verify_gentx(document, "test-chain", SEI)
    assert caught.value.reason == reason

"""Known-answer tests for the key and address primitives (agent.chain.crypto, agent.chain.cosmos.address).

Sources of the vectors:
- BIP39: Trezor's vectors.json (python-mnemonic), passphrase "TREZOR".
- BIP32: test vector 1 of BIP-0032 (also SLIP-0010's secp256k1 vector 1), chain codes and keys in hex.
- Cosmos address of a published mnemonic: cosmjs `packages/amino/src/secp256k1wallet.spec.ts` (and
  proto-signing's wallet specs): "special sign fit simple patrol salute grocery chicken wheat radar tonight ceiling"
  at m/44'/118'/0'/0/0 has public key 02baa4ef...d7b6 and address cosmos1jhg0e7s6gn44tfc5k37kr04sznyhedtc9rzys5.
- Bech32: BIP-0173's valid and invalid test strings.
- EIP-55: the checksummed addresses listed in EIP-55; Keccak-256 of "" and "abc"; the private key
  0x4c0883a6...362318 -> 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23 (web3.js / eth-account documentation example).
- Ed25519 key -> node ID: CometBFT's priv_validator_key.json reference example
  (docs.cometbft.com, "priv_validator_key.json"), address E74FBE24164CFC4F88E311C3AC92E63D0DC310D8.
"""

from __future__ import annotations

import base64

import pytest

from agent.chain.cosmos.address import (
    SEI,
    Bech32Prefixes,
    account_address_bytes,
    address_bytes,
    consensus_address_bytes,
    with_prefix,
)
from agent.chain.crypto import bech32, bip32, bip39, evm, secp256k1
from agent.chain.keys import Ed25519Key, node_id, validator_address

TREZOR_VECTORS = [
    (
        "00000000000000000000000000000000",
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
    ),
    (
        "7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
        "legal winner thank year wave sausage worth useful legal winner thank yellow",
        "2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607",
    ),
    (
        "ffffffffffffffffffffffffffffffff",
        "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
        "ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34e18231052e48c069",
    ),
    (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon "
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
        "bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8",
    ),
]


@pytest.mark.parametrize(("entropy", "phrase", "seed"), TREZOR_VECTORS)
def test_bip39_trezor_vector_gives_its_mnemonic_and_seed(entropy: str, phrase: str, seed: str) -> None:
    assert bip39.mnemonic_from_entropy(bytes.fromhex(entropy)) == phrase
    assert bip39.mnemonic_to_seed(phrase, "TREZOR").hex() == seed


def test_generated_mnemonic_has_24_valid_words_and_differs_each_time() -> None:
    first, second = bip39.generate_mnemonic(), bip39.generate_mnemonic()
    assert len(first.split()) == 24
    bip39.validate_mnemonic(first)
    assert first != second


@pytest.mark.parametrize(
    ("phrase", "problem"),
    [
        ("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon", "checksum"),
        ("abandon " * 11 + "notaword", "unknown word"),
        ("abandon about", "has 2"),
    ],
)
def test_invalid_mnemonic_is_refused_without_echoing_it(phrase: str, problem: str) -> None:
    with pytest.raises(bip39.MnemonicInvalid) as caught:
        bip39.mnemonic_to_seed(phrase)
    assert problem in str(caught.value)
    assert "abandon" not in str(caught.value)


BIP32_VECTOR_1 = [
    (
        "m",
        "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508",
        "e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35",
        "0339a36013301597daef41fbe593a02cc513d0b55527ec2df1050e2e8ff49c85c2",
    ),
    (
        "m/0'",
        "47fdacbd0f1097043b78c63c20c34ef4ed9a111d980047ad16282c7ae6236141",
        "edb2e14f9ee77d26dd93b4ecede8d16ed408ce149b6cd80b0715a2d911a0afea",
        "035a784662a4a20a65bf6aab9ae98a6c068a81c52e4b032c0fb5400c706cfccc56",
    ),
    (
        "m/0'/1",
        "2a7857631386ba23dacac34180dd1983734e444fdbf774041578e9b6adb37c19",
        "3c6cb8d0f6a264c91ea8b5030fadaa8e538b020f0a387421a12de9319dc93368",
        "03501e454bf00751f24b1b489aa925215d66af2234e3891c3b21a52bedb3cd711c",
    ),
    (
        "m/0H/1/2H",
        "04466b9cc8e161e966409ca52986c584f07e9dc81f735db683c3ff6ec7b1503f",
        "cbce0d719ecf7431d88e6a89fa1483e02e35092af60c042b1df2ff59fa424dca",
        "0357bfe1e341d01c69fe5654309956cbea516822fba8a601743a012a7896ee8dc2",
    ),
    (
        "m/0'/1/2'/2",
        "cfb71883f01676f587d023cc53a35bc7f88f724b1f8c2892ac1275ac822a3edd",
        "0f479245fb19a38a1954c5c7c0ebab2f9bdfd96a17563ef28a6a4b1a2a764ef4",
        "02e8445082a72f29b75ca48748a914df60622a609cacfce8ed0e35804560741d29",
    ),
    (
        "m/0'/1/2'/2/1000000000",
        "c783e67b921d2beb8f6b389cc646d7263b4145701dadd2161548a8b078e65e9e",
        "471b76e389e528d6de6d816857e012c5455051cad6660850e58372a6c3e6e7c8",
        "022a471424da5e657499d1ff51cb43c47481a03b1e77f951fe64cec9f5a48f7011",
    ),
]


@pytest.mark.parametrize(("path", "chain_code", "secret", "public"), BIP32_VECTOR_1)
def test_bip32_vector_1_derives_the_published_keys(path: str, chain_code: str, secret: str, public: str) -> None:
    key = bip32.derive_path(bytes.fromhex("000102030405060708090a0b0c0d0e0f"), path)
    assert key.chain_code.hex() == chain_code
    assert key.secret.hex() == secret
    assert key.private_key.public_key.hex() == public


@pytest.mark.parametrize("path", ["44'/118'", "m/x", "m/2147483648", "m/1''"])
def test_bip32_rejects_malformed_paths(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        bip32.parse_path(path)


COSMJS_MNEMONIC = "special sign fit simple patrol salute grocery chicken wheat radar tonight ceiling"


def test_published_cosmjs_mnemonic_gives_its_cosmos_and_sei_addresses() -> None:
    key = bip32.derive_path(bip39.mnemonic_to_seed(COSMJS_MNEMONIC), bip32.COSMOS_HD_PATH).private_key
    assert key.public_key.hex() == "02baa4ef93f2ce84592a49b1d729c074eab640112522a7a89f7d03ebab21ded7b6"
    account = account_address_bytes(key.public_key)
    assert bech32.encode("cosmos", account) == "cosmos1jhg0e7s6gn44tfc5k37kr04sznyhedtc9rzys5"
    sei_address = bech32.encode(SEI.account, account)
    assert sei_address == "sei1jhg0e7s6gn44tfc5k37kr04sznyhedtcg0njk4"
    operator = with_prefix(sei_address, SEI.validator)
    assert operator.startswith("seivaloper1")
    assert address_bytes(operator, "seivaloper") == address_bytes(sei_address, "sei") == account


def test_sei_prefixes_follow_the_sdk_pattern() -> None:
    assert Bech32Prefixes.from_main("sei") == Bech32Prefixes(
        "sei", "seipub", "seivaloper", "seivaloperpub", "seivalcons", "seivalconspub"
    )


BECH32_VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11" + "q" * 82 + "c8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]


@pytest.mark.parametrize("text", BECH32_VALID)
def test_bip173_valid_strings_decode_and_reencode(text: str) -> None:
    hrp, words = bech32.decode_words(text)
    assert bech32.encode_words(hrp, words) == text.lower()


BECH32_INVALID = [
    ("\x201nwldj5", "outside printable ASCII"),
    ("\x7f1axkwrx", "outside printable ASCII"),
    ("\x801eym55h", "outside printable ASCII"),
    (
        "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
        "longer than 90",
    ),
    ("pzry9x0s0muk", "no human-readable part"),
    ("1pzry9x0s0muk", "no human-readable part"),
    ("x1b4n0q5v", "not a Bech32 character"),
    ("li1dgmt3", "too short"),
    ("de1lg7wt\xff", "outside printable ASCII"),
    ("A1G7SGD8", "invalid checksum"),
    ("10a06t8", "no human-readable part"),
    ("1qzzfhee", "no human-readable part"),
    ("a12UEL5L", "mixes upper and lower case"),
]


@pytest.mark.parametrize(("text", "reason"), BECH32_INVALID)
def test_bip173_invalid_strings_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(bech32.Bech32Error, match=reason):
        bech32.decode_words(text)


def test_address_with_the_wrong_prefix_is_refused() -> None:
    with pytest.raises(bech32.Bech32Error, match="expected 'sei'"):
        address_bytes("cosmos1jhg0e7s6gn44tfc5k37kr04sznyhedtc9rzys5", "sei")


@pytest.mark.parametrize(
    "address",
    [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_eip55_checksums_match_the_eip_examples(address: str) -> None:
    assert evm.to_checksum_address(address.lower()) == address
    assert evm.to_checksum_address(bytes.fromhex(address[2:])) == address


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
    ],
)
def test_keccak256_is_ethereums_keccak_not_sha3(data: bytes, digest: str) -> None:
    assert evm.keccak256(data).hex() == digest


def test_eth_address_of_a_known_private_key() -> None:
    key = secp256k1.Secp256k1PrivateKey(
        bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    )
    assert evm.eth_address(key.public_key) == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


# CometBFT reference example: docs.cometbft.com/v1.0/references/config/priv_validator_key.json
COMETBFT_PUBLIC = "UjxDQgVTlHJOZ7axpMl/iczMIJXiQpFxCFjwKGvzYqE="
COMETBFT_PRIVATE = "9giFjwnmAKCAI95l4Q32kXsau+itGrbsvz84CTLxGnJSPENCBVOUck5ntrGkyX+JzMwgleJCkXEIWPAoa/NioQ=="
COMETBFT_ADDRESS = "E74FBE24164CFC4F88E311C3AC92E63D0DC310D8"


def test_ed25519_key_gives_the_published_address_and_node_id() -> None:
    key = Ed25519Key.from_tendermint_value(COMETBFT_PRIVATE, source="vector")
    public = base64.b64decode(COMETBFT_PUBLIC)
    assert key.public_key == public
    assert validator_address(public) == COMETBFT_ADDRESS
    assert node_id(public) == COMETBFT_ADDRESS.lower()
    assert consensus_address_bytes(public).hex().upper() == COMETBFT_ADDRESS


def test_signatures_are_deterministic_low_s_and_verify() -> None:
    key = secp256k1.Secp256k1PrivateKey(bytes(31) + b"\x07")
    first, second = key.sign(b"sign bytes"), key.sign(b"sign bytes")
    assert first == second and len(first) == 64
    assert int.from_bytes(first[32:], "big") <= secp256k1.CURVE_ORDER // 2
    assert secp256k1.verify(key.public_key, b"sign bytes", first)
    assert not secp256k1.verify(key.public_key, b"other bytes", first)


def test_high_s_twin_of_a_valid_signature_is_refused() -> None:
    key = secp256k1.Secp256k1PrivateKey(bytes(31) + b"\x09")
    signature = key.sign(b"message")
    s = int.from_bytes(signature[32:], "big")
    malleated = signature[:32] + (secp256k1.CURVE_ORDER - s).to_bytes(32, "big")
    assert not secp256k1.verify(key.public_key, b"message", malleated)


def test_private_key_repr_shows_only_public_material() -> None:
    secret = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    key = secp256k1.Secp256k1PrivateKey(secret)
    derived = bip32.derive_path(bip39.mnemonic_to_seed(COSMJS_MNEMONIC), bip32.COSMOS_HD_PATH)
    for text in (repr(key), str(key), repr(derived)):
        assert secret.hex() not in text and derived.secret.hex() not in text

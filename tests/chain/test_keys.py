"""agent.chain.keys: Tendermint key file formats, validation, node IDs against public vectors, write-once creation."""

from __future__ import annotations

import base64
import copy
import json
import pickle
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.chain.keys import (
    Ed25519Key,
    consensus_public_key,
    ensure_node_key,
    ensure_validator_key,
    load_node_key,
    load_validator_key,
    load_validator_state,
    node_id,
    node_id_from_file,
    validator_address,
    validator_key_path,
    validator_state_path,
)
from agent.models import TaskError

# A priv_validator_key.json published as a test constant in NibiruChain/cosmopilot (test/chainnode e2e tests,
# `privKey`, with its `/cosmos.crypto.ed25519.PubKey` counterpart `pubKey`), written by a real Tendermint node.
PUBLIC_ADDRESS = "DE623086321818A30ADF4A8D68EEBEBDBF78B0F9"
PUBLIC_PUBKEY = "vwvZODnQoT31PwNN4ZhwIOwfSQ/iar4QAa0C6Tr5yVw="
PUBLIC_PRIVKEY = "LXYv7Ogc5tiniSiKRUrkcVP5IpgyE5qr9h5wSTmphwu/C9k4OdChPfU/A03hmHAg7B9JD+JqvhABrQLpOvnJXA=="
PUBLIC_VALIDATOR_KEY_FILE = (
    f'{{"address":"{PUBLIC_ADDRESS}","pub_key":{{"type":"tendermint/PubKeyEd25519","value":"{PUBLIC_PUBKEY}"}},'
    f'"priv_key":{{"type":"tendermint/PrivKeyEd25519","value":"{PUBLIC_PRIVKEY}"}}}}'
)

# RFC 8032 section 7.1, TEST 1: secret key (seed) and the public key it derives.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")

# haderech/noir, test "NodeId: node_id_from_pubkey": an Ed25519 public key and the Tendermint node ID derived from it.
NOIR_PUBLIC = bytes.fromhex("c9a4f86bab6a4383c66fb517ac5eb302c56164c955d490bfe3b0309cb6e98c1e")
NOIR_NODE_ID = "7525a30cd8e51acf87a12b16efd7f4a0af6bd3f5"


def tendermint_value(seed: bytes, public: bytes) -> str:
    return base64.b64encode(seed + public).decode()


def node_key_document(value: str, **extra: object) -> str:
    return json.dumps({**extra, "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": value}})


def test_node_id_matches_the_published_vector() -> None:
    assert node_id(NOIR_PUBLIC) == NOIR_NODE_ID


def test_published_validator_key_file_loads_with_its_address_and_node_id(tmp_path: Path) -> None:
    path = tmp_path / "priv_validator_key.json"
    path.write_text(PUBLIC_VALIDATOR_KEY_FILE)
    key = load_validator_key(path)
    assert key.address == PUBLIC_ADDRESS
    assert key.public_key_base64 == PUBLIC_PUBKEY
    assert key.node_id == PUBLIC_ADDRESS.lower()


def test_rfc8032_seed_derives_its_published_public_key() -> None:
    key = Ed25519Key.from_tendermint_value(tendermint_value(RFC8032_SEED, RFC8032_PUBLIC), source="vector")
    assert key.public_key == RFC8032_PUBLIC
    assert validator_address(RFC8032_PUBLIC) == key.address == key.node_id.upper()


def test_validator_key_json_is_byte_identical_to_tendermints_indented_format() -> None:
    key = Ed25519Key.from_tendermint_value(PUBLIC_PRIVKEY, source="vector")
    assert key.validator_key_json() == (
        "{\n"
        f'  "address": "{PUBLIC_ADDRESS}",\n'
        '  "pub_key": {\n'
        '    "type": "tendermint/PubKeyEd25519",\n'
        f'    "value": "{PUBLIC_PUBKEY}"\n'
        "  },\n"
        '  "priv_key": {\n'
        '    "type": "tendermint/PrivKeyEd25519",\n'
        f'    "value": "{PUBLIC_PRIVKEY}"\n'
        "  }\n"
        "}"
    )


def test_node_key_json_is_compact_with_the_derived_id() -> None:
    key = Ed25519Key.from_tendermint_value(PUBLIC_PRIVKEY, source="vector")
    assert key.node_key_json() == (
        f'{{"id":"{PUBLIC_ADDRESS.lower()}","priv_key":{{"type":"tendermint/PrivKeyEd25519","value":"{PUBLIC_PRIVKEY}"}}}}'
    )


def test_ensure_node_key_writes_a_0600_compact_file_once_and_reloads_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "config" / "node_key.json"
    key, created = ensure_node_key(path)
    assert created
    content = path.read_text()
    assert re.fullmatch(
        r'\{"id":"[0-9a-f]{40}","priv_key":\{"type":"tendermint/PrivKeyEd25519","value":"[A-Za-z0-9+/]{86}=="\}\}',
        content,
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(content)["id"] == key.node_id
    again, created_again = ensure_node_key(path)
    assert (again, created_again) == (key, False)
    assert path.read_text() == content
    assert node_id_from_file(path) == key.node_id


def test_generated_keys_are_distinct() -> None:
    assert Ed25519Key.generate() != Ed25519Key.generate()


def test_cometbft_038_node_key_without_id_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "node_key.json"
    path.write_text(node_key_document(PUBLIC_PRIVKEY))
    assert node_id_from_file(path) == PUBLIC_ADDRESS.lower()


OTHER_PUBLIC = Ed25519Key.generate().public_key


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"id": "x"}', "priv_key is missing"),
        (json.dumps({"priv_key": {"type": "tendermint/PrivKeySecp256k1", "value": PUBLIC_PRIVKEY}}), "priv_key.type"),
        (node_key_document("not base64!"), "not valid base64"),
        (node_key_document(base64.b64encode(b"\x01" * 48).decode()), "decodes to 48 bytes, expected 64"),
        (node_key_document(tendermint_value(RFC8032_SEED, OTHER_PUBLIC)), "public half does not belong"),
        (node_key_document(PUBLIC_PRIVKEY, id="0" * 40), "does not match the key's node ID"),
        (node_key_document(PUBLIC_PRIVKEY, id=PUBLIC_ADDRESS), "does not match the key's node ID"),
        (node_key_document(12345), "must be a base64 string"),
    ],
    ids=[
        "empty",
        "array",
        "no-priv-key",
        "wrong-type",
        "bad-base64",
        "short",
        "mismatched-public-half",
        "wrong-id",
        "uppercase-id",
        "value-not-string",
    ],
)
def test_corrupt_node_key_fails_naming_the_file_without_leaking_the_key(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "config" / "node_key.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(TaskError) as caught:
        ensure_node_key(path)
    message = str(caught.value)
    assert str(path) in message
    assert complaint in message
    assert PUBLIC_PRIVKEY not in message
    assert PUBLIC_PRIVKEY[:20] not in message
    assert path.read_text() == content
    assert sorted(p.name for p in path.parent.iterdir()) == ["node_key.json"]


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda d: d.update(address="00" * 20), "does not match the key's address"),
        (lambda d: d.update(address=PUBLIC_ADDRESS.lower()), "does not match the key's address"),
        (lambda d: d["pub_key"].update(value=base64.b64encode(OTHER_PUBLIC).decode()), "pub_key.value is not"),
        (lambda d: d["pub_key"].update(type="tendermint/PubKeySecp256k1"), "pub_key.type"),
        (lambda d: d.pop("pub_key"), "pub_key is missing"),
    ],
    ids=["wrong-address", "lowercase-address", "wrong-pub-key", "wrong-pub-type", "no-pub-key"],
)
def test_inconsistent_validator_key_is_refused_and_left_untouched(tmp_path: Path, edit, complaint: str) -> None:
    document = json.loads(PUBLIC_VALIDATOR_KEY_FILE)
    edit(document)
    key_path, state_path = tmp_path / "priv_validator_key.json", tmp_path / "priv_validator_state.json"
    key_path.write_text(json.dumps(document))
    state_path.write_text('{"height":"0","round":0,"step":0}')
    with pytest.raises(TaskError, match=re.escape(complaint)) as caught:
        ensure_validator_key(key_path, state_path)
    assert PUBLIC_PRIVKEY not in str(caught.value)
    assert key_path.read_text() == json.dumps(document)


def test_ensure_validator_key_writes_key_and_initial_state_in_tendermint_format(tmp_path: Path) -> None:
    key_path, state_path = validator_key_path(tmp_path), validator_state_path(tmp_path)
    key, created = ensure_validator_key(key_path, state_path)
    assert created
    assert state_path.read_text() == '{\n  "height": "0",\n  "round": 0,\n  "step": 0\n}'
    assert json.loads(key_path.read_text())["address"] == key.address
    assert key_path.read_text() == key.validator_key_json()
    for path in (key_path, state_path):
        assert path.stat().st_mode & 0o777 == 0o600
    assert consensus_public_key(tmp_path) == key.public_key


def test_ensure_validator_key_keeps_an_advanced_signing_state(tmp_path: Path) -> None:
    key_path, state_path = validator_key_path(tmp_path), validator_state_path(tmp_path)
    key_path.parent.mkdir(parents=True)
    key_path.write_text(PUBLIC_VALIDATOR_KEY_FILE)
    state_path.parent.mkdir(parents=True)
    signed = '{"height":"1234","round":0,"step":3,"signature":"c2ln","signbytes":"AB"}'
    state_path.write_text(signed)
    key, created = ensure_validator_key(key_path, state_path)
    assert (key.address, created) == (PUBLIC_ADDRESS, False)
    assert state_path.read_text() == signed
    assert key_path.read_text() == PUBLIC_VALIDATOR_KEY_FILE


def test_existing_validator_key_without_state_is_refused_as_double_sign_risk(tmp_path: Path) -> None:
    key_path, state_path = tmp_path / "priv_validator_key.json", tmp_path / "priv_validator_state.json"
    key_path.write_text(PUBLIC_VALIDATOR_KEY_FILE)
    with pytest.raises(TaskError, match="double-sign"):
        ensure_validator_key(key_path, state_path)
    assert not state_path.exists()


def test_state_written_before_an_interrupted_key_write_is_completed_on_rerun(tmp_path: Path) -> None:
    key_path, state_path = tmp_path / "priv_validator_key.json", tmp_path / "priv_validator_state.json"
    state_path.write_text('{\n  "height": "0",\n  "round": 0,\n  "step": 0\n}')
    key, created = ensure_validator_key(key_path, state_path)
    assert created
    assert load_validator_key(key_path) == key


@pytest.mark.parametrize(
    "state",
    ['{"height":0,"round":0,"step":0}', '{"height":"0","round":-1,"step":0}', '{"height":"0","round":0}', "nope"],
    ids=["numeric-height", "negative-round", "no-step", "not-json"],
)
def test_corrupt_signing_state_is_refused_and_left_untouched(tmp_path: Path, state: str) -> None:
    state_path = tmp_path / "priv_validator_state.json"
    state_path.write_text(state)
    with pytest.raises(TaskError, match=re.escape(str(state_path))):
        ensure_validator_key(tmp_path / "priv_validator_key.json", state_path)
    assert state_path.read_text() == state
    assert not (tmp_path / "priv_validator_key.json").exists()
    with pytest.raises(TaskError):
        load_validator_state(state_path)


def test_key_object_never_shows_or_serialises_the_private_key() -> None:
    key = Ed25519Key.from_tendermint_value(PUBLIC_PRIVKEY, source="vector")
    seed_b64_prefix = PUBLIC_PRIVKEY[:20]
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert seed_b64_prefix not in text
        assert PUBLIC_ADDRESS.lower() in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.copy(key)


def test_signatures_verify_with_the_public_key() -> None:
    key = Ed25519Key.generate()
    signature = key.sign(b"block")
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, b"block")


def test_missing_key_file_is_a_task_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"node_key\.json: file not found"):
        load_node_key(tmp_path / "node_key.json")

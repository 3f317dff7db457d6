"""The Cosmos keyring reader (`agent.chain.keyring`): `test` and `file` backends, key lookup for signed transactions.

The keyrings here are written by `write_keyring` below, which follows the format as the module docstring states it
(JWE PBES2-HS256+A128KW / A256GCM items, amino `localInfo` records); `tests/fixtures/keyring/` holds keyrings made by
a real `simd keys add` (Cosmos SDK v0.45.16; `keys.json` says how, with the throwaway keys' addresses and the
passphrase), which the same reader opens, so the writer and the reader cannot agree on a wrong format unnoticed.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest

from agent.chain.cosmos.address import SEI_IDENTITY, account_address_bytes
from agent.chain.cosmos.keystore import ensure_account_key
from agent.chain.crypto import bech32
from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from agent.chain.keyring import (
    KEY_NOT_FOUND,
    KEYRING_NOT_CONFIGURED,
    KEYRING_UNREADABLE,
    LOCAL_INFO,
    SECP256K1_PRIVATE,
    SECP256K1_PUBLIC,
    Keyring,
    amino_prefix,
    signing_key,
)
from agent.models import TaskError
from agent.models.settings import AgentSettings, SettingsError

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "keyring"


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _uvarint(number << 3 | 2) + _uvarint(len(payload)) + payload


def local_info(name: str, secret: bytes, *, algo: str = "secp256k1", kind: bytes = LOCAL_INFO) -> bytes:
    public = Secp256k1PrivateKey(secret).public_key
    body = (
        kind
        + _field(1, name.encode())
        + _field(2, SECP256K1_PUBLIC + _uvarint(33) + public)
        + _field(3, SECP256K1_PRIVATE + _uvarint(32) + secret)
        + _field(4, algo.encode())
    )
    return _uvarint(len(body)) + body


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwe(plaintext: bytes, passphrase: str, iterations: int = 8192) -> str:
    import hashlib

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    salt = secrets.token_bytes(12)
    header = {"alg": "PBES2-HS256+A128KW", "enc": "A256GCM", "p2c": iterations, "p2s": _b64url(salt)}
    protected = _b64url(json.dumps(header).encode())
    kek = hashlib.pbkdf2_hmac("sha256", passphrase.encode(), b"PBES2-HS256+A128KW\x00" + salt, iterations, 16)
    content_key, iv = secrets.token_bytes(32), secrets.token_bytes(12)
    sealed = AESGCM(content_key).encrypt(iv, plaintext, protected.encode())
    parts = [
        protected,
        _b64url(aes_key_wrap(kek, content_key)),
        _b64url(iv),
        _b64url(sealed[:-16]),
        _b64url(sealed[-16:]),
    ]
    return ".".join(parts)


def write_keyring(directory: Path, passphrase: str, keys: dict[str, bytes], **info: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, secret in keys.items():
        item = {"Key": f"{name}.info", "Data": base64.b64encode(local_info(name, secret, **info)).decode()}
        (directory / f"{name}.info").write_text(jwe(json.dumps(item).encode(), passphrase))
        address = account_address_bytes(Secp256k1PrivateKey(secret).public_key)
        index = {"Key": f"{address.hex()}.address", "Data": base64.b64encode(f"{name}.info".encode()).decode()}
        (directory / f"{address.hex()}.address").write_text(jwe(json.dumps(index).encode(), passphrase))


def _address(secret: bytes, prefix: str = "sei") -> str:
    return bech32.encode(prefix, account_address_bytes(Secp256k1PrivateKey(secret).public_key))


SECRET = bytes.fromhex("11" * 32)
OTHER = bytes.fromhex("22" * 32)
PASSPHRASE = "correct horse battery staple"


def test_amino_prefixes_are_the_registered_ones() -> None:
    # The well-known amino prefixes of secp256k1 keys (every amino-JSON pubkey hex starts with eb5ae987).
    assert (SECP256K1_PUBLIC.hex(), SECP256K1_PRIVATE.hex()) == ("eb5ae987", "e1b0f79b")
    assert amino_prefix("crypto/keys/localInfo") == LOCAL_INFO


@pytest.mark.parametrize(
    ("backend", "given_dir", "passphrase", "where"),
    [
        ("test", "root", "", "root/keyring-test"),
        ("file", "root", PASSPHRASE, "root/keyring-file"),
        ("file", "root/keyring-file", PASSPHRASE, "root/keyring-file"),  # the original strips a trailing element
    ],
)
def test_a_key_is_read_from_each_backend_and_directory_form(
    tmp_path: Path, backend: str, given_dir: str, passphrase: str, where: str
) -> None:
    write_keyring(tmp_path / where, passphrase or "test", {"node_admin": SECRET, "other": OTHER})
    keyring = Keyring.open(backend, tmp_path / given_dir, passphrase)
    key = keyring.key("node_admin", SEI_IDENTITY)
    assert key.address == _address(SECRET)
    assert key.private_key.secret_bytes() == SECRET
    assert keyring.names() == ["node_admin", "other"]


def test_a_wrong_passphrase_is_refused_without_quoting_it(tmp_path: Path) -> None:
    write_keyring(tmp_path / "keyring-file", PASSPHRASE, {"node_admin": SECRET})
    keyring = Keyring.open("file", tmp_path, "not the passphrase")
    with pytest.raises(TaskError) as raised:
        keyring.key("node_admin")
    assert raised.value.reason == KEYRING_UNREADABLE
    assert "wrong passphrase" in raised.value.message
    assert "not the passphrase" not in f"{raised.value.message} {raised.value.hint} {keyring!r}"


def test_a_missing_key_names_the_keys_there_are(tmp_path: Path) -> None:
    write_keyring(tmp_path / "keyring-test", "test", {"alice": SECRET})
    with pytest.raises(TaskError, match=r"keyring entry 'node_admin': not found .*\(keys: alice\)") as raised:
        Keyring.open("test", tmp_path).key("node_admin")
    assert raised.value.reason == KEY_NOT_FOUND


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"kind": amino_prefix("crypto/keys/offlineInfo")}, "an offline"),
        ({"kind": amino_prefix("crypto/keys/ledgerInfo")}, "a Ledger key"),
        ({"algo": "sr25519"}, "only secp256k1"),
    ],
)
def test_a_key_that_cannot_sign_here_is_refused_by_kind(tmp_path: Path, info: dict[str, object], message: str) -> None:
    write_keyring(tmp_path / "keyring-test", "test", {"k": SECRET}, **info)  # type: ignore[arg-type]
    with pytest.raises(TaskError, match=message) as raised:
        Keyring.open("test", tmp_path).key("k")
    assert raised.value.reason == KEYRING_UNREADABLE


def test_a_record_whose_public_key_is_not_its_private_keys_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keyring-test"
    write_keyring(directory, "test", {"k": SECRET})
    record = bytearray(local_info("k", SECRET))
    public = Secp256k1PrivateKey(SECRET).public_key
    record[record.index(public) + 5] ^= 1
    item = {"Key": "k.info", "Data": base64.b64encode(bytes(record)).decode()}
    (directory / "k.info").write_text(jwe(json.dumps(item).encode(), "test"))
    with pytest.raises(TaskError, match="does not belong to the private key"):
        Keyring.open("test", tmp_path).key("k")


def test_an_absurd_iteration_count_is_refused_before_any_work(tmp_path: Path) -> None:
    directory = tmp_path / "keyring-test"
    directory.mkdir()
    item = json.dumps({"Key": "k.info", "Data": ""}).encode()
    (directory / "k.info").write_text(jwe(item, "test", iterations=1))
    header, *rest = (directory / "k.info").read_text().split(".")
    bad = {**json.loads(base64.urlsafe_b64decode(header + "==")), "p2c": 10**9}
    (directory / "k.info").write_text(".".join([_b64url(json.dumps(bad).encode()), *rest]))
    with pytest.raises(TaskError, match="p2c"):
        Keyring.open("test", tmp_path).key("k")


# --- which key a task signs with --------------------------------------------------------------------------------


def _settings(home: Path, **values: object) -> AgentSettings:
    return AgentSettings(home=home, **values)  # type: ignore[arg-type]


def test_a_named_key_comes_from_the_configured_keyring(tmp_path: Path) -> None:
    write_keyring(tmp_path / "keyring-file", PASSPHRASE, {"node_admin": SECRET})  # <home>/keyring-file
    settings = _settings(tmp_path, keyring_backend="file", keyring_passphrase=PASSPHRASE)  # default dir
    assert signing_key(settings, "node_admin").address == _address(SECRET)


def test_validator_is_the_nodes_own_key_unless_the_keyring_holds_one(tmp_path: Path) -> None:
    own, _ = ensure_account_key(tmp_path)
    write_keyring(tmp_path / "ring" / "keyring-test", "test", {"node_admin": SECRET})
    settings = _settings(tmp_path, keyring_backend="test", keyring_dir=tmp_path / "ring")
    assert signing_key(settings, "validator").address == own.address
    assert signing_key(_settings(tmp_path), "validator").address == own.address
    write_keyring(tmp_path / "ring" / "keyring-test", "test", {"validator": OTHER})
    assert signing_key(settings, "validator").address == _address(OTHER)  # the keyring wins, as in the original


def test_validator_falls_back_to_the_go_sidecars_gentx_keyring(tmp_path: Path) -> None:
    write_keyring(tmp_path / "keyring-test", "test", {"validator": SECRET})  # what the original's generate-gentx made
    assert signing_key(_settings(tmp_path), "validator").address == _address(SECRET)


def test_a_named_key_without_a_keyring_says_what_to_configure(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="keyring not configured: set SEI_KEYRING_BACKEND") as raised:
        signing_key(_settings(tmp_path), "node_admin")
    assert raised.value.reason == KEYRING_NOT_CONFIGURED


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEI_KEYRING_BACKEND": "file"}, "SEI_KEYRING_PASSPHRASE required when SEI_KEYRING_BACKEND=file"),
        ({"SEI_KEYRING_BACKEND": "kms"}, 'unsupported SEI_KEYRING_BACKEND "kms" (allowed: test|file)'),
        ({"SEI_KEYRING_BACKEND": "os"}, "the os backend"),
    ],
)
def test_a_keyring_setting_the_agent_cannot_use_stops_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        AgentSettings.from_env(env)
    assert message in str(raised.value)


def test_the_passphrase_never_appears_in_settings_output() -> None:
    settings = AgentSettings.from_env(
        {"SEI_KEYRING_BACKEND": "file", "SEI_KEYRING_PASSPHRASE": "hunter2-passphrase", "SEI_HOME": "/h"}
    )
    assert settings.keyring_passphrase.get_secret_value() == "hunter2-passphrase"
    assert "hunter2" not in repr(settings) + settings.model_dump_json() + str(settings.model_dump())


@pytest.mark.parametrize("backend", ["test", "file"])
def test_keyrings_made_by_simd_keys_add_are_read(backend: str) -> None:
    manifest = json.loads((RECORDED / "keys.json").read_text())
    passphrase = manifest["passphrase"] if backend == "file" else ""
    keyring = Keyring.open(backend, RECORDED / backend, passphrase)
    assert keyring.names() == sorted(manifest[backend])
    for name, address in manifest[backend].items():
        key = keyring.key(name, SEI_IDENTITY)
        assert bech32.decode(key.address)[1] == bech32.decode(address)[1], name  # simd's address, re-prefixed


def test_a_file_keyring_made_by_simd_refuses_a_wrong_passphrase() -> None:
    with pytest.raises(TaskError) as raised:
        Keyring.open("file", RECORDED / "file", "recorded fixture passphrase!").key("node_admin")
    assert raised.value.reason == KEYRING_UNREADABLE

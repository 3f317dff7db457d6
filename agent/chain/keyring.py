"""Read-only access to a node's Cosmos SDK keyring (`test` and `file` backends): sign with a named key.

The operator's keys live in a keyring made by `seid keys add` / `simd keys add` (Cosmos SDK v0.45 and Sei's fork
share the format), mounted from a Secret (`file`) or kept on the data volume (`test`). The agent reads it with the
original sidecar's variables and never writes to it:

- `SEI_KEYRING_BACKEND`: `test` or `file`; unset means no keyring (only the agent's own `validator` keystore signs).
- `SEI_KEYRING_DIR`: the keyring's root, default `<home>/keyring-file`. The SDK appends the backend's directory:
  `<root>/keyring-test/` or `<root>/keyring-file/`; for `file` a trailing `keyring-file` element is dropped first, so
  `/sei` and `/sei/keyring-file` name the same keyring (as the original does).
- `SEI_KEYRING_PASSPHRASE`: required for `file`; the `test` backend's passphrase is the fixed string `test`.

Format (99designs/keyring's file backend under the SDK's keystore):
- One file per item, named by the item key percent-escaped: `<name>.info` (the key) and `<hex address>.address`
  (an index, not needed to sign); `file` also holds `keyhash`, a bcrypt hash of the passphrase (not read: a wrong
  passphrase already fails the decryption below, whose tag check is the authoritative answer).
- Each item file is a JWE compact token: `alg` PBES2-HS256+A128KW (PBKDF2-HMAC-SHA256 over the passphrase with salt
  `alg || 0x00 || p2s` and `p2c` iterations, then AES key unwrap of the content key), `enc` A256GCM with the protected
  header's base64url text as additional data. The plaintext is the JSON item `{"Key": ..., "Data": "<base64>"}`.
- `Data` of `<name>.info` is the amino encoding of the SDK's `Info` interface, length-prefixed: a uvarint length, the
  4-byte prefix of the registered type (`crypto/keys/localInfo`; ledger, offline and multisig infos hold no private
  key and cannot sign here), then proto-style fields: 1 name, 2 public key, 3 private key, 4 algorithm. Keys are
  amino interfaces too: prefix of `tendermint/PubKeySecp256k1` (`tendermint/PrivKeySecp256k1`), a uvarint length
  and the 33 (32) key bytes. Only `secp256k1` keys sign; the public key stored is checked against the private one.

Secrets: the passphrase and key bytes never reach an error message, a log line or a repr; errors name the keyring
directory and the key name only. Each lookup reads the files again, so a rotated Secret is seen without a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.models import TaskError
from agent.models.settings import AgentSettings

from .cosmos.address import SEI_IDENTITY, ChainIdentity, account_address_bytes
from .cosmos.keystore import AccountKey, keystore_path, load_account_key
from .crypto import bech32
from .crypto.secp256k1 import Secp256k1PrivateKey

BACKENDS = ("test", "file")
TEST_PASSPHRASE = "test"
"""The SDK's `test` backend encrypts with this fixed passphrase: it protects nothing beyond the file's mode."""
DEFAULT_DIR_NAME = "keyring-file"
INFO_SUFFIX = ".info"
MAX_ITEM_BYTES = 64 * 1024
MAX_PBKDF2_ITERATIONS = 1_300_000
"""The JWE library the SDK uses refuses more iterations (a hostile file could otherwise pin a CPU)."""

NODE_KEY_NAME = "validator"
"""The agent's own account key (generate-gentx's keystore), also signing when no keyring holds this name."""
KEYRING_NOT_CONFIGURED = "KeyringNotConfigured"
KEY_NOT_FOUND = "KeyNotFound"
KEYRING_UNREADABLE = "KeyringUnreadable"

_PBES2 = {
    "PBES2-HS256+A128KW": ("sha256", 16),
    "PBES2-HS384+A192KW": ("sha384", 24),
    "PBES2-HS512+A256KW": ("sha512", 32),
}
_GCM = {"A128GCM": 16, "A192GCM": 24, "A256GCM": 32}


def amino_prefix(name: str) -> bytes:
    """The 4-byte amino prefix of a registered concrete type: SHA-256 of its name, leading zero bytes dropped, three
    disambiguation bytes skipped, leading zero bytes dropped again, then four bytes."""
    digest = hashlib.sha256(name.encode()).digest().lstrip(b"\x00")[3:].lstrip(b"\x00")
    return digest[:4]


LOCAL_INFO = amino_prefix("crypto/keys/localInfo")
_OTHER_INFOS = {
    amino_prefix("crypto/keys/ledgerInfo"): "a Ledger key",
    amino_prefix("crypto/keys/offlineInfo"): "an offline (public-only) key",
    amino_prefix("crypto/keys/multiInfo"): "a multisig key",
}
SECP256K1_PUBLIC = amino_prefix("tendermint/PubKeySecp256k1")
SECP256K1_PRIVATE = amino_prefix("tendermint/PrivKeySecp256k1")


class _Malformed(ValueError):
    """Item content that does not decode; the message is structural only (never key bytes)."""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _uvarint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while offset < len(data) and shift < 64:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    raise _Malformed("truncated varint")


def _fields(data: bytes) -> dict[int, bytes]:
    """Length-delimited proto-style fields (the only wire type amino uses for these structs); last one wins."""
    fields: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        tag, offset = _uvarint(data, offset)
        if tag & 7 != 2:
            raise _Malformed(f"field {tag >> 3} has wire type {tag & 7}, expected length-delimited")
        size, offset = _uvarint(data, offset)
        if offset + size > len(data):
            raise _Malformed(f"field {tag >> 3} overruns the record")
        fields[tag >> 3] = data[offset : offset + size]
        offset += size
    return fields


def _amino_key(data: bytes, prefix: bytes, size: int, what: str) -> bytes:
    if data[:4] != prefix:
        raise _Malformed(f"{what} is not a secp256k1 key")
    length, offset = _uvarint(data, 4)
    if length != size or len(data) != offset + size:
        raise _Malformed(f"{what} is not {size} bytes")
    return data[offset:]


def decrypt_jwe(token: str, passphrase: str) -> bytes:
    """The plaintext of a PBES2 + AES-GCM JWE compact token; `_Malformed` for a bad token or passphrase."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

    parts = token.strip().split(".")
    if len(parts) != 5:
        raise _Malformed("not a JWE compact token")
    try:
        header = json.loads(_b64url(parts[0]))
        encrypted_key, iv, ciphertext, tag = (_b64url(part) for part in parts[1:])
    except (ValueError, binascii.Error):
        raise _Malformed("not a JWE compact token") from None
    if not isinstance(header, dict) or header.get("alg") not in _PBES2 or header.get("enc") not in _GCM:
        alg, enc = (header.get("alg"), header.get("enc")) if isinstance(header, dict) else (None, None)
        raise _Malformed(f"unsupported JWE algorithms alg={alg!r} enc={enc!r}")
    digest, kek_size = _PBES2[header["alg"]]
    iterations = header.get("p2c")
    if not isinstance(iterations, int) or not 0 < iterations <= MAX_PBKDF2_ITERATIONS:
        raise _Malformed(f"p2c {iterations!r} outside 1..{MAX_PBKDF2_ITERATIONS}")
    try:
        salt = header["alg"].encode() + b"\x00" + _b64url(str(header.get("p2s", "")))
    except (ValueError, binascii.Error):
        raise _Malformed("p2s is not base64url") from None
    kek = hashlib.pbkdf2_hmac(digest, passphrase.encode(), salt, iterations, kek_size)
    try:
        content_key = aes_key_unwrap(kek, encrypted_key)
        if len(content_key) != _GCM[header["enc"]]:
            raise _Malformed("content key has the wrong size")
        plaintext = AESGCM(content_key).decrypt(iv, ciphertext + tag, parts[0].encode("ascii"))
    except (InvalidUnwrap, InvalidTag, ValueError):
        raise _Malformed("decryption failed: wrong passphrase, or the item is damaged") from None
    if header.get("zip") == "DEF":
        plaintext = zlib.decompress(plaintext, -15)
    return plaintext


@dataclass(frozen=True)
class Keyring:
    """One keyring directory and how to open it. The passphrase is kept out of `repr`."""

    backend: str
    root: Path
    passphrase: str = ""

    def __repr__(self) -> str:
        return f"Keyring(backend={self.backend!r}, directory={str(self.directory)!r})"

    @classmethod
    def open(cls, backend: str, directory: Path, passphrase: str = "") -> Keyring:
        """The keyring of `backend` under `directory` (see the module docstring for the path rule)."""
        if backend not in BACKENDS:
            raise ValueError(f"unsupported keyring backend {backend!r} (supported: {', '.join(BACKENDS)})")
        if backend == "file":
            if not passphrase:
                raise ValueError("SEI_KEYRING_PASSPHRASE required when SEI_KEYRING_BACKEND=file")
            if directory.name == DEFAULT_DIR_NAME:
                directory = directory.parent
        return cls(backend, directory, passphrase if backend == "file" else TEST_PASSPHRASE)

    @property
    def directory(self) -> Path:
        return self.root / f"keyring-{self.backend}"

    def _item(self, key: str) -> dict[str, Any]:
        path = self.directory / _escape(key)
        try:
            with path.open("rb") as handle:
                token = handle.read(MAX_ITEM_BYTES + 1)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise TaskError(
                f"keyring {self.directory}: cannot read {path.name}: {error.strerror or error}",
                reason=KEYRING_UNREADABLE,
            ) from None
        try:
            if len(token) > MAX_ITEM_BYTES:
                raise _Malformed(f"larger than {MAX_ITEM_BYTES} bytes")
            item = json.loads(decrypt_jwe(token.decode("ascii"), self.passphrase))
            if not isinstance(item, dict):
                raise _Malformed("the item is not a JSON object")
            return item
        except (_Malformed, UnicodeDecodeError, ValueError) as error:
            detail = str(error) if isinstance(error, _Malformed) else "not a keyring item"
            raise TaskError(
                f"keyring {self.directory}: {path.name}: {detail}",
                reason=KEYRING_UNREADABLE,
                hint="check SEI_KEYRING_PASSPHRASE and the mounted keyring Secret"
                if self.backend == "file"
                else "the keyring was made by `keys add --keyring-backend test`; check the files",
            ) from None

    def names(self) -> list[str]:
        """The key names in the keyring (from the `.info` file names; nothing is decrypted)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            _unescape(path.name)[: -len(INFO_SUFFIX)]
            for path in self.directory.iterdir()
            if path.name.endswith(INFO_SUFFIX)
        )

    def key(self, name: str, identity: ChainIdentity = SEI_IDENTITY) -> AccountKey:
        """The signing key `name`; `TaskError` (`KeyNotFound`, `KeyringUnreadable`) naming the key, never its bytes."""
        try:
            item = self._item(name + INFO_SUFFIX)
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise TaskError(
                f"keyring entry {name!r}: not found in {self.backend} keyring {self.directory} (keys: {known})",
                reason=KEY_NOT_FOUND,
                hint="params.keyName must name a key of the mounted keyring",
            ) from None
        try:
            data = base64.b64decode(str(item.get("Data") or ""), validate=True)
            return _local_key(data, identity)
        except (_Malformed, binascii.Error, ValueError) as error:
            detail = str(error) if isinstance(error, _Malformed) else "Data is not base64"
            raise TaskError(
                f"keyring entry {name!r} in {self.directory}: {detail}", reason=KEYRING_UNREADABLE
            ) from None


def configured_keyring(settings: AgentSettings) -> Keyring | None:
    """The keyring `SEI_KEYRING_BACKEND` / `_DIR` / `_PASSPHRASE` name; None when no backend is set."""
    if not settings.keyring_backend:
        return None
    directory = settings.keyring_dir or settings.home / DEFAULT_DIR_NAME
    return Keyring.open(settings.keyring_backend, directory, settings.keyring_passphrase.get_secret_value())


def signing_key(settings: AgentSettings, name: str) -> AccountKey:
    """The key a signed-transaction task signs with for `keyName` = `name`.

    1. The configured keyring's entry `name` (the original sidecar's only source).
    2. For `validator` only, when no configured keyring holds it: the agent's own keystore (made by generate-gentx),
       else the Go sidecar's gentx keyring (`<home>/keyring-test`, a home the original prepared).
    Anything else is `KeyringNotConfigured` (no keyring set) or `KeyNotFound`, naming the key.
    """
    identity = ChainIdentity.from_settings(settings)
    keyring = configured_keyring(settings)
    missing: TaskError | None = None
    if keyring is not None:
        try:
            return keyring.key(name, identity)
        except TaskError as error:
            if error.reason != KEY_NOT_FOUND or name != NODE_KEY_NAME:
                raise
            missing = error
    if name == NODE_KEY_NAME:
        own = keystore_path(settings.home)
        gentx_keyring = Keyring.open("test", settings.home)
        if not own.exists() and (gentx_keyring.directory / f"{name}{INFO_SUFFIX}").exists():
            return gentx_keyring.key(name, identity)
        if missing is not None and not own.exists():
            raise missing
        return load_account_key(own, identity)
    raise TaskError(
        "keyring not configured: set SEI_KEYRING_BACKEND/SEI_KEYRING_PASSPHRASE on the sidecar "
        f"(params.keyName {name!r} is not the node's own key {NODE_KEY_NAME!r})",
        reason=KEYRING_NOT_CONFIGURED,
        hint="mount the operator keyring and set SEI_KEYRING_BACKEND (test or file), SEI_KEYRING_DIR and, for "
        "file, SEI_KEYRING_PASSPHRASE",
    )


def _local_key(data: bytes, identity: ChainIdentity) -> AccountKey:
    length, offset = _uvarint(data, 0)
    if len(data) != offset + length:
        raise _Malformed("record length does not match")
    record = data[offset:]
    kind = record[:4]
    if kind != LOCAL_INFO:
        raise _Malformed(f"{_OTHER_INFOS.get(kind, 'not a key record')}: it cannot sign here")
    fields = _fields(record[4:])
    algorithm = fields.get(4, b"").decode(errors="replace")
    if algorithm != "secp256k1":
        raise _Malformed(f"algorithm {algorithm!r}: only secp256k1 keys sign")
    public = _amino_key(fields.get(2, b""), SECP256K1_PUBLIC, 33, "the public key")
    secret = _amino_key(fields.get(3, b""), SECP256K1_PRIVATE, 32, "the private key")
    try:
        private_key = Secp256k1PrivateKey(secret)
    except ValueError:
        raise _Malformed("the private key is not a valid secp256k1 key") from None
    if private_key.public_key != public:
        raise _Malformed("the stored public key does not belong to the private key")
    return AccountKey(private_key, bech32.encode(identity.prefixes.account, account_address_bytes(public)))


def _escape(key: str) -> str:
    """The item's file name: the backend percent-encodes `/` and `%` only."""
    return key.replace("%", "%25").replace("/", "%2F")


def _unescape(name: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda match: chr(int(match[1], 16)), name)

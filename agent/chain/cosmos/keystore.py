"""The validator's account key, kept only in the pod: `<home>/keyring-nodetask/validator.json`.

Format (version 1), one JSON object, file mode 0600 in a 0700 directory, written once and never replaced:

    {
      "version": 1,
      "name": "validator",
      "algorithm": "secp256k1",
      "hdPath": "m/44'/118'/0'/0/0",
      "address": "sei1...",
      "publicKey": "<base64 of the 33-byte compressed public key>",
      "privateKey": "<64 hex digits: the 32-byte secp256k1 private key>"
    }

The key is derived from a fresh 24-word BIP39 mnemonic at the Cosmos path `m/44'/<coin type>'/0'/0/0` (118 for Sei
and the stock SDK; `ChainIdentity.coin_type`). **The mnemonic itself
is not stored**: the private key is all this validator's account needs,
and a stored mnemonic would also expose every other key derivable from it (other account indexes, other coin types
such as Ethereum's `m/44'/60'/...`) if the file ever leaked. To use the key with `seid` (whose `keys import` takes
only an armored, passphrase-encrypted key), export it with `nodetask-agent keys export` (`agent.chain.cosmos.armor`).

This is not a `seid` keyring: a `keyring-test/` (JWE files with a fixed password) protects nothing an 0600 file
does not, and reproducing its amino-encoded records would add format risk for no security. The
`address` and `publicKey` fields are checked against the private key on every load, so a corrupted or edited file
fails loudly instead of signing as someone else. `address` is compared by its bytes, so a keystore written under
one Bech32 prefix still loads when the agent is configured with another (the address is re-encoded). Nothing from
this file other than the address and public key may reach a task result, a log line, an error message or S3.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from agent.chain.crypto import bech32, bip32, bip39
from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from agent.io.files import write_once
from agent.models import TaskError

from .address import SEI_IDENTITY, ChainIdentity, account_address_bytes

KEYSTORE_DIR = "keyring-nodetask"
KEYSTORE_FILE = "validator.json"
KEYSTORE_VERSION = 1
_HINT = "the keystore was left untouched; restore it from a backup, or move it away deliberately to get a new account"


def keystore_path(home: Path) -> Path:
    return home / KEYSTORE_DIR / KEYSTORE_FILE


@dataclass(frozen=True)
class AccountKey:
    """The validator's account key and its public identity (repr shows only public data)."""

    private_key: Secp256k1PrivateKey
    address: str

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key

    def __repr__(self) -> str:
        return f"AccountKey(address={self.address!r})"


def new_account_key(identity: ChainIdentity = SEI_IDENTITY) -> AccountKey:
    """A key derived from a fresh 24-word mnemonic at `identity.hd_path`; the mnemonic is dropped right here."""
    seed = bip39.mnemonic_to_seed(bip39.generate_mnemonic(24))
    private_key = bip32.derive_path(seed, identity.hd_path).private_key
    account = bech32.encode(identity.prefixes.account, account_address_bytes(private_key.public_key))
    return AccountKey(private_key, account)


def _document(key: AccountKey, hd_path: str) -> str:
    return json.dumps(
        {
            "version": KEYSTORE_VERSION,
            "name": "validator",
            "algorithm": "secp256k1",
            "hdPath": hd_path,
            "address": key.address,
            "publicKey": base64.b64encode(key.public_key).decode(),
            "privateKey": key.private_key.secret_bytes().hex(),
        },
        indent=2,
    )


def load_account_key(path: Path, identity: ChainIdentity = SEI_IDENTITY) -> AccountKey:
    """Load and cross-check the keystore; `TaskError` naming the file (never its content) when anything is off."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TaskError(f"{path}: unreadable or not JSON ({type(error).__name__})", hint=_HINT) from None
    if not isinstance(document, dict) or document.get("version") != KEYSTORE_VERSION:
        raise TaskError(f"{path}: not a version-{KEYSTORE_VERSION} keystore", hint=_HINT)
    if document.get("algorithm") != "secp256k1":
        raise TaskError(f"{path}: algorithm {document.get('algorithm')!r}, expected 'secp256k1'", hint=_HINT)
    try:
        private_key = Secp256k1PrivateKey(bytes.fromhex(str(document.get("privateKey", ""))))
    except ValueError:
        raise TaskError(f"{path}: privateKey is not a valid 32-byte secp256k1 key in hex", hint=_HINT) from None
    account = account_address_bytes(private_key.public_key)
    key = AccountKey(private_key, bech32.encode(identity.prefixes.account, account))
    try:
        recorded_public = base64.b64decode(str(document.get("publicKey", "")), validate=True)
    except (binascii.Error, ValueError):
        recorded_public = b""
    try:
        recorded_address = bech32.decode(str(document.get("address", "")))[1]
    except bech32.Bech32Error:
        recorded_address = b""
    if recorded_public != key.public_key or recorded_address != account:
        raise TaskError(f"{path}: publicKey or address does not belong to privateKey", hint=_HINT)
    return key


def ensure_account_key(home: Path, identity: ChainIdentity = SEI_IDENTITY) -> tuple[AccountKey, bool]:
    """The account key in `home`'s keystore, created (write-once, 0600) when absent. Returns (key, created)."""
    path = keystore_path(home)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = new_account_key(identity)
        if write_once(path, _document(key, identity.hd_path), mode=0o600):
            return key, True
    return load_account_key(path, identity), False

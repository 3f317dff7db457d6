"""The validator's account key as an ASCII-armored, passphrase-encrypted private key: what `seid keys import` reads.

`seid keys import <name> <file>` (any Cosmos SDK CLI: `simd`, `gaiad`...) takes only this form, not a hex key. The
format is the SDK's `crypto.EncryptArmorPrivKey` with the bcrypt KDF, which every SDK version since v0.38 decrypts
(v0.45, Sei's base, knows no other KDF):

    -----BEGIN TENDERMINT PRIVATE KEY-----
    kdf: bcrypt
    salt: <16 random bytes, upper-case hex>
    type: secp256k1

    <base64 of: 24-byte nonce || XSalsa20-Poly1305 secretbox of the private key, in the target keyring's form>
    =<CRC-24 of the data, base64>
    -----END TENDERMINT PRIVATE KEY-----

- key = SHA-256(bcrypt(passphrase, cost 12, salt)) (bcrypt's full `$2a$12$...` text is hashed, as the SDK does);
- plaintext, as the target chain's `keys import` unmarshals it (`key_payload`): Sei's fork reads the 32 raw key bytes
  (37 bytes fail `invalid privkey size`); the stock SDK reads amino `tendermint/PrivKeySecp256k1`: prefix `e1b0f79b`,
  length 32, the 32 key bytes;
- the armor is OpenPGP's (RFC 4880 section 6), with its CRC-24 checksum line.

The primitives come from `pycryptodome` (bcrypt) and PyNaCl (libsodium's `crypto_secretbox`, XSalsa20-Poly1305:
the same construction as Go's `golang.org/x/crypto/nacl/secretbox`, tag first).
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from Crypto.Protocol.KDF import bcrypt
from nacl.bindings import crypto_secretbox_easy, crypto_secretbox_open_easy
from nacl.exceptions import CryptoError

from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey

BLOCK_TYPE = "TENDERMINT PRIVATE KEY"
BCRYPT_COST = 12
"""The SDK's `BcryptSecurityParameter`; decryption uses the same constant, so it cannot be chosen."""
AMINO_SECP256K1_PRIVATE_KEY = bytes.fromhex("e1b0f79b")
MIN_PASSPHRASE_BYTES = 8
MAX_PASSPHRASE_BYTES = 72
"""bcrypt reads at most 72 bytes; a longer passphrase would be silently truncated, so it is refused."""


def secretbox_seal(plaintext: bytes, key: bytes, nonce: bytes) -> bytes:
    """NaCl `crypto_secretbox` (XSalsa20-Poly1305): tag (16 bytes) || ciphertext, as Go's `secretbox.Seal`."""
    return bytes(crypto_secretbox_easy(plaintext, nonce, key))


def secretbox_open(box: bytes, key: bytes, nonce: bytes) -> bytes:
    """The inverse of `secretbox_seal`; `ValueError` when the tag does not verify (wrong key or damaged box)."""
    if len(box) < 16:
        raise ValueError("secretbox shorter than its tag")
    try:
        return bytes(crypto_secretbox_open_easy(box, nonce, key))
    except CryptoError:
        raise ValueError("wrong passphrase or damaged key") from None


def crc24(data: bytes) -> int:
    """OpenPGP's CRC-24 (RFC 4880 section 6.1)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _derive(passphrase: str, salt: bytes) -> bytes:
    secret = passphrase.encode()
    if not MIN_PASSPHRASE_BYTES <= len(secret) <= MAX_PASSPHRASE_BYTES or b"\x00" in secret:
        raise ValueError(
            f"the passphrase must be {MIN_PASSPHRASE_BYTES}-{MAX_PASSPHRASE_BYTES} bytes without NUL characters"
        )
    return hashlib.sha256(bcrypt(secret, BCRYPT_COST, salt)).digest()


def key_payload(key: Secp256k1PrivateKey, *, amino: bool) -> bytes:
    """The plaintext inside the armor: the 32 key bytes for Sei's keyring, amino `tendermint/PrivKeySecp256k1`
    (37 bytes) for the stock SDK's."""
    if amino:
        return AMINO_SECP256K1_PRIVATE_KEY + bytes([32]) + key.secret_bytes()
    return key.secret_bytes()


def armor_private_key(key: Secp256k1PrivateKey, passphrase: str, *, amino: bool = False) -> str:
    """The key, encrypted under `passphrase`, in the armored form the target chain's `keys import` reads (`amino`
    for a stock SDK keyring, raw for Sei's)."""
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(24)
    plaintext = key_payload(key, amino=amino)
    data = nonce + secretbox_seal(plaintext, _derive(passphrase, salt), nonce)
    encoded = base64.b64encode(data).decode()
    lines = [encoded[start : start + 64] for start in range(0, len(encoded), 64)]
    checksum = base64.b64encode(crc24(data).to_bytes(3, "big")).decode()
    return "\n".join(
        [
            f"-----BEGIN {BLOCK_TYPE}-----",
            "kdf: bcrypt",
            f"salt: {salt.hex().upper()}",
            "type: secp256k1",
            "",
            *lines,
            f"={checksum}",
            f"-----END {BLOCK_TYPE}-----",
            "",
        ]
    )


def unarmor_private_key(text: str, passphrase: str) -> Secp256k1PrivateKey:
    """Decrypt an armored key written by `armor_private_key` (or by `seid keys export`, bcrypt KDF), raw or
    amino; `ValueError` saying what is wrong, never echoing key material."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 4 or lines[0] != f"-----BEGIN {BLOCK_TYPE}-----" or lines[-1] != f"-----END {BLOCK_TYPE}-----":
        raise ValueError(f"not a {BLOCK_TYPE} armor block")
    blank = lines.index("") if "" in lines else -1
    if blank < 0:
        raise ValueError("armor has no blank line after its headers")
    headers = dict(line.split(": ", 1) for line in lines[1:blank] if ": " in line)
    if headers.get("kdf") != "bcrypt":
        raise ValueError(f"kdf {headers.get('kdf')!r} is not supported (only bcrypt)")
    if headers.get("type", "secp256k1") != "secp256k1":
        raise ValueError(f"key type {headers.get('type')!r} is not secp256k1")
    body = [line for line in lines[blank + 1 : -1] if line]
    checksum = body.pop() if body and body[-1].startswith("=") else None
    data = base64.b64decode("".join(body), validate=True)
    if checksum is not None and base64.b64decode(checksum[1:]) != crc24(data).to_bytes(3, "big"):
        raise ValueError("armor checksum does not match its data")
    plaintext = secretbox_open(data[24:], _derive(passphrase, bytes.fromhex(headers.get("salt", ""))), data[:24])
    prefix = AMINO_SECP256K1_PRIVATE_KEY + bytes([32])
    if len(plaintext) == 32:
        return Secp256k1PrivateKey(plaintext)
    if len(plaintext) != len(prefix) + 32 or not plaintext.startswith(prefix):
        raise ValueError("the decrypted key is neither a raw (32 bytes) nor an amino secp256k1 private key")
    return Secp256k1PrivateKey(plaintext[len(prefix) :])

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

The primitives come from `pycryptodome` (bcrypt, Salsa20) and `cryptography` (Poly1305); HSalsa20 (the XSalsa20
key derivation, 20 rounds over 16 words) is written out below because neither library exposes it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct

from Crypto.Cipher import Salsa20
from Crypto.Protocol.KDF import bcrypt
from cryptography.hazmat.primitives.poly1305 import Poly1305

from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey

BLOCK_TYPE = "TENDERMINT PRIVATE KEY"
BCRYPT_COST = 12
"""The SDK's `BcryptSecurityParameter`; decryption uses the same constant, so it cannot be chosen."""
AMINO_SECP256K1_PRIVATE_KEY = bytes.fromhex("e1b0f79b")
MIN_PASSPHRASE_BYTES = 8
MAX_PASSPHRASE_BYTES = 72
"""bcrypt reads at most 72 bytes; a longer passphrase would be silently truncated, so it is refused."""


def _rotl(value: int, count: int) -> int:
    return ((value << count) & 0xFFFFFFFF) | (value >> (32 - count))


def hsalsa20(key: bytes, nonce: bytes) -> bytes:
    """The 32-byte XSalsa20 subkey for a 32-byte key and the first 16 bytes of a 24-byte nonce."""
    constants = struct.unpack("<4I", b"expand 32-byte k")
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", nonce)
    x = [
        constants[0], k[0], k[1], k[2],
        k[3], constants[1], n[0], n[1],
        n[2], n[3], constants[2], k[4],
        k[5], k[6], k[7], constants[3],
    ]  # fmt: skip

    def quarter(a: int, b: int, c: int, d: int) -> None:
        x[b] ^= _rotl((x[a] + x[d]) & 0xFFFFFFFF, 7)
        x[c] ^= _rotl((x[b] + x[a]) & 0xFFFFFFFF, 9)
        x[d] ^= _rotl((x[c] + x[b]) & 0xFFFFFFFF, 13)
        x[a] ^= _rotl((x[d] + x[c]) & 0xFFFFFFFF, 18)

    for _ in range(10):
        quarter(0, 4, 8, 12)
        quarter(5, 9, 13, 1)
        quarter(10, 14, 2, 6)
        quarter(15, 3, 7, 11)
        quarter(0, 1, 2, 3)
        quarter(5, 6, 7, 4)
        quarter(10, 11, 8, 9)
        quarter(15, 12, 13, 14)
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def secretbox_seal(plaintext: bytes, key: bytes, nonce: bytes) -> bytes:
    """NaCl `crypto_secretbox` (XSalsa20-Poly1305): tag (16 bytes) || ciphertext, as Go's `secretbox.Seal`."""
    stream = Salsa20.new(key=hsalsa20(key, nonce[:16]), nonce=nonce[16:24])
    keyed = stream.encrypt(bytes(32) + plaintext)
    ciphertext = keyed[32:]
    return Poly1305.generate_tag(keyed[:32], ciphertext) + ciphertext


def secretbox_open(box: bytes, key: bytes, nonce: bytes) -> bytes:
    """The inverse of `secretbox_seal`; `ValueError` when the tag does not verify (wrong key or damaged box)."""
    if len(box) < 16:
        raise ValueError("secretbox shorter than its tag")
    stream = Salsa20.new(key=hsalsa20(key, nonce[:16]), nonce=nonce[16:24])
    poly_key = stream.encrypt(bytes(32))
    try:
        Poly1305.verify_tag(poly_key, box[16:], box[:16])
    except Exception:  # cryptography's InvalidSignature
        raise ValueError("wrong passphrase or damaged key") from None
    return stream.encrypt(box[16:])


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

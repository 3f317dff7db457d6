"""secp256k1 keys as Cosmos uses them: 33-byte compressed public keys and 64-byte `r || s` signatures.

Signing hashes the message with SHA-256 and uses RFC 6979 deterministic nonces (libsecp256k1 through `coincurve`),
so the same key and message always give the same signature: a regenerated gentx is byte-identical. Signatures are
low-S, and verification refuses high-S ones, as the Cosmos SDK does (it rejects malleable signatures).
"""

from __future__ import annotations

import secrets
from typing import Any

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SIGNATURE_LENGTH = 64
COMPRESSED_PUBLIC_KEY_LENGTH = 33


class Secp256k1PrivateKey:
    """A secp256k1 private key. Its repr shows only the public key, so it cannot leak through a log or a traceback."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes):
        if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
            raise ValueError("a secp256k1 private key is 32 bytes encoding an integer in [1, n-1]")
        from coincurve import PrivateKey  # imported on first use: an idle agent does not load libsecp256k1

        self._key: Any = PrivateKey(secret)

    @classmethod
    def generate(cls) -> Secp256k1PrivateKey:
        while True:
            candidate = secrets.token_bytes(32)
            if 0 < int.from_bytes(candidate, "big") < CURVE_ORDER:
                return cls(candidate)

    def secret_bytes(self) -> bytes:
        """The raw 32 bytes; only a keystore writer should need them."""
        return bytes(self._key.secret)

    @property
    def public_key(self) -> bytes:
        """The 33-byte compressed public key (what Cosmos stores in `/cosmos.crypto.secp256k1.PubKey`)."""
        return bytes(self._key.public_key.format(compressed=True))

    @property
    def uncompressed_public_key(self) -> bytes:
        """The 65-byte `04 || X || Y` form (what Ethereum addresses are hashed from)."""
        return bytes(self._key.public_key.format(compressed=False))

    def sign(self, message: bytes) -> bytes:
        """64-byte `r || s` signature of SHA-256(`message`), deterministic (RFC 6979) and low-S."""
        # The recoverable form is r || s || v; dropping v leaves exactly the compact form Cosmos expects.
        return bytes(self._key.sign_recoverable(message)[:SIGNATURE_LENGTH])

    def __repr__(self) -> str:
        return f"Secp256k1PrivateKey(public_key={self.public_key.hex()})"


def uncompressed(public_key: bytes) -> bytes:
    """The 65-byte uncompressed form of a compressed (or already uncompressed) public key."""
    from coincurve import PublicKey

    return bytes(PublicKey(public_key).format(compressed=False))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` (64-byte `r || s`, low-S) signs SHA-256(`message`) under `public_key`.

    Malformed keys or signatures verify as False rather than raising: callers report "does not verify".
    """
    if len(signature) != SIGNATURE_LENGTH:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < CURVE_ORDER and 0 < s <= CURVE_ORDER // 2):
        return False
    from coincurve import PublicKey
    from coincurve.ecdsa import cdata_to_der, deserialize_compact

    try:
        key = PublicKey(public_key)
        return bool(key.verify(cdata_to_der(deserialize_compact(signature)), message))
    except (ValueError, TypeError):
        return False

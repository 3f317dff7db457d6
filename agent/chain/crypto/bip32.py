"""BIP32 hierarchical deterministic derivation of secp256k1 private keys (private derivation only).

Cosmos accounts live at BIP44 path `m/44'/118'/0'/0/0` (coin type 118); `derive_path(seed, COSMOS_HD_PATH)` gives
that key from a BIP39 seed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .secp256k1 import CURVE_ORDER, Secp256k1PrivateKey

HARDENED = 0x80000000
COSMOS_HD_PATH = "m/44'/118'/0'/0/0"


@dataclass(frozen=True, repr=False)
class ExtendedPrivateKey:
    """A private key with its chain code, enough to derive its children."""

    secret: bytes
    chain_code: bytes
    depth: int = 0

    @property
    def private_key(self) -> Secp256k1PrivateKey:
        return Secp256k1PrivateKey(self.secret)

    def child(self, index: int) -> ExtendedPrivateKey:
        """CKDpriv: the child at `index` (>= 2**31 for a hardened child)."""
        if not 0 <= index < 2**32:
            raise ValueError(f"child index {index} is outside [0, 2**32)")
        if index >= HARDENED:
            data = b"\x00" + self.secret + index.to_bytes(4, "big")
        else:
            data = self.private_key.public_key + index.to_bytes(4, "big")
        digest = hmac.new(self.chain_code, data, hashlib.sha512).digest()
        tweak = int.from_bytes(digest[:32], "big")
        child = (tweak + int.from_bytes(self.secret, "big")) % CURVE_ORDER
        if tweak >= CURVE_ORDER or child == 0:
            # Probability about 2**-127; BIP32 says to move on to the next index, which would silently change the
            # account, so refuse instead.
            raise ValueError(f"child {index} is invalid for this key (BIP32: use the next index)")
        return ExtendedPrivateKey(child.to_bytes(32, "big"), digest[32:], self.depth + 1)

    def __repr__(self) -> str:
        return f"ExtendedPrivateKey(depth={self.depth}, public_key={self.private_key.public_key.hex()})"


def master_key(seed: bytes) -> ExtendedPrivateKey:
    """The BIP32 master key of `seed` (16-64 bytes): HMAC-SHA512 keyed with "Bitcoin seed"."""
    if not 16 <= len(seed) <= 64:
        raise ValueError(f"a BIP32 seed is 16 to 64 bytes, not {len(seed)}")
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    secret = int.from_bytes(digest[:32], "big")
    if not 0 < secret < CURVE_ORDER:
        raise ValueError("this seed gives an invalid master key (BIP32: use another seed)")
    return ExtendedPrivateKey(digest[:32], digest[32:])


def parse_path(path: str) -> list[int]:
    """Child indexes of a path such as `m/44'/118'/0'/0/0` (`'`, `h` or `H` mark hardened steps)."""
    parts = path.strip().split("/")
    if parts[0] != "m":
        raise ValueError(f"derivation path {path!r} must start with 'm'")
    indexes: list[int] = []
    for part in parts[1:]:
        hardened = part[-1:] in ("'", "h", "H")
        digits = part[:-1] if hardened else part
        if not digits.isdigit() or int(digits) >= HARDENED:
            raise ValueError(f"derivation path {path!r}: {part!r} is not an index below 2**31")
        indexes.append(int(digits) + (HARDENED if hardened else 0))
    return indexes


def derive_path(seed: bytes, path: str) -> ExtendedPrivateKey:
    """The extended key at `path` below the master key of `seed`."""
    key = master_key(seed)
    for index in parse_path(path):
        key = key.child(index)
    return key

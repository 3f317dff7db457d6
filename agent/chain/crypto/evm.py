"""Ethereum-side identity of a secp256k1 key: Keccak-256, the 20-byte address and its EIP-55 checksum form.

Sei associates each `sei1...` account with the EVM address of the same key (`evm.address_associations` in genesis).
Keccak-256 is the original Keccak padding (Ethereum's), not NIST SHA3-256.
"""

from __future__ import annotations

from Crypto.Hash import keccak

from .secp256k1 import uncompressed


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def to_checksum_address(address: bytes | str) -> str:
    """EIP-55 form `0x...` of a 20-byte address (bytes, or hex with or without `0x` in any case)."""
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValueError(f"an Ethereum address is 20 bytes, not {len(address)}")
        hex_address = address.hex()
    else:
        hex_address = address.removeprefix("0x").removeprefix("0X").lower()
        if len(hex_address) != 40 or any(char not in "0123456789abcdef" for char in hex_address):
            raise ValueError(f"{address!r} is not a 20-byte hex address")
    digest = keccak256(hex_address.encode()).hex()
    return "0x" + "".join(
        char.upper() if char.isalpha() and int(digest[index], 16) >= 8 else char
        for index, char in enumerate(hex_address)
    )


def eth_address(public_key: bytes) -> str:
    """EIP-55 address of a secp256k1 public key: the last 20 bytes of Keccak-256 of the 64-byte `X || Y`."""
    return to_checksum_address(keccak256(uncompressed(public_key)[1:])[-20:])

"""Cosmos addresses: which bytes stand for an account, an operator or a consensus key, and their Bech32 prefixes.

The prefixes, the bond denom and the coin type are the chain's identity (`ChainIdentity`): Sei's by default
(`sei`, `usei`, 118), configurable through the agent's settings so the same agent serves any Cosmos SDK chain (the
chain tier runs stock `simd`: `cosmos`, `stake`).

- Account (and operator) address: RIPEMD-160(SHA-256(compressed secp256k1 public key)), 20 bytes. The operator
  address of a validator is the same 20 bytes as its account, under the `valoper` prefix.
- Consensus address: SHA-256(Ed25519 public key)[:20] (the Tendermint validator address), under `valcons`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from Crypto.Hash import RIPEMD160

from agent.chain.crypto import bech32
from agent.models.settings import AgentSettings


@dataclass(frozen=True)
class Bech32Prefixes:
    """The six prefixes the SDK derives from a chain's main prefix (`sei` -> `seivaloper`, `seivalcons`...)."""

    account: str
    account_pub: str
    validator: str
    validator_pub: str
    consensus: str
    consensus_pub: str

    @classmethod
    def from_main(cls, main: str) -> Bech32Prefixes:
        return cls(main, f"{main}pub", f"{main}valoper", f"{main}valoperpub", f"{main}valcons", f"{main}valconspub")


SEI = Bech32Prefixes.from_main("sei")


@dataclass(frozen=True)
class ChainIdentity:
    """What the agent writes for a chain: address prefixes, the fallback bond denom, the account keys' coin type, the
    form of an exported account key.

    Account keys are secp256k1 and consensus keys Ed25519 on both Sei and the stock SDK, so the key types are fixed.
    `bond_denom` is used only when genesis has no `staking.params.bond_denom`; the genesis's value always wins.
    """

    prefixes: Bech32Prefixes
    bond_denom: str = "usei"
    coin_type: int = 118
    gentx_account_numbers: str = "zero"
    """`zero` (Sei) or `initial-height` (stock SDK): see `AgentSettings.gentx_account_numbers`."""
    key_export_form: str = "raw"
    """`raw` (Sei) or `amino` (stock SDK): what an exported account key holds (`AgentSettings.key_export_form`)."""

    def gentx_account_number(self, initial_height: int, position: int) -> int:
        """The account number a gentx is verified with on this chain, for an account at `position` in genesis's
        accounts (auth's InitGenesis renumbers accounts in order) when the chain starts at `initial_height`."""
        if self.gentx_account_numbers == "initial-height" and initial_height > 1:
            return position
        return 0

    @property
    def defers_gentx_signatures(self) -> bool:
        """Whether a gentx's account number is known only once the genesis it joins is (stock SDK rule)."""
        return self.gentx_account_numbers == "initial-height"

    @property
    def hd_path(self) -> str:
        """BIP44 path of the validator's account key: `m/44'/<coin type>'/0'/0/0`."""
        return f"m/44'/{self.coin_type}'/0'/0/0"

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> ChainIdentity:
        main = Bech32Prefixes.from_main(settings.bech32_prefix)
        validator = settings.bech32_validator_prefix or main.validator
        consensus = settings.bech32_consensus_prefix or main.consensus
        prefixes = Bech32Prefixes(
            main.account, main.account_pub, validator, f"{validator}pub", consensus, f"{consensus}pub"
        )
        return cls(
            prefixes,
            settings.bond_denom,
            settings.coin_type,
            settings.gentx_account_numbers,
            settings.key_export_form,
        )


SEI_IDENTITY = ChainIdentity(SEI)


def account_address_bytes(secp256k1_public_key: bytes) -> bytes:
    """RIPEMD-160(SHA-256(key)): the 20 bytes behind `sei1...` and `seivaloper1...` for a secp256k1 key."""
    if len(secp256k1_public_key) != 33:
        raise ValueError(f"expected a 33-byte compressed secp256k1 public key, got {len(secp256k1_public_key)} bytes")
    return RIPEMD160.new(hashlib.sha256(secp256k1_public_key).digest()).digest()


def consensus_address_bytes(ed25519_public_key: bytes) -> bytes:
    """SHA-256(key)[:20]: the Tendermint validator address of an Ed25519 consensus key."""
    if len(ed25519_public_key) != 32:
        raise ValueError(f"expected a 32-byte Ed25519 public key, got {len(ed25519_public_key)} bytes")
    return hashlib.sha256(ed25519_public_key).digest()[:20]


def address_bytes(address: str, prefix: str) -> bytes:
    """The 20 (or 32) bytes of a Bech32 address that must carry `prefix`; `bech32.Bech32Error` otherwise."""
    _, payload = bech32.decode(address, expected_hrp=prefix)
    if len(payload) not in (20, 32):
        raise bech32.Bech32Error(f"{address!r} holds {len(payload)} bytes, expected 20 or 32")
    return payload


def with_prefix(address: str, prefix: str) -> str:
    """The same address bytes under another prefix (`sei1...` -> `seivaloper1...`)."""
    return bech32.encode(prefix, bech32.decode(address)[1])

"""BIP39 mnemonics: generation from the OS's CSPRNG, checksum validation and the seed they stand for.

Thin wrapper over the `mnemonic` package (Trezor's reference implementation, English word list), so the word list
and the checksum rules are not re-typed here. A mnemonic is a secret: never log it, return it or put it in an error.
"""

from __future__ import annotations

import secrets

from mnemonic import Mnemonic

_ENGLISH = Mnemonic("english")
_STRENGTH_BY_WORDS = {12: 128, 15: 160, 18: 192, 21: 224, 24: 256}


class MnemonicInvalid(ValueError):
    """A phrase that is not a valid English BIP39 mnemonic (the message never repeats the phrase)."""


def generate_mnemonic(words: int = 24) -> str:
    """A new English mnemonic of `words` words (24 = 256 bits of entropy from `secrets`)."""
    strength = _STRENGTH_BY_WORDS.get(words)
    if strength is None:
        raise ValueError(f"a BIP39 mnemonic has 12, 15, 18, 21 or 24 words, not {words}")
    return _ENGLISH.to_mnemonic(secrets.token_bytes(strength // 8))


def mnemonic_from_entropy(entropy: bytes) -> str:
    """The mnemonic that encodes `entropy` (16-32 bytes, a multiple of 4); used by the BIP39 test vectors."""
    return _ENGLISH.to_mnemonic(entropy)


def validate_mnemonic(phrase: str) -> None:
    """Raise `MnemonicInvalid` unless `phrase` is a known-length English mnemonic with a correct checksum."""
    count = len(phrase.split())
    if count not in _STRENGTH_BY_WORDS:
        raise MnemonicInvalid(f"a mnemonic has 12, 15, 18, 21 or 24 words; this one has {count}")
    if not _ENGLISH.check(phrase):
        raise MnemonicInvalid("the mnemonic has an unknown word or a wrong checksum")


def mnemonic_to_seed(phrase: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP39 seed: PBKDF2-HMAC-SHA512(NFKD(phrase), "mnemonic" + NFKD(passphrase), 2048 rounds)."""
    validate_mnemonic(phrase)
    return Mnemonic.to_seed(phrase, passphrase)

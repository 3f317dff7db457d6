"""Bech32 (BIP173) encoding, as Cosmos uses it for addresses: `<hrp>1<data><6-char checksum>`.

Only the original Bech32 constant is implemented (not Bech32m): Cosmos SDK addresses use Bech32.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_INDEX = {char: index for index, char in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
BIP173_MAX_LENGTH = 90
"""BIP173's limit on a whole string; Cosmos addresses (20 or 32 bytes of data) stay well below it."""


class Bech32Error(ValueError):
    """A string that is not valid Bech32, or whose prefix or payload is not what the caller expects."""


def _polymod(values: Iterable[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit in range(5):
            if (top >> bit) & 1:
                checksum ^= _GENERATOR[bit]
    return checksum


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(char) >> 5 for char in hrp] + [0] + [ord(char) & 31 for char in hrp]


def _checksum(hrp: str, data: Sequence[int]) -> list[int]:
    polymod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ 1
    return [(polymod >> 5 * (5 - index)) & 31 for index in range(6)]


def convert_bits(data: Iterable[int], from_bits: int, to_bits: int, *, pad: bool) -> list[int]:
    """Regroup a sequence of `from_bits`-bit values into `to_bits`-bit values (8 <-> 5 for Bech32 payloads)."""
    accumulator = 0
    bits = 0
    result: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        if value < 0 or value >> from_bits:
            raise Bech32Error(f"value {value} does not fit in {from_bits} bits")
        accumulator = (accumulator << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            result.append((accumulator >> bits) & max_value)
    if pad:
        if bits:
            result.append((accumulator << (to_bits - bits)) & max_value)
    elif bits >= from_bits or ((accumulator << (to_bits - bits)) & max_value):
        raise Bech32Error("invalid padding in the data part")
    return result


def encode_words(hrp: str, words: Sequence[int]) -> str:
    """Bech32 string of 5-bit `words` under the human-readable part `hrp` (lowercase output)."""
    if not hrp or any(not 33 <= ord(char) <= 126 for char in hrp):
        raise Bech32Error(f"invalid human-readable part {hrp!r}")
    hrp = hrp.lower()
    return hrp + "1" + "".join(CHARSET[word] for word in [*words, *_checksum(hrp, words)])


def decode_words(text: str, *, max_length: int = BIP173_MAX_LENGTH) -> tuple[str, list[int]]:
    """(hrp, 5-bit words) of a Bech32 string, or `Bech32Error` saying what is wrong with it."""
    if len(text) > max_length:
        raise Bech32Error(f"{text!r} is longer than {max_length} characters")
    if any(not 33 <= ord(char) <= 126 for char in text):
        raise Bech32Error(f"{text!r} contains a character outside printable ASCII")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error(f"{text!r} mixes upper and lower case")
    text = text.lower()
    separator = text.rfind("1")
    if separator < 1:
        raise Bech32Error(f"{text!r} has no human-readable part before the separator '1'")
    if separator + 7 > len(text):
        raise Bech32Error(f"{text!r} is too short to hold a checksum")
    hrp, data_part = text[:separator], text[separator + 1 :]
    try:
        words = [_CHARSET_INDEX[char] for char in data_part]
    except KeyError as error:
        raise Bech32Error(f"{text!r} contains {error.args[0]!r}, which is not a Bech32 character") from None
    if _polymod([*_hrp_expand(hrp), *words]) != 1:
        raise Bech32Error(f"{text!r} has an invalid checksum")
    return hrp, words[:-6]


def encode(hrp: str, payload: bytes) -> str:
    """Bech32 address of `payload` bytes under `hrp` (`encode("sei", address_bytes)`)."""
    return encode_words(hrp, convert_bits(payload, 8, 5, pad=True))


def decode(text: str, *, expected_hrp: str | None = None) -> tuple[str, bytes]:
    """(hrp, payload bytes) of a Bech32 address; with `expected_hrp`, any other prefix is an error."""
    hrp, words = decode_words(text)
    if expected_hrp is not None and hrp != expected_hrp:
        raise Bech32Error(f"{text!r} has prefix {hrp!r}, expected {expected_hrp!r}")
    return hrp, bytes(convert_bits(words, 5, 8, pad=False))

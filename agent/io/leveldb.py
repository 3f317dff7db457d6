"""Writing a small, new LevelDB database that Go's goleveldb (what Cosmos SDK nodes use) opens as its own.

Only what a fresh database needs, as LevelDB lays it out after the first write and before any compaction:

- `CURRENT`: the name of the manifest, `MANIFEST-000001`, and a newline;
- `MANIFEST-000001`: one journal record holding a version edit (comparator `leveldb.BytewiseComparator`, journal
  number 2, next file number 3, last sequence 0);
- `000002.log`: one journal record holding one write batch with every key/value (sequence numbers from 1).

Opening replays the journal into the database. The journal format is LevelDB's: 32 KiB blocks of records, each with
a 7-byte header (masked CRC-32C of type and payload, little-endian length, type: full/first/middle/last).
Used to give a restored state-sync snapshot a `metadata.db` that lists exactly the snapshot restored.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from agent.io.files import atomic_write, fsync_dir

BLOCK_SIZE = 32 * 1024
HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
COMPARATOR = b"leveldb.BytewiseComparator"
MANIFEST_NAME = "MANIFEST-000001"
JOURNAL_NUMBER = 2
# Version edit tags (goleveldb's session record; the same numbers as LevelDB's VersionEdit).
_TAG_COMPARATOR, _TAG_JOURNAL_NUMBER, _TAG_NEXT_FILE_NUMBER, _TAG_LAST_SEQUENCE = 1, 2, 3, 4
_VALUE = 1  # batch record kind: a put
_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), as LevelDB checksums its journal records."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def journal(*records: bytes) -> bytes:
    """The journal file holding `records`, split into fragments so that no header crosses a 32 KiB block."""
    out = bytearray()
    for record in records:
        remaining, first = record, True
        while True:
            space = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if space < HEADER_SIZE:
                out += b"\0" * space
                space = BLOCK_SIZE
            fragment, remaining = remaining[: space - HEADER_SIZE], remaining[space - HEADER_SIZE :]
            kind = (FULL if first else LAST) if not remaining else (FIRST if first else MIDDLE)
            checksum = _masked(crc32c(bytes([kind]) + fragment))
            out += struct.pack("<IHB", checksum, len(fragment), kind) + fragment
            first = False
            if not remaining:
                break
    return bytes(out)


def write_batch(entries: Iterable[tuple[bytes, bytes]], first_sequence: int = 1) -> bytes:
    """A LevelDB write batch putting every (key, value)."""
    body = bytearray()
    count = 0
    for key, value in entries:
        body += bytes([_VALUE]) + _uvarint(len(key)) + key + _uvarint(len(value)) + value
        count += 1
    return struct.pack("<QI", first_sequence, count) + bytes(body)


def _version_edit() -> bytes:
    return (
        _uvarint(_TAG_COMPARATOR)
        + _uvarint(len(COMPARATOR))
        + COMPARATOR
        + _uvarint(_TAG_JOURNAL_NUMBER)
        + _uvarint(JOURNAL_NUMBER)
        + _uvarint(_TAG_NEXT_FILE_NUMBER)
        + _uvarint(JOURNAL_NUMBER + 1)
        + _uvarint(_TAG_LAST_SEQUENCE)
        + _uvarint(0)
    )


def write_new_database(directory: Path, entries: Iterable[tuple[bytes, bytes]]) -> None:
    """Create `directory` (which must not exist) as a LevelDB database holding exactly `entries`; every file is
    written atomically and the directory fsynced."""
    directory.mkdir(mode=0o755)
    atomic_write(directory / f"{JOURNAL_NUMBER:06d}.log", journal(write_batch(entries)))
    atomic_write(directory / MANIFEST_NAME, journal(_version_edit()))
    atomic_write(directory / "CURRENT", f"{MANIFEST_NAME}\n")
    fsync_dir(directory)

"""The Cosmos SDK's state-sync snapshot store on disk (`data/snapshots/`), as SDK v0.45 and Sei's fork of it keep it.

    data/snapshots/<height>/<format>/<chunk index>     the chunks, 0..n-1
    data/snapshots/metadata.db                          a LevelDB: key 0x01 | height (8 bytes BE) | format (4 bytes BE)
                                                        -> the protobuf `cosmos.base.snapshots.v1beta1.Snapshot`

The node lists the snapshots it offers to peers from `metadata.db` alone. An archive made of one snapshot directory
plus the uploader's `metadata.db` therefore makes the restored node advertise every snapshot the uploader kept; a
peer that state-syncs from it picks the highest, gets "missing" for every chunk, and (CometBFT 0.34) retries forever.
`rebuild_metadata` writes a `metadata.db` that lists exactly the snapshots present, computing what the SDK stores
from the chunk files themselves: the SHA-256 of each chunk, and of all chunks in order as the snapshot's hash.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

from agent.chain.cosmos.proto import encode_varint
from agent.io.leveldb import write_new_database
from agent.models import TaskError

METADATA_DB = "metadata.db"
_KEY_PREFIX = 0x01
_CHUNK_READ = 1 << 20


def _bytes_field(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3) + encode_varint(value) if value else b""


def snapshot_key(height: int, format_: int) -> bytes:
    return struct.pack(">BQI", _KEY_PREFIX, height, format_)


def _numeric_children(directory: Path, *, dirs: bool) -> list[int]:
    return sorted(
        int(entry.name)
        for entry in directory.iterdir()
        if entry.name.isdigit() and (entry.is_dir() if dirs else entry.is_file())
    )


def snapshot_record(snapshots_dir: Path, height: int, format_: int) -> bytes:
    """The `Snapshot` protobuf the SDK stores for `<height>/<format>/`, computed from its chunk files."""
    directory = snapshots_dir / str(height) / str(format_)
    chunks = _numeric_children(directory, dirs=False)
    if not chunks or chunks != list(range(len(chunks))):
        raise TaskError(
            f"{directory}: chunks {chunks[:10]} are not the contiguous files 0..n-1 of a complete snapshot",
            hint="the archive holds an incomplete snapshot; restore another height",
        )
    whole = hashlib.sha256()
    chunk_hashes = []
    for index in chunks:
        one = hashlib.sha256()
        with (directory / str(index)).open("rb") as file:
            while block := file.read(_CHUNK_READ):
                one.update(block)
                whole.update(block)
        chunk_hashes.append(one.digest())
    metadata = b"".join(_bytes_field(1, digest) for digest in chunk_hashes)
    return (
        _varint_field(1, height)
        + _varint_field(2, format_)
        + _varint_field(3, len(chunks))
        + _bytes_field(4, whole.digest())
        + _bytes_field(5, metadata)
    )


def sdk_layout(snapshots_dir: Path) -> bool:
    """True when every entry but `metadata.db` is `<height>/<format>/<0..n-1>`: the layout `rebuild_metadata` knows."""
    heights = [entry for entry in snapshots_dir.iterdir() if entry.name != METADATA_DB]
    if not heights:
        return False
    for height in heights:
        if not (height.name.isdigit() and height.is_dir()):
            return False
        formats = list(height.iterdir())
        if not formats or not all(entry.name.isdigit() and entry.is_dir() for entry in formats):
            return False
        for format_dir in formats:
            chunks = list(format_dir.iterdir())
            names = sorted(int(entry.name) for entry in chunks if entry.name.isdigit() and entry.is_file())
            if len(names) != len(chunks) or names != list(range(len(names))) or not names:
                return False
    return True


def rebuild_metadata(snapshots_dir: Path) -> list[tuple[int, int]] | None:
    """Replace `metadata.db` with one listing exactly the snapshots whose chunk directories are present; returns
    their (height, format) pairs, or None (nothing changed) when the directory is not in the SDK's layout.
    Blocking (hashes every chunk)."""
    if not sdk_layout(snapshots_dir):
        return None
    entries = [
        (snapshot_key(height, format_), snapshot_record(snapshots_dir, height, format_))
        for height in _numeric_children(snapshots_dir, dirs=True)
        for format_ in _numeric_children(snapshots_dir / str(height), dirs=True)
    ]
    target = snapshots_dir / METADATA_DB
    if target.exists():
        shutil.rmtree(target)
    write_new_database(target, entries)
    return [struct.unpack(">BQI", key)[1:] for key, _ in entries]

"""The restored snapshot store's metadata: LevelDB journal framing and the SDK's snapshot records, computed from
chunk files. (That a real simd opens the result and serves the snapshot is tests/chain_real/test_snapshot_real.py.)"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from agent.chain.snapshots import rebuild_metadata, sdk_layout, snapshot_key, snapshot_record
from agent.io.leveldb import BLOCK_SIZE, crc32c, journal, write_batch


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def read_journal(data: bytes) -> list[bytes]:
    """A straightforward reader of LevelDB's journal framing, to check what `journal` writes."""
    records, current, offset = [], b"", 0
    while offset + 7 <= len(data):
        if BLOCK_SIZE - offset % BLOCK_SIZE < 7:
            offset += BLOCK_SIZE - offset % BLOCK_SIZE
            continue
        _, length, kind = struct.unpack_from("<IHB", data, offset)
        fragment = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        current += fragment
        if kind in (1, 4):
            records.append(current)
            current = b""
    return records


@pytest.mark.parametrize("size", [10, BLOCK_SIZE - 7, BLOCK_SIZE, 3 * BLOCK_SIZE + 11])
def test_journal_records_survive_fragmentation_across_blocks(size: int) -> None:
    records = [b"a" * 5, bytes(range(256)) * (size // 256 + 1), b"tail"]
    records[1] = records[1][:size]
    assert read_journal(journal(*records)) == records


def test_a_batch_carries_its_sequence_count_and_entries() -> None:
    batch = write_batch([(b"k1", b"v1"), (b"key2", b"")], first_sequence=7)
    assert struct.unpack_from("<QI", batch) == (7, 2)
    assert batch[12:] == b"\x01\x02k1\x02v1" + b"\x01\x04key2\x00"


def sdk_snapshots(root: Path, layout: dict[int, list[bytes]]) -> Path:
    for height, chunks in layout.items():
        directory = root / str(height) / "1"
        directory.mkdir(parents=True)
        for index, chunk in enumerate(chunks):
            (directory / str(index)).write_bytes(chunk)
    (root / "metadata.db").mkdir()
    (root / "metadata.db" / "000001.log").write_bytes(b"the uploader's, listing other heights")
    return root


def test_the_record_is_the_sdk_snapshot_message_computed_from_the_chunks(tmp_path: Path) -> None:
    root = sdk_snapshots(tmp_path, {15: [b"first", b"second"]})
    record = snapshot_record(root, 15, 1)
    chunk_hashes = [hashlib.sha256(b"first").digest(), hashlib.sha256(b"second").digest()]
    metadata = b"".join(b"\x0a\x20" + digest for digest in chunk_hashes)
    assert record == (
        b"\x08\x0f\x10\x01\x18\x02"
        + b"\x22\x20"
        + hashlib.sha256(b"firstsecond").digest()
        + b"\x2a"
        + bytes([len(metadata)])
        + metadata
    )
    assert snapshot_key(15, 1) == b"\x01" + (15).to_bytes(8, "big") + (1).to_bytes(4, "big")


def test_rebuild_lists_exactly_the_snapshots_present(tmp_path: Path) -> None:
    root = sdk_snapshots(tmp_path, {15: [b"x"], 20: [b"y", b"z"]})
    assert rebuild_metadata(root) == [(15, 1), (20, 1)]
    files = sorted(path.name for path in (root / "metadata.db").iterdir())
    assert files == ["000002.log", "CURRENT", "MANIFEST-000001"]
    (batch,) = read_journal((root / "metadata.db" / "000002.log").read_bytes())
    assert struct.unpack_from("<QI", batch) == (1, 2)
    assert snapshot_key(20, 1) in batch and snapshot_key(15, 1) in batch


@pytest.mark.parametrize(
    "layout",
    [{"15/1/0": b"x", "15/1/2": b"gap"}, {"15/1/0": b"x", "15/random.bin": b"not a chunk"}, {"notes.txt": b""}],
    ids=["chunk-gap", "stray-file", "no-heights"],
)
def test_another_layout_is_left_alone(tmp_path: Path, layout: dict[str, bytes]) -> None:
    for name, content in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    assert not sdk_layout(tmp_path)
    assert rebuild_metadata(tmp_path) is None

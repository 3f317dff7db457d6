"""agent.io.archive: the streaming writer, and safe extraction of honest, foreign and hostile archives."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import lz4.frame
import pytest
import zstandard

from agent.io.archive import Compression, detect_compression, extract_stream, tar_chunks, tree_size
from agent.io.s3 import OperationCancelled
from agent.models import TaskError
from tests.fixtures.s3 import (
    HOSTILE,
    Member,
    as_extracted,
    make_tree,
    member,
    raw_header,
    tar_of,
    tree_fingerprint,
)

COMPRESSIONS = [Compression.GZIP, Compression.LZ4, Compression.ZSTD, Compression.NONE]
COMPRESSORS: dict[Compression, Callable[[bytes], bytes]] = {
    Compression.GZIP: gzip.compress,
    Compression.LZ4: lz4.frame.compress,
    Compression.ZSTD: zstandard.ZstdCompressor().compress,
    Compression.NONE: lambda data: data,
}


def archive_of(root: Path, paths: list[str], compression: Compression) -> bytes:
    return b"".join(tar_chunks(root, paths, compression))


def extract(data: bytes, destination: Path, **options: object) -> object:
    destination.mkdir(parents=True, exist_ok=True)
    return extract_stream(io.BytesIO(data), destination, **options)  # type: ignore[arg-type]


def crafted(members: list[Member], compression: Compression = Compression.GZIP) -> bytes:
    return COMPRESSORS[compression](tar_of(members))


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip_recreates_the_tree_with_contents_modes_and_links(tmp_path: Path, compression: Compression) -> None:
    source = make_tree(tmp_path / "source")
    data = archive_of(source, sorted(path.name for path in source.iterdir()), compression)

    summary = extract(data, tmp_path / "restored")

    assert tree_fingerprint(tmp_path / "restored") == as_extracted(tree_fingerprint(source))
    assert detect_compression(data[:512]) is compression
    assert summary.compression is compression  # type: ignore[attr-defined]
    assert summary.file_bytes == tree_size(source, sorted(path.name for path in source.iterdir()))  # type: ignore[attr-defined]


def test_writer_reports_file_bytes_read_and_honours_cancel(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "source")
    reports: list[int] = []
    b"".join(tar_chunks(source, ["large.bin", "nested"], Compression.ZSTD, progress=reports.append))
    assert reports[-1] == tree_size(source, ["large.bin", "nested"])

    cancel = threading.Event()
    chunks = tar_chunks(source, ["large.bin"], Compression.ZSTD, cancel=cancel)
    next(chunks)
    cancel.set()
    with pytest.raises(OperationCancelled):
        list(chunks)


def test_writer_fails_when_a_file_shrinks_while_it_is_read(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "source")
    chunks = tar_chunks(source, ["large.bin"], Compression.GZIP)
    next(chunks)  # the header: the size is now fixed
    (source / "large.bin").write_bytes(b"short")
    with pytest.raises(TaskError) as caught:
        list(chunks)
    assert caught.value.reason == "ArchiveSourceChanged"
    assert "large.bin" in caught.value.message


@pytest.mark.parametrize(
    ("flag", "compression"),
    [("-z", Compression.GZIP), ("--zstd", Compression.ZSTD), ("--use-compress-program=lz4", Compression.LZ4)],
)
def test_archives_made_by_gnu_tar_extract_including_hard_links(
    tmp_path: Path, flag: str, compression: Compression
) -> None:
    source = make_tree(tmp_path / "source", large_file_bytes=200_000)
    os.link(source / "large.bin", source / "nested" / "large-again.bin")
    archive = tmp_path / "gnu.tar"
    subprocess.run(["tar", flag, "-cf", str(archive), "-C", str(source), "."], check=True)

    summary = extract(archive.read_bytes(), tmp_path / "restored")

    restored = tmp_path / "restored"
    assert tree_fingerprint(restored) == as_extracted(tree_fingerprint(source))
    assert summary.compression is compression  # type: ignore[attr-defined]
    assert summary.hardlinks == 1  # type: ignore[attr-defined]
    assert (restored / "large.bin").stat().st_ino == (restored / "nested" / "large-again.bin").stat().st_ino


def test_modes_are_sanitised_and_owners_keep_access(tmp_path: Path) -> None:
    data = crafted(
        [
            (member("setuid", mode=0o4777), b"x"),
            (member("unreadable", mode=0o000), b"y"),
            (member("locked-dir", tarfile.DIRTYPE, mode=0o500), None),
            (member("locked-dir/inside"), b"z"),
        ]
    )
    extract(data, tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "setuid").stat().st_mode & 0o7777 == 0o644  # no execute bit, ever
    assert (out / "unreadable").stat().st_mode & 0o7777 == 0o600
    assert (out / "locked-dir").stat().st_mode & 0o7777 == 0o700
    assert (out / "locked-dir" / "inside").read_bytes() == b"z"


def test_skipped_names_are_never_written_anywhere(tmp_path: Path) -> None:
    data = crafted(
        [
            (member("priv_validator_state.json"), b'{"height":"999"}'),
            (member("data/priv_validator_state.json"), b'{"height":"999"}'),
            (member("data/blockstore.db"), b"kept"),
        ]
    )
    summary = extract(data, tmp_path / "out", skip_names=frozenset({"priv_validator_state.json"}))
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "data",
        "data/blockstore.db",
    ]
    assert summary.skipped == ["priv_validator_state.json", "data/priv_validator_state.json"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_nothing_escapes(tmp_path: Path, case: str) -> None:
    members, expected = HOSTILE[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("untouched")
    before = tree_fingerprint(tmp_path)

    with pytest.raises(TaskError) as caught:
        extract(crafted(members), tmp_path / "stage" / "inner")

    assert caught.value.reason == "ArchiveUnsafe"
    assert expected in caught.value.message
    after = {path: value for path, value in tree_fingerprint(tmp_path).items() if not path.startswith("stage")}
    assert after == before
    assert not Path("/tmp/escaped-absolute").exists()


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.XGLTYPE])
def test_huge_extended_headers_are_refused_before_they_are_read(tmp_path: Path, kind: bytes) -> None:
    data = gzip.compress(raw_header("././@Header", kind, 1 << 40) + b"\0" * 4096)
    with pytest.raises(TaskError) as caught:
        extract(data, tmp_path / "out")
    assert caught.value.reason == "ArchiveUnsafe"
    assert str(1 << 40) in caught.value.message


def test_absurd_member_size_fails_on_the_budget_before_writing(tmp_path: Path) -> None:
    data = gzip.compress(raw_header("huge.bin", tarfile.REGTYPE, 1 << 50) + b"\0" * 4096)
    with pytest.raises(TaskError) as caught:
        extract(data, tmp_path / "out", max_total_bytes=10 << 20)
    assert caught.value.reason == "InsufficientDisk"
    assert "huge.bin" in caught.value.message
    assert list((tmp_path / "out").iterdir()) == []


def cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def cut_the_end(data: bytes) -> bytes:
    """Lose the very end: a compressed stream's end marker, or a plain tar's end-of-archive blocks and padding."""
    return data[:-8] if detect_compression(data) is not Compression.NONE else data.rstrip(b"\0")


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("cut", [cut_in_half, cut_the_end])
def test_truncated_archives_are_corrupt(
    tmp_path: Path, compression: Compression, cut: Callable[[bytes], bytes]
) -> None:
    source = make_tree(tmp_path / "source", large_file_bytes=300_000)
    data = archive_of(source, ["large.bin", "nested"], compression)
    with pytest.raises(TaskError) as caught:
        extract(cut(data), tmp_path / "out")
    assert caught.value.reason == "ArchiveCorrupt"


def test_zstd_stream_cut_at_a_frame_boundary_is_still_detected(tmp_path: Path) -> None:
    # Two frames: the first ends exactly after a complete member, so only the missing tar end blocks tell.
    first = crafted([(member("a.txt"), b"a" * 1000)], Compression.NONE)
    complete_member = first[: 512 + 1024]  # header + padded data, without the end-of-archive blocks
    data = zstandard.ZstdCompressor().compress(complete_member)
    with pytest.raises(TaskError) as caught:
        extract(data, tmp_path / "out")
    assert caught.value.reason == "ArchiveCorrupt"
    assert "end-of-archive" in caught.value.message


def test_a_stream_that_is_no_archive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as caught:
        extract(b"<html>not a snapshot</html>" * 40, tmp_path / "out")
    assert caught.value.reason == "ArchiveCorrupt"


def test_extraction_stops_when_cancelled(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "source")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(OperationCancelled):
        extract(archive_of(source, ["large.bin"], Compression.LZ4), tmp_path / "out", cancel=cancel)


def test_full_volume_is_insufficient_disk(tmp_path: Path, small_volume: Callable[[Path, int], Path]) -> None:
    volume = small_volume(tmp_path / "volume", 1 << 20)
    data = zstandard.ZstdCompressor().compress(crafted([(member("zeros.bin"), b"\0" * (4 << 20))], Compression.NONE))
    with pytest.raises(TaskError) as caught:
        extract(data, volume / "stage")
    assert caught.value.reason == "InsufficientDisk"
    assert "full" in caught.value.message

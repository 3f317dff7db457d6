"""agent.io.files: atomic writes, write-once files, path containment and done-markers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agent.io.files import (
    atomic_write,
    atomic_writer,
    contained_path,
    has_marker,
    marker_path,
    write_marker,
    write_once,
)
from agent.models import ParamsInvalid


def names(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


@pytest.mark.parametrize(("data", "expected"), [(b"\x00\x01bytes", b"\x00\x01bytes"), ("é text", "é text".encode())])
def test_atomic_write_replaces_content_and_leaves_no_temp_file(
    tmp_path: Path, data: bytes | str, expected: bytes
) -> None:
    path = tmp_path / "file.json"
    path.write_text("old")
    atomic_write(path, data)
    assert path.read_bytes() == expected
    assert names(tmp_path) == ["file.json"]


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_atomic_write_sets_the_requested_mode_regardless_of_umask(tmp_path: Path, mode: int) -> None:
    previous = os.umask(0o077)
    try:
        atomic_write(tmp_path / "f", b"x", mode=mode)
    finally:
        os.umask(previous)
    assert (tmp_path / "f").stat().st_mode & 0o777 == mode


def test_atomic_write_creates_missing_parent_directories(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a" / "b" / "f", "x")
    assert (tmp_path / "a" / "b" / "f").read_text() == "x"


def test_atomic_writer_keeps_the_old_file_when_the_block_fails(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("original")
    with pytest.raises(RuntimeError, match="half-way"), atomic_writer(path) as handle:
        handle.write(b"partial")
        raise RuntimeError("half-way")
    assert path.read_text() == "original"
    assert names(tmp_path) == ["config.toml"]


def test_atomic_writer_replaces_the_inode_so_open_readers_keep_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("old")
    with open(path, "rb") as reader:
        atomic_write(path, "new")
        assert reader.read() == b"old"
    assert path.read_text() == "new"


def test_write_once_writes_a_new_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "config" / "node_key.json"
    assert write_once(path, '{"k": 1}') is True
    assert path.read_text() == '{"k": 1}'
    assert path.stat().st_mode & 0o777 == 0o600
    assert names(path.parent) == ["node_key.json"]


@pytest.mark.parametrize("existing", [b"precious", b""], ids=["content", "empty"])
def test_write_once_never_replaces_an_existing_file(tmp_path: Path, existing: bytes) -> None:
    path = tmp_path / "node_key.json"
    path.write_bytes(existing)
    assert write_once(path, b"other") is False
    assert path.read_bytes() == existing
    assert names(tmp_path) == ["node_key.json"]


def test_write_once_does_not_write_through_a_dangling_symlink(tmp_path: Path) -> None:
    path = tmp_path / "node_key.json"
    path.symlink_to(tmp_path / "elsewhere.json")
    assert write_once(path, b"secret") is False
    assert not (tmp_path / "elsewhere.json").exists()
    assert names(tmp_path) == ["node_key.json"]


def test_write_once_racing_writers_produce_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "priv_validator_key.json"
    barrier = threading.Barrier(8)
    outcomes: list[bool] = []

    def writer(index: int) -> None:
        barrier.wait()
        outcomes.append(write_once(path, f"writer-{index}" * 1000))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(True) == 1
    winner = path.read_text()
    assert winner == winner[: len(winner) // 1000] * 1000
    assert names(tmp_path) == ["priv_validator_key.json"]


@pytest.mark.parametrize("name", ["config.toml", "sub/app.toml", "./client.toml"])
def test_contained_path_accepts_names_inside_the_base(tmp_path: Path, name: str) -> None:
    assert contained_path(tmp_path, name, field="files") == tmp_path / name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x.toml", "escapes"),
        ("sub/../../x.toml", "escapes"),
        ("/etc/passwd", "escapes"),
        ("", "empty"),
        (" config.toml", "surrounding spaces"),
        ("a\x00b", "escapes"),
        ("out/x.toml", "through a symlink"),
        ("loop/x.toml", "cannot be resolved"),
    ],
)
def test_contained_path_refuses_names_that_escape_naming_the_field(tmp_path: Path, name: str, reason: str) -> None:
    base = tmp_path / "config"
    base.mkdir()
    (base / "out").symlink_to(tmp_path)
    (base / "loop").symlink_to("loop")
    with pytest.raises(ParamsInvalid) as caught:
        contained_path(base, name, field="files")
    assert caught.value.message.startswith("files: ")
    assert reason in caught.value.message


def test_markers_are_the_seed_names_and_report_presence(tmp_path: Path) -> None:
    assert marker_path(tmp_path, "identity") == tmp_path / ".sei-sidecar-identity-done"
    assert not has_marker(tmp_path, "identity")
    write_marker(tmp_path, "identity")
    assert has_marker(tmp_path, "identity")
    assert (tmp_path / ".sei-sidecar-identity-done").read_bytes() == b""

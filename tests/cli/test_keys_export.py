"""`nodetask-agent keys export`: the operator key armored for `seid keys import`, passphrase from stdin only."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agent.chain.cosmos.armor import unarmor_private_key
from agent.chain.cosmos.keystore import ensure_account_key
from agent.cli.main import main


def test_the_exported_key_decrypts_to_the_keystore_key_and_stdout_holds_no_raw_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key, _ = ensure_account_key(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))

    assert main(["keys", "export", "--home", str(tmp_path)]) == 0

    out, err = capsys.readouterr()
    assert unarmor_private_key(out, "a long passphrase").secret_bytes() == key.private_key.secret_bytes()
    assert key.private_key.secret_bytes().hex() not in out + err
    assert key.address in err and "seid keys import" in err


def test_a_short_passphrase_is_refused_and_nothing_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_account_key(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))

    assert main(["keys", "export", "--home", str(tmp_path)]) == 1

    out, err = capsys.readouterr()
    assert out == "" and "passphrase must be" in err


def test_no_keystore_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "export", "--home", str(tmp_path)]) == 1
    assert "file not found" in capsys.readouterr().err

"""`nodetask-agent keys export`: the operator key armored for `seid keys import`, passphrase from stdin only."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from agent.chain.cosmos.armor import AMINO_SECP256K1_PRIVATE_KEY, _derive, secretbox_open, unarmor_private_key
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


def _plaintext(armored: str, passphrase: str) -> bytes:
    """The decrypted bytes inside the armor, exactly what the chain's `keys import` unmarshals."""
    lines = armored.strip().splitlines()
    salt = bytes.fromhex(next(line for line in lines if line.startswith("salt: "))[len("salt: ") :])
    body = lines[lines.index("") + 1 : -1]
    data = base64.b64decode("".join(line for line in body if not line.startswith("=")))
    return secretbox_open(data[24:], _derive(passphrase, salt), data[:24])


@pytest.mark.parametrize(
    ("form", "expected_prefix"),
    [(None, b""), ("raw", b""), ("amino", AMINO_SECP256K1_PRIVATE_KEY + bytes([32]))],
    ids=["default-is-sei", "raw-for-seid", "amino-for-stock-sdk"],
)
def test_the_armor_holds_the_key_in_the_form_the_chains_keyring_imports(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    form: str | None,
    expected_prefix: bytes,
) -> None:
    """Sei's `seid keys import` refuses the 37-byte amino form (`invalid privkey size`): it reads the 32 raw bytes;
    stock `simd` reads amino. `SEI_KEY_EXPORT_FORM` picks, Sei's by default."""
    key, _ = ensure_account_key(tmp_path)
    if form is not None:
        monkeypatch.setenv("SEI_KEY_EXPORT_FORM", form)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))

    assert main(["keys", "export", "--home", str(tmp_path)]) == 0

    plaintext = _plaintext(capsys.readouterr().out, "a long passphrase")
    assert plaintext == expected_prefix + key.private_key.secret_bytes()


def test_an_unknown_export_form_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_account_key(tmp_path)
    monkeypatch.setenv("SEI_KEY_EXPORT_FORM", "hex")
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))

    assert main(["keys", "export", "--home", str(tmp_path)]) != 0

    out, err = capsys.readouterr()
    assert out == "" and "SEI_KEY_EXPORT_FORM" in err

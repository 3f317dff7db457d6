"""`nodetask-agent keys export` piped into a real `seid keys import`: the operator's documented path to use the
agent's account key with seid's CLI (docs/tasks/gov-vote.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.chain.cosmos.keystore import ensure_account_key

from .conftest import PASSPHRASE, SEID_MARKS, SeidNode, bare_seid_home, export_agent_key

pytestmark = SEID_MARKS


def test_seid_keys_import_of_the_exported_key_shows_the_agents_address(seid_binary: Path, tmp_path: Path) -> None:
    key, _ = ensure_account_key(tmp_path / "agent")
    armored = tmp_path / "validator.armor"
    armored.write_text(export_agent_key(tmp_path / "agent"))  # Sei's form is the default
    node: SeidNode = bare_seid_home(seid_binary, tmp_path / "seid")

    node.seid("keys", "import", "validator", str(armored), "--keyring-backend", "test", input=PASSPHRASE + "\n")

    shown = node.seid("keys", "show", "validator", "-a", "--keyring-backend", "test").strip()
    assert shown == key.address


def test_seid_refuses_the_stock_sdks_amino_form_so_the_form_matters(seid_binary: Path, tmp_path: Path) -> None:
    ensure_account_key(tmp_path / "agent")
    armored = tmp_path / "validator.armor"
    armored.write_text(export_agent_key(tmp_path / "agent", "amino"))
    node = bare_seid_home(seid_binary, tmp_path / "seid")

    with pytest.raises(AssertionError, match="invalid privkey size"):
        node.seid("keys", "import", "validator", str(armored), "--keyring-backend", "test", input=PASSPHRASE + "\n")

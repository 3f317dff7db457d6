"""External and vesting genesis accounts and overrides, as assemble-and-upload-genesis writes them, accepted by a real
`simd validate-genesis` (Cosmos SDK v0.45: the accounts are unpacked and each vesting account's `Validate()` runs)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from agent.chain.cosmos.address import Bech32Prefixes
from agent.chain.cosmos.genesis_extras import ExternalAccount, Vesting, add_external_accounts, apply_overrides
from agent.chain.crypto import bech32
from tests.fixtures.chain import ChainTools

pytestmark = pytest.mark.chain

PREFIX = Bech32Prefixes.from_main("cosmos").account


def _simd(tools: ChainTools, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools.simd), *args, "--home", str(home)], capture_output=True, text=True, timeout=60, check=False
    )


def test_accounts_and_overrides_pass_simd_validate_genesis(chain_tools: ChainTools, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _simd(chain_tools, home, "init", "n", "--chain-id", "accounts-real").returncode == 0
    path = home / "config" / "genesis.json"
    genesis = json.loads(path.read_text())
    genesis_unix = int(datetime.fromisoformat(genesis["genesis_time"].replace("Z", "+00:00")).timestamp())
    accounts = [
        ExternalAccount(bech32.encode(PREFIX, bytes([1] * 20)), {"stake": 1000}),
        ExternalAccount(
            bech32.encode(PREFIX, bytes([2] * 20)),
            {"stake": 900, "uatom": 5},
            Vesting({"stake": 600}, genesis_unix + 3600),
        ),
        ExternalAccount(
            bech32.encode(PREFIX, bytes([3] * 20)), {"stake": 300}, Vesting({"stake": 300}, genesis_unix + 60, True)
        ),
    ]
    apply_overrides(genesis, {"staking.params.max_validators": 50, "gov.voting_params.voting_period": "20s"})
    assert add_external_accounts(genesis, accounts, genesis_unix=genesis_unix, validator_addresses=set()) == 3
    path.write_text(json.dumps(genesis, indent=2))

    checked = _simd(chain_tools, home, "validate-genesis")

    assert checked.returncode == 0, checked.stderr
    # and the validation is real: a vesting account that ends before it starts is refused
    genesis["app_state"]["auth"]["accounts"][1]["base_vesting_account"]["end_time"] = "1"
    path.write_text(json.dumps(genesis, indent=2))
    refused = _simd(chain_tools, home, "validate-genesis")
    assert refused.returncode != 0 and "vesting" in (refused.stderr + refused.stdout).lower()

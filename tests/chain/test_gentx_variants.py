"""Gentxs the assembly meets in the wild: simd's (SIGN_MODE_DIRECT and LEGACY_AMINO_JSON), Sei's `gas_estimate`, and
gentxs signed with a real account number for a fork that starts above height 1.

Recorded evidence (the chain tier re-creates the same kinds live, tests/chain_real/test_genesis_real.py):
- `data/simd-v0.45.16-gentx-direct.json`: `simd gentx` of cosmos-sdk v0.45.16, chain `amino-1`, moniker `v<0>&`
  (Go's JSON writes it `v\\u003c0\\u003e\\u0026`).
- `data/simd-v0.45.16-gentx-amino-json.json`: the same unsigned transaction signed by `simd tx sign --sign-mode
  amino-json --offline --account-number 0 --sequence 0 --chain-id amino-1` (what a Ledger-held key produces).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agent.chain.cosmos.address import Bech32Prefixes
from agent.chain.cosmos.gentx import (
    GentxProblem,
    build_gentx,
    check_signature,
    gentx_file_bytes,
    verify_gentx,
)
from agent.chain.cosmos.proto import SignMode, Tx
from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from tests.chain.test_cosmos_tx import REAL_GENTXS, _spec, real_gentx

DATA = Path(__file__).parent / "data"
SIMD_GENTXS = {
    SignMode.SIGN_MODE_DIRECT: DATA / "simd-v0.45.16-gentx-direct.json",
    SignMode.SIGN_MODE_LEGACY_AMINO_JSON: DATA / "simd-v0.45.16-gentx-amino-json.json",
}
COSMOS = Bech32Prefixes.from_main("cosmos")
SIMD_CHAIN = "amino-1"


@pytest.mark.parametrize("mode", list(SIMD_GENTXS), ids=lambda mode: mode.name)
def test_simd_gentx_verifies_in_its_sign_mode(mode: SignMode) -> None:
    verified = verify_gentx(json.loads(SIMD_GENTXS[mode].read_text()), SIMD_CHAIN, COSMOS)
    assert verified.sign_mode == mode
    assert verified.moniker == "v<0>&"  # Go's HTML escapes are part of the amino sign bytes
    assert verified.delegator_address.startswith("cosmos1")


@pytest.mark.parametrize(
    ("edit", "chain_id"),
    [
        (lambda d: d["body"]["messages"][0]["description"].update(moniker="v<1>&"), SIMD_CHAIN),
        (lambda d: d["body"]["messages"][0]["value"].update(amount="50000000001"), SIMD_CHAIN),
        (lambda d: d["body"].update(memo=d["body"]["memo"].replace("26656", "26657")), SIMD_CHAIN),
        (lambda d: d["auth_info"]["fee"].update(gas_limit="200001"), SIMD_CHAIN),
        (lambda d: None, "amino-2"),
    ],
    ids=["moniker", "amount", "memo", "gas", "other-chain"],
)
def test_amino_json_signature_covers_the_message_fee_memo_and_chain(edit: Any, chain_id: str) -> None:
    document = json.loads(SIMD_GENTXS[SignMode.SIGN_MODE_LEGACY_AMINO_JSON].read_text())
    edit(document)
    with pytest.raises(GentxProblem, match="signature does not verify"):
        verify_gentx(document, chain_id, COSMOS)


def test_textual_sign_mode_is_refused_naming_the_accepted_ones() -> None:
    document = json.loads(SIMD_GENTXS[SignMode.SIGN_MODE_DIRECT].read_text())
    document["auth_info"]["signer_infos"][0]["mode_info"]["single"]["mode"] = "SIGN_MODE_TEXTUAL"
    with pytest.raises(GentxProblem, match="expected SIGN_MODE_DIRECT or SIGN_MODE_LEGACY_AMINO_JSON"):
        verify_gentx(document, SIMD_CHAIN, COSMOS)


def _with_gas_estimate(value: str) -> dict[str, Any]:
    document = copy.deepcopy(real_gentx(REAL_GENTXS[0]))
    document["auth_info"]["fee"]["gas_estimate"] = value
    return document


def test_sei_gas_estimate_zero_is_accepted_and_not_written_back() -> None:
    document = _with_gas_estimate("0")
    verified = verify_gentx(document, "atlantic-sub-1")
    assert verified.tx.auth_info is not None and verified.tx.auth_info.fee is not None
    assert verified.tx.auth_info.fee.gas_estimate == 0
    # gen_txs get the stock SDK's JSON: a stock node refuses unknown fields, and zero is not encoded anyway
    assert "gas_estimate" not in verified.to_json()["auth_info"]["fee"]
    assert Tx.from_json(document).encode() == Tx.from_json(real_gentx(REAL_GENTXS[0])).encode()


def test_a_nonzero_gas_estimate_is_signed_data_and_kept() -> None:
    document = _with_gas_estimate("123")
    tx = Tx.from_json(document)
    assert tx.to_json()["auth_info"]["fee"]["gas_estimate"] == "123"
    with pytest.raises(GentxProblem, match="signature does not verify"):
        verify_gentx(document, "atlantic-sub-1")  # it was signed without the field


KEY = Secp256k1PrivateKey(bytes.fromhex("22" * 32))


def test_a_gentx_signed_with_a_real_account_number_verifies_only_with_it() -> None:
    document = json.loads(gentx_file_bytes(build_gentx(_spec(), KEY, "fork-1", account_number=9)))
    with pytest.raises(GentxProblem, match="account number 0"):
        verify_gentx(document, "fork-1")
    deferred = verify_gentx(document, "fork-1", account_number=None)
    check_signature(deferred, "fork-1", 9)
    with pytest.raises(GentxProblem, match="account number 8"):
        check_signature(deferred, "fork-1", 8)


def test_a_zero_signed_gentx_on_a_real_number_chain_says_which_number_to_sign_with() -> None:
    document = json.loads(gentx_file_bytes(build_gentx(_spec(), KEY, "fork-1")))
    deferred = verify_gentx(document, "fork-1", account_number=None)
    with pytest.raises(GentxProblem, match=r"signed with account number 0.*sign it with account number 7"):
        check_signature(deferred, "fork-1", 7)

"""Signed transactions after genesis: signing, the tx record, result codes, and the armored key export.

The real chain tier (`tests/chain_real/test_gov.py`) proves the bytes against simd; these check the pieces a chain
cannot show cheaply: record binding and damage, code classification, NaCl/OpenPGP vectors.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from Crypto.Cipher import Salsa20

from agent.chain.broadcast import TxRecord, TxRecords
from agent.chain.cosmos import armor
from agent.chain.cosmos.proto import (
    Any,
    Coin,
    MsgData,
    MsgSubmitProposal,
    MsgSubmitProposalResponse,
    MsgVote,
    Plan,
    SignDoc,
    SoftwareUpgradeProposal,
    TxBody,
    TxMsgData,
    TxRaw,
    VoteOption,
)
from agent.chain.cosmos.tx import bounded_log, classify, proposal_id_from_data, sign_tx, tx_hash
from agent.chain.crypto import secp256k1
from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from agent.models import TaskError, format_timestamp, utcnow

KEY = Secp256k1PrivateKey(bytes(range(1, 33)))
TASK_ID = "0b6f3c56-1d2e-4f3a-9b8c-7d6e5f4a3b2c"


def _vote() -> MsgVote:
    return MsgVote(proposal_id=7, voter="cosmos1voter", option=VoteOption.VOTE_OPTION_YES)


def test_a_signed_tx_verifies_for_its_chain_and_account_and_is_deterministic() -> None:
    signed = sign_tx(
        _vote(), KEY, chain_id="c-1", account_number=5, sequence=3, fee=(Coin("stake", 2000),), gas=200_000, memo="m"
    )
    raw = TxRaw.decode(signed.tx_bytes)
    assert signed.tx_hash == tx_hash(signed.tx_bytes) and len(signed.tx_hash) == 64 and signed.tx_hash.isupper()
    assert TxBody.decode(raw.body_bytes).messages[0] == Any.pack(_vote())
    sign_bytes = SignDoc(raw.body_bytes, raw.auth_info_bytes, "c-1", 5).encode()
    assert secp256k1.verify(KEY.public_key, sign_bytes, raw.signatures[0])
    assert not secp256k1.verify(
        KEY.public_key, SignDoc(raw.body_bytes, raw.auth_info_bytes, "c-2", 5).encode(), raw.signatures[0]
    )
    again = sign_tx(
        _vote(), KEY, chain_id="c-1", account_number=5, sequence=3, fee=(Coin("stake", 2000),), gas=200_000, memo="m"
    )
    assert again == signed


def test_a_memo_over_256_bytes_is_refused_before_signing() -> None:
    with pytest.raises(ValueError, match="memo is 257 bytes"):
        sign_tx(_vote(), KEY, chain_id="c", account_number=0, sequence=0, fee=(), gas=1, memo="x" * 257)


def test_the_proposal_id_comes_from_the_result_data() -> None:
    data = TxMsgData(
        data=(MsgData(MsgSubmitProposal.TYPE_URL, MsgSubmitProposalResponse(proposal_id=42).encode()),)
    ).encode()
    assert proposal_id_from_data(data) == 42
    assert proposal_id_from_data(b"") is None
    assert proposal_id_from_data(b"\xff\xff") is None
    assert proposal_id_from_data(TxMsgData(data=(MsgData("/cosmos.gov.v1beta1.MsgVote", b""),)).encode()) is None


@pytest.mark.parametrize(
    ("codespace", "code", "reason", "retryable"),
    [
        ("sdk", 13, "InsufficientFee", False),
        ("sdk", 11, "OutOfGas", False),
        ("sdk", 32, "SequenceMismatch", True),
        ("sdk", 20, "MempoolFull", True),
        ("sdk", 4, "SignatureRejected", False),
        ("gov", 2, "UnknownProposal", False),
        ("gov", 3, "InactiveProposal", False),
        ("wasm", 2, "TxFailed", False),
    ],
)
def test_result_codes_are_classified(codespace: str, code: int, reason: str, retryable: bool) -> None:
    kind = classify(codespace, code)
    assert (kind.reason, kind.retryable) == (reason, retryable)


def test_a_chain_log_is_bounded_and_has_no_control_characters() -> None:
    text = bounded_log("line one\nline\ttwo\x1b[31m" + "x" * 1000)
    assert "\n" not in text and "\x1b" not in text and len(text) == 400 and text.endswith("…")


# --- the software-upgrade plan, byte for byte -------------------------------------------------------------------

# Hand-checked: title (0a 07 "Upgrade"), description (12 02 "v2"), plan (1a 15): name (0a 02 "v2"), time (12 0b: a
# Timestamp whose seconds, 08 + the ten-byte varint of -62135596800, are Go's zero time 0001-01-01T00:00:00Z), height
# (18 a08d06 = 100000); info empty, so absent.
UPGRADE_CONTENT = bytes.fromhex("0a0755706772616465120276321a150a027632120b088092b8c398feffffff0118a08d06")
ZERO_TIME_FIELD = bytes.fromhex("120b088092b8c398feffffff01")


def _upgrade_body(plan_bytes: bytes | None = None) -> bytes:
    """A MsgSubmitProposal body of the upgrade above; `plan_bytes` replaces the plan's encoding (a legacy one)."""
    content = SoftwareUpgradeProposal("Upgrade", "v2", Plan(name="v2", height=100_000))
    packed = Any.pack(content)
    if plan_bytes is not None:
        packed = Any(
            packed.type_url,
            bytes.fromhex("0a075570677261646512027632") + b"\x1a" + bytes([len(plan_bytes)]) + plan_bytes,
        )
    message = MsgSubmitProposal(content=packed, initial_deposit=(Coin("usei", 10_000_000),), proposer="sei1proposer")
    return TxBody(messages=(Any.pack(message),), memo="taskID=x").encode()


def _canonical(body: bytes) -> bytes:
    """What a chain that re-encodes the body gets (seid compares its size with the wire size): every message and
    the proposal inside decoded and encoded again, Go's way."""
    decoded = TxBody.decode(body)
    message = decoded.messages[0].unpack("message")
    assert isinstance(message, MsgSubmitProposal) and message.content is not None
    again = MsgSubmitProposal(Any.pack(message.content.unpack("content")), message.initial_deposit, message.proposer)
    return TxBody(messages=(Any.pack(again),), memo=decoded.memo).encode()


def test_a_software_upgrade_proposal_encodes_the_plans_zero_time_like_gogoproto() -> None:
    content = SoftwareUpgradeProposal("Upgrade", "v2", Plan(name="v2", height=100_000))
    assert content.encode() == UPGRADE_CONTENT
    assert len(ZERO_TIME_FIELD) == 13  # the 13 bytes seid found missing (body 293 on the wire, 306 canonical)
    assert SoftwareUpgradeProposal.decode(UPGRADE_CONTENT) == content


def test_the_upgrade_body_is_canonical_and_the_legacy_one_was_13_bytes_short() -> None:
    """seid's rule: re-encode the body and refuse it when the size differs. Ours passes; the encoding without the
    plan's time (what the agent sent before) fails by exactly the 13 bytes of the zero time."""
    body = _upgrade_body()
    assert _canonical(body) == body
    legacy = _upgrade_body(plan_bytes=bytes.fromhex("0a02763218a08d06"))
    assert len(_canonical(legacy)) - len(legacy) == 13


# --- tx records ----------------------------------------------------------------------------------------------------


def _record(**changes: object) -> TxRecord:
    signed = sign_tx(_vote(), KEY, chain_id="c-1", account_number=5, sequence=3, fee=(), gas=1)
    fields: dict[str, object] = {
        "task_id": TASK_ID,
        "run": 1,
        "params_hash": "ab" * 32,
        "chain_id": "c-1",
        "signer": "cosmos1signer",
        "account_number": 5,
        "sequence": 3,
        "tx_hash": signed.tx_hash,
        "tx_bytes": signed.tx_bytes,
        "created_at": format_timestamp(utcnow()),
    }
    fields.update(changes)
    return TxRecord(**fields)  # type: ignore[arg-type]


def test_a_record_round_trips_with_mode_0600_and_holds_no_key_material(tmp_path: Path) -> None:
    records = TxRecords(tmp_path)
    record = _record()
    records.save(record)
    path = records.path(TASK_ID)
    assert path.stat().st_mode & 0o777 == 0o600
    assert records.load(TASK_ID) == record
    text = path.read_text()
    assert KEY.secret_bytes().hex() not in text and base64.b64encode(KEY.secret_bytes()).decode() not in text
    records.discard(TASK_ID)
    assert records.load(TASK_ID) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc: doc.update(tx_hash="00" * 32),  # bytes and hash disagree
        lambda doc: doc.update(version=99),
        lambda doc: doc.update(tx_bytes="not base64!"),
        lambda doc: doc.pop("sequence"),
    ],
)
def test_a_damaged_record_fails_the_task_instead_of_signing_again(tmp_path: Path, damage: object) -> None:
    records = TxRecords(tmp_path)
    records.save(_record())
    path = records.path(TASK_ID)
    document = json.loads(path.read_text())
    damage(document)  # type: ignore[operator]
    path.write_text(json.dumps(document))
    with pytest.raises(TaskError, match="refusing to sign") as caught:
        records.load(TASK_ID)
    assert caught.value.reason == "TxRecordInvalid"


def test_records_older_than_the_retention_are_pruned(tmp_path: Path) -> None:
    records = TxRecords(tmp_path)
    old_id, new_id = TASK_ID, TASK_ID.replace("0b6f", "1b6f")
    records.save(_record(task_id=old_id, created_at=format_timestamp(utcnow() - timedelta(days=40))))
    records.save(_record(task_id=new_id))
    assert records.prune(utcnow() - timedelta(days=30)) == 1
    assert records.load(old_id) is None and records.load(new_id) is not None


def test_a_task_id_cannot_escape_the_record_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="canonical UUID"):
        TxRecords(tmp_path).path("../../etc/passwd")


# --- armored key export --------------------------------------------------------------------------------------------

# NaCl's own test vectors (tests/core2.c, tests/secretbox.c): HSalsa20 of `firstkey` and the first 16 nonce bytes,
# and the secretbox of its 131-byte message.
FIRSTKEY = bytes.fromhex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
NONCE = bytes.fromhex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
SECONDKEY = bytes.fromhex("dc908dda0b9344a953629b733820778880f3ceb421bb61b91cbd4c3e66256ce4")


def test_the_secretbox_stream_is_salsa20_under_nacls_hsalsa20_subkey() -> None:
    """core2.c's HSalsa20 vector, through libsodium: XSalsa20(firstkey, nonce) is Salsa20 keyed with `secondkey`
    (HSalsa20 of firstkey and nonce[:16]) over the last 8 nonce bytes; a sealed zero message is tag || keystream."""
    keystream = armor.secretbox_seal(bytes(64), FIRSTKEY, NONCE)[16:]
    expected = Salsa20.new(key=SECONDKEY, nonce=NONCE[16:]).encrypt(bytes(32 + 64))[32:]

    assert keystream == expected


def test_secretbox_matches_nacl() -> None:
    message = bytes.fromhex(
        "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a1ac728d45e6c6129"
        "6cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde"
        "048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f937763848645e0705"
    )
    box = armor.secretbox_seal(message, FIRSTKEY, NONCE)
    assert box[:16].hex() == "f3ffc7703f9400e52a7dfb4b3d3305d9"
    assert armor.secretbox_open(box, FIRSTKEY, NONCE) == message
    with pytest.raises(ValueError, match="wrong passphrase"):
        armor.secretbox_open(box[:-1] + bytes([box[-1] ^ 1]), FIRSTKEY, NONCE)


def test_crc24_matches_openpgp() -> None:
    assert armor.crc24(b"") == 0xB704CE
    assert armor.crc24(b"123456789") == 0x21CF02


def test_an_armored_key_decrypts_with_its_passphrase_only() -> None:
    text = armor.armor_private_key(KEY, "a long passphrase")
    assert text.startswith("-----BEGIN TENDERMINT PRIVATE KEY-----\nkdf: bcrypt\nsalt: ")
    assert KEY.secret_bytes().hex() not in text.lower()
    assert armor.unarmor_private_key(text, "a long passphrase").secret_bytes() == KEY.secret_bytes()
    with pytest.raises(ValueError, match="wrong passphrase"):
        armor.unarmor_private_key(text, "another passphrase")


@pytest.mark.parametrize("passphrase", ["short", "x" * 73, "with\x00nul"])
def test_an_unusable_passphrase_is_refused(passphrase: str) -> None:
    with pytest.raises(ValueError, match="passphrase must be"):
        armor.armor_private_key(KEY, passphrase)

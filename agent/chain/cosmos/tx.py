"""Signed transactions after genesis: build, sign (SIGN_MODE_DIRECT), hash, and read back what the chain says.

Pure functions over the codec in `proto`; the network half (account query, broadcast, inclusion) lives in
`agent.chain.broadcast`. One message per transaction, one secp256k1 signer, fee and gas exactly as given (no
simulation: a gas estimate is an operator decision, and a simulation would be a second round trip that can disagree
with the real execution), no fee payer or granter, no timeout height.

The transaction hash is what CometBFT indexes: SHA-256 of the broadcast bytes (a `TxRaw`), as upper-case hex.

Result codes: CheckTx and DeliverTx answer with `(codespace, code, log)`. `classify` maps the SDK's root codespace
(`sdk`, cosmos-sdk `types/errors`) to a stable reason and whether running the task again may help; a code of another
module (`gov` code 2, "unknown proposal") is terminal: the same transaction fails the same way again.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from agent.models.redaction import scrub_output

from .proto import (
    Any,
    AuthInfo,
    BaseAccount,
    Coin,
    Fee,
    Message,
    ModeInfo,
    ModeInfoSingle,
    MsgSubmitProposal,
    MsgSubmitProposalResponse,
    ProtoError,
    QueryAccountResponse,
    Secp256k1PubKey,
    SignDoc,
    SignerInfo,
    SignMode,
    TxBody,
    TxMsgData,
    TxRaw,
)

MAX_MEMO_BYTES = 256
"""The SDK's default `max_memo_characters`; a longer memo is refused at CheckTx, so it is refused here first."""
MAX_LOG_CHARS = 400
"""How much of a chain's log a task error quotes (logs can be kilobytes of events)."""


@dataclass(frozen=True)
class SignedTx:
    """The exact bytes to broadcast, their hash, and the account state they were signed for."""

    tx_bytes: bytes
    tx_hash: str
    account_number: int
    sequence: int


def tx_hash(tx_bytes: bytes) -> str:
    """CometBFT's transaction hash: upper-case hex SHA-256 of the broadcast bytes."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


def sign_tx(
    message: Message,
    key: Secp256k1PrivateKey,
    *,
    chain_id: str,
    account_number: int,
    sequence: int,
    fee: tuple[Coin, ...],
    gas: int,
    memo: str = "",
) -> SignedTx:
    """One message, signed SIGN_MODE_DIRECT over `SignDoc{body, auth_info, chain_id, account_number}`.

    Deterministic (RFC 6979): the same inputs always give the same bytes and hash.
    """
    if len(memo.encode()) > MAX_MEMO_BYTES:
        raise ValueError(f"memo is {len(memo.encode())} bytes, at most {MAX_MEMO_BYTES} allowed")
    body = TxBody(messages=(Any.pack(message),), memo=memo).encode()
    auth_info = AuthInfo(
        signer_infos=(
            SignerInfo(
                public_key=Any.pack(Secp256k1PubKey(key.public_key)),
                mode_info=ModeInfo(ModeInfoSingle(SignMode.SIGN_MODE_DIRECT)),
                sequence=sequence,
            ),
        ),
        fee=Fee(amount=tuple(sorted(fee, key=lambda coin: coin.denom)), gas_limit=gas),
    ).encode()
    signature = key.sign(SignDoc(body, auth_info, chain_id, account_number).encode())
    raw = TxRaw(body, auth_info, (signature,)).encode()
    return SignedTx(raw, tx_hash(raw), account_number, sequence)


def account_from_query(value: bytes) -> BaseAccount:
    """The `BaseAccount` in a `/cosmos.auth.v1beta1.Query/Account` answer; `ProtoError` for other account types.

    Vesting and module accounts are not signers this agent supports: a validator's operator account is a plain one.
    """
    response = QueryAccountResponse.decode(value)
    if response.account is None:
        raise ProtoError("QueryAccountResponse has no account")
    if response.account.type_url != BaseAccount.TYPE_URL:
        raise ProtoError(f"account type {response.account.type_url!r} is not {BaseAccount.TYPE_URL!r}")
    account = response.account.unpack("account")
    assert isinstance(account, BaseAccount)
    return account


def proposal_id_from_data(data: bytes) -> int | None:
    """The new proposal's ID from a committed `MsgSubmitProposal`'s result data, or None when it has none.

    The data, not the events: event attributes differ between SDK forks (Sei emits the ID on `proposal_deposit`),
    the response message does not.
    """
    if not data:
        return None
    try:
        for entry in TxMsgData.decode(data).data:
            if entry.msg_type in (MsgSubmitProposal.TYPE_URL, "submit_proposal"):
                return MsgSubmitProposalResponse.decode(entry.data).proposal_id or None
    except ProtoError:
        return None
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def bounded_log(log: str, limit: int = MAX_LOG_CHARS) -> str:
    """A chain log fit for an error message or a result: control characters folded to spaces, secrets masked
    (`scrub_output`: the log is remote text), at most `limit` characters."""
    return scrub_output(_CONTROL.sub(" ", unicodedata.normalize("NFC", log or "")), limit, keep="head")


# --- result codes ----------------------------------------------------------------------------------------------------

SEQUENCE_MISMATCH = 32
"""sdk `ErrWrongSequence`: the signer's sequence moved (another transaction from this account came first)."""
TX_IN_MEMPOOL_CACHE = 19
"""sdk `ErrTxInMempoolCache`: the node already holds these exact bytes, so they are on their way."""


@dataclass(frozen=True)
class CodeClass:
    reason: str
    retryable: bool
    hint: str


_SDK_CODES: dict[int, CodeClass] = {
    2: CodeClass(
        "TxDecodeFailed", False, "the node could not decode the transaction: is it the chain the agent expects?"
    ),
    4: CodeClass(
        "SignatureRejected",
        False,
        "the signature does not verify: the chain ID or account number differs from the node's (wrong chainId?)",
    ),
    5: CodeClass("InsufficientFunds", False, "the signer's account cannot pay the fee or deposit: fund it"),
    7: CodeClass("InvalidAddress", False, "an address in the message is not valid for this chain's prefix"),
    9: CodeClass("UnknownAddress", False, "the signer's account does not exist on chain yet: fund it"),
    11: CodeClass("OutOfGas", False, "raise params.gas (the chain's log says how much was used)"),
    12: CodeClass("MemoTooLarge", False, "shorten params.memo"),
    13: CodeClass("InsufficientFee", False, "raise params.fees to at least gas x the node's minimum gas price"),
    18: CodeClass("InvalidRequest", False, "the chain refused the message's content; see its log"),
    20: CodeClass("MempoolFull", True, "the node's mempool is full; run the task again later"),
    SEQUENCE_MISMATCH: CodeClass(
        "SequenceMismatch", True, "another transaction from this account was processed first; run the task again"
    ),
}
_GOV_CODES: dict[int, CodeClass] = {
    2: CodeClass("UnknownProposal", False, "check params.proposalId against the chain's proposals"),
    3: CodeClass("InactiveProposal", False, "the proposal is not in its voting period"),
    5: CodeClass("InvalidProposalContent", False, "fix the proposal's content"),
    7: CodeClass("InvalidVote", False, "params.option is not a valid vote"),
}


def classify(codespace: str, code: int) -> CodeClass:
    """Reason and retryability of a non-zero CheckTx/DeliverTx code."""
    if codespace in ("sdk", "") and code in _SDK_CODES:
        return _SDK_CODES[code]
    if codespace == "gov" and code in _GOV_CODES:
        return _GOV_CODES[code]
    return CodeClass(
        "TxFailed", False, f"the chain refused the transaction ({codespace or 'sdk'} code {code}); see its log"
    )

"""Genesis transactions: build and sign a `MsgCreateValidator` offline, and verify one that someone else signed.

A gentx is a `cosmos.tx.v1beta1.Tx` with exactly one `MsgCreateValidator`, signed in SIGN_MODE_DIRECT with account
number 0 and sequence 0 (accounts have no number before genesis), no fee, a gas limit of 200000 (what `seid gentx`
writes), and the memo `<nodeID>@<host>:<port>` that `collect-gentxs` turns into persistent peers. The file form is
the SDK's proto-JSON, compact, with a trailing newline.

Verification recomputes the sign bytes from the decoded JSON with the codec in `proto` (byte-identical to gogoproto),
so a gentx that verifies here also verifies when the chain re-encodes it at InitChain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any as AnyType

from agent.chain.crypto import bech32, secp256k1
from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from agent.models.params.genesis import Coin

from .address import SEI, Bech32Prefixes, account_address_bytes
from .proto import (
    Any,
    AuthInfo,
    CommissionRates,
    Description,
    Ed25519PubKey,
    Fee,
    ModeInfo,
    ModeInfoSingle,
    MsgCreateValidator,
    ProtoError,
    Secp256k1PubKey,
    SignDoc,
    SignerInfo,
    SignMode,
    Tx,
    TxBody,
)
from .proto import Coin as ProtoCoin

GENTX_GAS_LIMIT = 200_000
GENESIS_ACCOUNT_NUMBER = 0
GENESIS_SEQUENCE = 0
_MEMO = re.compile(r"^(?P<node_id>[0-9a-f]{40})@(?P<host>[^\s@:]+):(?P<port>[0-9]{1,5})$")

GENTX_INVALID = "GentxInvalid"
GENTX_MISSING_MEMO = "GentxMissingMemo"


class GentxProblem(ValueError):
    """A gentx that cannot be used; `reason` is `GentxInvalid` or `GentxMissingMemo`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ValidatorSpec:
    """Everything a `MsgCreateValidator` says about the new validator, except who signs it."""

    moniker: str
    self_delegation: Coin
    consensus_public_key: bytes
    memo: str
    commission_rate: Decimal = Decimal("0.10")
    commission_max_rate: Decimal = Decimal("0.20")
    commission_max_change_rate: Decimal = Decimal("0.01")
    min_self_delegation: int = 1
    identity: str = ""
    website: str = ""
    security_contact: str = ""
    details: str = ""


def memo_for(node_id: str, host: str, port: int) -> str:
    """`<nodeID>@<host>:<port>`: the peer address `collect-gentxs` reads from each gentx."""
    return f"{node_id}@{host}:{port}"


def sign_doc_bytes(body: TxBody, auth_info: AuthInfo, chain_id: str, account_number: int) -> bytes:
    """The SIGN_MODE_DIRECT bytes: `SignDoc{body_bytes, auth_info_bytes, chain_id, account_number}` encoded."""
    return SignDoc(body.encode(), auth_info.encode(), chain_id, account_number).encode()


def build_gentx(
    spec: ValidatorSpec, account_key: Secp256k1PrivateKey, chain_id: str, prefixes: Bech32Prefixes = SEI
) -> Tx:
    """A signed gentx. Deterministic: the same inputs always give the same bytes (RFC 6979 signatures)."""
    account = account_address_bytes(account_key.public_key)
    message = MsgCreateValidator(
        description=Description(spec.moniker, spec.identity, spec.website, spec.security_contact, spec.details),
        commission=CommissionRates(spec.commission_rate, spec.commission_max_rate, spec.commission_max_change_rate),
        min_self_delegation=spec.min_self_delegation,
        delegator_address=bech32.encode(prefixes.account, account),
        validator_address=bech32.encode(prefixes.validator, account),
        pubkey=Any.pack(Ed25519PubKey(spec.consensus_public_key)),
        value=ProtoCoin(spec.self_delegation.denom, spec.self_delegation.amount),
    )
    body = TxBody(messages=(Any.pack(message),), memo=spec.memo)
    auth_info = AuthInfo(
        signer_infos=(
            SignerInfo(
                public_key=Any.pack(Secp256k1PubKey(account_key.public_key)),
                mode_info=ModeInfo(ModeInfoSingle(SignMode.SIGN_MODE_DIRECT)),
                sequence=GENESIS_SEQUENCE,
            ),
        ),
        fee=Fee(gas_limit=GENTX_GAS_LIMIT),
    )
    signature = account_key.sign(sign_doc_bytes(body, auth_info, chain_id, GENESIS_ACCOUNT_NUMBER))
    return Tx(body, auth_info, (signature,))


def gentx_file_bytes(tx: Tx) -> bytes:
    """The gentx file: compact proto-JSON plus a newline, as `seid gentx` writes it."""
    return (json.dumps(tx.to_json(), separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True)
class VerifiedGentx:
    """A gentx whose shape, addresses and signature were checked, with the facts assembly needs."""

    tx: Tx
    moniker: str
    delegator_address: str
    validator_address: str
    account_public_key: bytes
    consensus_public_key: bytes
    self_delegation: Coin
    min_self_delegation: int
    node_id: str
    p2p_address: str

    @property
    def memo(self) -> str:
        return self.tx.body.memo if self.tx.body else ""

    def to_json(self) -> dict[str, AnyType]:
        """The canonical proto-JSON of the verified transaction (what goes into `genutil.gen_txs`)."""
        return self.tx.to_json()


def _invalid(detail: str) -> GentxProblem:
    return GentxProblem(GENTX_INVALID, detail)


def _single_message(tx: Tx) -> MsgCreateValidator:
    if tx.body is None or tx.auth_info is None:
        raise _invalid("the transaction has no body or no auth_info")
    if len(tx.body.messages) != 1:
        raise _invalid(f"expected exactly one message, found {len(tx.body.messages)}")
    if tx.body.extension_options or tx.body.non_critical_extension_options or tx.body.timeout_height:
        raise _invalid("a gentx carries no extension options and no timeout height")
    packed = tx.body.messages[0]
    if packed.type_url != MsgCreateValidator.TYPE_URL:
        raise _invalid(f"the message is {packed.type_url!r}, expected {MsgCreateValidator.TYPE_URL!r}")
    message = packed.unpack("body.messages[0]")
    assert isinstance(message, MsgCreateValidator)
    return message


def _signer_public_key(tx: Tx) -> bytes:
    assert tx.auth_info is not None
    signers = tx.auth_info.signer_infos
    if len(signers) != 1 or len(tx.signatures) != 1:
        raise _invalid(f"expected one signer and one signature, found {len(signers)} and {len(tx.signatures)}")
    signer = signers[0]
    if signer.mode_info is None or signer.mode_info.single is None:
        raise _invalid("the signer has no single sign mode (multisig gentxs are not supported)")
    if signer.mode_info.single.mode != SignMode.SIGN_MODE_DIRECT:
        raise _invalid(f"sign mode {signer.mode_info.single.mode.name}, expected SIGN_MODE_DIRECT")
    if signer.sequence != GENESIS_SEQUENCE:
        raise _invalid(f"signer sequence {signer.sequence}, expected {GENESIS_SEQUENCE}")
    if signer.public_key is None or signer.public_key.type_url != Secp256k1PubKey.TYPE_URL:
        found = signer.public_key.type_url if signer.public_key else "none"
        raise _invalid(f"signer public key type {found!r}, expected {Secp256k1PubKey.TYPE_URL!r}")
    key = signer.public_key.unpack("auth_info.signer_infos[0].public_key")
    assert isinstance(key, Secp256k1PubKey)
    if len(key.key) != secp256k1.COMPRESSED_PUBLIC_KEY_LENGTH:
        raise _invalid(f"signer public key is {len(key.key)} bytes, expected 33")
    return key.key


def _check_message(message: MsgCreateValidator, signer: bytes, prefixes: Bech32Prefixes) -> bytes:
    """Checks the SDK's `ValidateBasic` makes, plus: the signer is the delegator. Returns the consensus key."""
    signer_address = bech32.encode(prefixes.account, account_address_bytes(signer))
    if message.delegator_address != signer_address:
        raise _invalid(f"delegator {message.delegator_address!r} is not the signer's address {signer_address!r}")
    try:
        _, operator = bech32.decode(message.validator_address, expected_hrp=prefixes.validator)
    except bech32.Bech32Error as error:
        raise _invalid(f"validator_address: {error}") from None
    if operator != account_address_bytes(signer):
        raise _invalid(f"validator_address {message.validator_address!r} is not the delegator's operator address")
    if message.pubkey is None or message.pubkey.type_url != Ed25519PubKey.TYPE_URL:
        raise _invalid(f"consensus pubkey must be {Ed25519PubKey.TYPE_URL!r}")
    consensus = message.pubkey.unpack("pubkey")
    assert isinstance(consensus, Ed25519PubKey)
    if len(consensus.key) != 32:
        raise _invalid(f"consensus pubkey is {len(consensus.key)} bytes, expected 32")
    if message.description == Description():
        raise _invalid("the description is empty")
    if message.value.amount <= 0:
        raise _invalid(f"self-delegation {message.value.amount}{message.value.denom} is not positive")
    if not 0 < message.min_self_delegation <= message.value.amount:
        raise _invalid(
            f"min_self_delegation {message.min_self_delegation} must be positive and at most the self-delegation "
            f"{message.value.amount}"
        )
    rates = message.commission
    if not (0 <= rates.rate <= rates.max_rate <= 1 and 0 <= rates.max_change_rate <= rates.max_rate):
        raise _invalid(
            f"commission rates rate={rates.rate} max_rate={rates.max_rate} max_change_rate={rates.max_change_rate} "
            "must satisfy 0 <= rate <= max_rate <= 1 and max_change_rate <= max_rate"
        )
    return consensus.key


def parse_memo(memo: str) -> tuple[str, str]:
    """(node ID, `host:port`) of a gentx memo; `GentxProblem` when it is empty or not `<id>@<host>:<port>`."""
    if not memo.strip():
        raise GentxProblem(GENTX_MISSING_MEMO, "the memo is empty; it must be <nodeID>@<host>:<port>")
    match = _MEMO.match(memo)
    if not match or not 0 < int(match["port"]) < 65536:
        raise _invalid(f"memo {memo!r} is not <nodeID>@<host>:<port> (40 lowercase hex digits for the node ID)")
    return match["node_id"], f"{match['host']}:{match['port']}"


def verify_gentx(document: object, chain_id: str, prefixes: Bech32Prefixes = SEI) -> VerifiedGentx:
    """Decode and check a gentx's proto-JSON; `GentxProblem` says what is wrong.

    The signature is checked against the signer's own public key over sign bytes recomputed from the decoded
    message for `chain_id` with account number 0: a gentx signed for another chain, or edited after signing, fails.
    """
    try:
        tx = Tx.from_json(document, "gentx")
        message = _single_message(tx)
        signer = _signer_public_key(tx)
        consensus_key = _check_message(message, signer, prefixes)
    except ProtoError as error:
        raise _invalid(f"not a valid transaction: {error}") from None
    assert tx.body is not None and tx.auth_info is not None
    sign_bytes = sign_doc_bytes(tx.body, tx.auth_info, chain_id, GENESIS_ACCOUNT_NUMBER)
    if not secp256k1.verify(signer, sign_bytes, tx.signatures[0]):
        raise _invalid(
            f"the signature does not verify for chain {chain_id!r} and account number 0 "
            "(signed for another chain, with another key, or changed after signing)"
        )
    node_id, p2p_address = parse_memo(tx.body.memo)
    return VerifiedGentx(
        tx=tx,
        moniker=message.description.moniker,
        delegator_address=message.delegator_address,
        validator_address=message.validator_address,
        account_public_key=signer,
        consensus_public_key=consensus_key,
        self_delegation=Coin(message.value.denom, message.value.amount),
        min_self_delegation=message.min_self_delegation,
        node_id=node_id,
        p2p_address=p2p_address,
    )


def parse_gentx_bytes(data: bytes) -> object:
    """The JSON document of a gentx file; `GentxProblem` when it is not JSON."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _invalid(f"not JSON: {error}") from None

"""Genesis transactions: build and sign a `MsgCreateValidator` offline, and verify one that someone else signed.

A gentx is a `cosmos.tx.v1beta1.Tx` with exactly one `MsgCreateValidator`, signed in SIGN_MODE_DIRECT with account
number 0 and sequence 0 (accounts have no number before genesis), no fee, a gas limit of 200000 (what `seid gentx`
writes), and the memo `<nodeID>@<host>:<port>` that `collect-gentxs` turns into persistent peers. The file form is
the SDK's proto-JSON, compact, with a trailing newline.

Verification recomputes the sign bytes from the decoded JSON with the codec in `proto` (byte-identical to gogoproto),
so a gentx that verifies here also verifies when the chain re-encodes it at InitChain. Two sign modes are accepted,
as the SDK's ante handler accepts them: SIGN_MODE_DIRECT, and SIGN_MODE_LEGACY_AMINO_JSON (what a Ledger-held key
produces: the signature covers the amino JSON `StdSignDoc`, rebuilt here as `amino_sign_bytes`).

Account number: the SDK's ante handler signs genesis transactions with account number 0 only while the block height
is 0. A chain that starts at `initial_height > 1` (a fork) runs InitChain at that height, and stock Cosmos SDK 0.45
then checks the account's real number (its position in genesis, which auth's InitGenesis renumbers in order). Sei's
fork treats genesis by context and keeps 0. `build_gentx` and `verify_gentx` take the number to use.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any as AnyType

from agent.chain.crypto import bech32, secp256k1
from agent.chain.crypto.secp256k1 import Secp256k1PrivateKey
from agent.models.params.coins import Coin

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


_AMINO_MSG_CREATE_VALIDATOR = "cosmos-sdk/MsgCreateValidator"
_AMINO_ED25519_PUB_KEY = "tendermint/PubKeyEd25519"
_GO_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_sorted_json(value: object) -> bytes:
    """`sdk.MustSortJSON`: Go's encoding/json of the value with sorted keys, compact, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for character, escaped in _GO_JSON_ESCAPES.items():
        text = text.replace(character, escaped)
    return text.encode()


def _amino_coin(coin: ProtoCoin) -> dict[str, str]:
    return {"amount": str(coin.amount), "denom": coin.denom} if coin.denom else {"amount": str(coin.amount)}


def _amino_create_validator(message: MsgCreateValidator) -> dict[str, AnyType]:
    """`MsgCreateValidator` as legacy amino JSON: gogoproto's `omitempty` tags drop empty strings, `Dec`s keep 18
    decimals, the consensus key is `{type: tendermint/PubKeyEd25519, value: <base64>}`."""
    description = {
        key: value
        for key, value in message.description.to_json().items()
        if value  # json:",omitempty" on every Description field
    }
    value: dict[str, AnyType] = {
        "commission": message.commission.to_json(),
        "description": description,
        "min_self_delegation": str(message.min_self_delegation),
        "value": _amino_coin(message.value),
    }
    if message.delegator_address:
        value["delegator_address"] = message.delegator_address
    if message.validator_address:
        value["validator_address"] = message.validator_address
    if message.pubkey is not None:
        consensus = message.pubkey.unpack("pubkey")
        assert isinstance(consensus, Ed25519PubKey)
        value["pubkey"] = {"type": _AMINO_ED25519_PUB_KEY, "value": base64.b64encode(consensus.key).decode()}
    return {"type": _AMINO_MSG_CREATE_VALIDATOR, "value": value}


def amino_sign_bytes(tx: Tx, chain_id: str, account_number: int) -> bytes:
    """SIGN_MODE_LEGACY_AMINO_JSON bytes of a gentx: the SDK's `StdSignBytes` (legacytx) for its one message.

    `{"account_number", "chain_id", "fee": {"amount", "gas"}, "memo", "msgs", "sequence"}`, keys sorted, uint64s as
    strings, `timeout_height` omitted when zero (gentxs have none). Only `MsgCreateValidator` is supported.
    """
    assert tx.body is not None and tx.auth_info is not None
    fee = tx.auth_info.fee or Fee()
    document = {
        "account_number": str(account_number),
        "chain_id": chain_id,
        "fee": {"amount": [_amino_coin(coin) for coin in fee.amount], "gas": str(fee.gas_limit)},
        "memo": tx.body.memo,
        "msgs": [_amino_create_validator(_single_message(tx))],
        "sequence": str(tx.auth_info.signer_infos[0].sequence),
    }
    if tx.body.timeout_height:
        document["timeout_height"] = str(tx.body.timeout_height)
    return _go_sorted_json(document)


def build_gentx(
    spec: ValidatorSpec,
    account_key: Secp256k1PrivateKey,
    chain_id: str,
    prefixes: Bech32Prefixes = SEI,
    account_number: int = GENESIS_ACCOUNT_NUMBER,
) -> Tx:
    """A signed gentx (SIGN_MODE_DIRECT). Deterministic: the same inputs always give the same bytes (RFC 6979)."""
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
    signature = account_key.sign(sign_doc_bytes(body, auth_info, chain_id, account_number))
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
    sign_mode: SignMode = SignMode.SIGN_MODE_DIRECT

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


_ACCEPTED_SIGN_MODES = (SignMode.SIGN_MODE_DIRECT, SignMode.SIGN_MODE_LEGACY_AMINO_JSON)


def _signer_public_key(tx: Tx) -> bytes:
    assert tx.auth_info is not None
    signers = tx.auth_info.signer_infos
    if len(signers) != 1 or len(tx.signatures) != 1:
        raise _invalid(f"expected one signer and one signature, found {len(signers)} and {len(tx.signatures)}")
    signer = signers[0]
    if signer.mode_info is None or signer.mode_info.single is None:
        raise _invalid("the signer has no single sign mode (multisig gentxs are not supported)")
    if signer.mode_info.single.mode not in _ACCEPTED_SIGN_MODES:
        raise _invalid(
            f"sign mode {signer.mode_info.single.mode.name}, expected SIGN_MODE_DIRECT or SIGN_MODE_LEGACY_AMINO_JSON"
        )
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


def sign_bytes_for(tx: Tx, chain_id: str, account_number: int) -> bytes:
    """The bytes the signer signed, in the gentx's own sign mode (DIRECT or LEGACY_AMINO_JSON)."""
    assert tx.body is not None and tx.auth_info is not None
    mode_info = tx.auth_info.signer_infos[0].mode_info
    assert mode_info is not None and mode_info.single is not None
    if mode_info.single.mode == SignMode.SIGN_MODE_LEGACY_AMINO_JSON:
        return amino_sign_bytes(tx, chain_id, account_number)
    return sign_doc_bytes(tx.body, tx.auth_info, chain_id, account_number)


def signature_verifies(verified: VerifiedGentx, chain_id: str, account_number: int) -> bool:
    """Whether the gentx's signature verifies for `account_number` (assembly checks a fork's real numbers)."""
    sign_bytes = sign_bytes_for(verified.tx, chain_id, account_number)
    return secp256k1.verify(verified.account_public_key, sign_bytes, verified.tx.signatures[0])


def verify_gentx(
    document: object,
    chain_id: str,
    prefixes: Bech32Prefixes = SEI,
    account_number: int | None = GENESIS_ACCOUNT_NUMBER,
) -> VerifiedGentx:
    """Decode and check a gentx's proto-JSON; `GentxProblem` says what is wrong.

    The signature is checked against the signer's own public key over sign bytes recomputed from the decoded
    message (in its sign mode) for `chain_id` with `account_number`: a gentx signed for another chain, or edited
    after signing, fails. `account_number=None` checks everything but the signature, for a caller that learns the
    number later (a fork on a stock SDK chain) and then calls `check_signature`.
    """
    try:
        tx = Tx.from_json(document, "gentx")
        message = _single_message(tx)
        signer = _signer_public_key(tx)
        consensus_key = _check_message(message, signer, prefixes)
        sign_bytes = sign_bytes_for(tx, chain_id, account_number or 0)
    except ProtoError as error:
        raise _invalid(f"not a valid transaction: {error}") from None
    assert tx.body is not None and tx.auth_info is not None
    if account_number is not None and not secp256k1.verify(signer, sign_bytes, tx.signatures[0]):
        raise _invalid(_bad_signature(chain_id, account_number))
    mode_info = tx.auth_info.signer_infos[0].mode_info
    assert mode_info is not None and mode_info.single is not None
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
        sign_mode=mode_info.single.mode,
    )


def _bad_signature(chain_id: str, account_number: int) -> str:
    return (
        f"the signature does not verify for chain {chain_id!r} and account number {account_number} "
        "(signed for another chain, with another key, or changed after signing)"
    )


def check_signature(verified: VerifiedGentx, chain_id: str, account_number: int) -> None:
    """The deferred signature check of `verify_gentx(..., account_number=None)`; `GentxProblem` when it fails.

    When the signature verifies only for account number 0, the message says so and names the number to sign with.
    """
    if signature_verifies(verified, chain_id, account_number):
        return
    if account_number != GENESIS_ACCOUNT_NUMBER and signature_verifies(verified, chain_id, GENESIS_ACCOUNT_NUMBER):
        raise _invalid(
            f"signed with account number 0, but this genesis starts above height 1, where the chain verifies "
            f"genesis transactions with the account's own number {account_number}; sign it with account number "
            f"{account_number} (generate-gentx's accountNumber)"
        )
    raise _invalid(_bad_signature(chain_id, account_number))


def parse_gentx_bytes(data: bytes) -> object:
    """The JSON document of a gentx file; `GentxProblem` when it is not JSON."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _invalid(f"not JSON: {error}") from None

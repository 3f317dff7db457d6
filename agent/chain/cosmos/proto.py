"""A small, deterministic protobuf codec for the few Cosmos SDK messages a genesis ceremony needs.

Why by hand: the ceremony must produce the *exact* bytes the Go SDK (gogoproto) produces, because a gentx signature
covers `body_bytes` and `auth_info_bytes`, and the chain re-encodes the gentx's JSON when it verifies it at
InitChain. Generated Python code (google.protobuf) follows proto3 rules, which differ from gogoproto on the points
that matter here:

- fields marked `(gogoproto.nullable) = false` and `customtype` fields (`Dec`, `Int`) are *always* encoded, even when
  empty or zero (a `Description` with every string empty still costs two bytes);
- `Dec` travels on the wire as the integer string of the value times 10^18 (`0.1` -> `"100000000000000000"`) but in
  JSON as an 18-decimal string (`"0.100000000000000000"`);
- `Int` travels as its decimal string both ways.

So each message is a frozen dataclass whose fields carry a `FieldSpec` (number, kind, repeated, always), and one
encoder, one decoder and one proto-JSON converter walk those specs. Encoding emits fields in field-number order and
skips proto3 defaults unless the field is `always`, which is exactly gogoproto's `Marshal`. Decoding refuses unknown
fields, wrong wire types and duplicated singular fields (the SDK also rejects unknown fields in transactions), so a
decode followed by an encode either reproduces canonical bytes or fails loudly.

Proto-JSON follows the SDK's `ProtoMarshalJSON` (jsonpb with `OrigName` and `EmitDefaults`): snake_case names,
uint64 as strings, bytes as standard base64, enums by name, empty lists as `[]`, absent messages as `null`, an unset
oneof omitted, and `google.protobuf.Any` inlined as `{"@type": <type URL>, ...fields}`.

Messages covered: `google.protobuf.Any`, `cosmos.base.v1beta1.Coin`, `cosmos.crypto.{ed25519,secp256k1}.PubKey`,
`cosmos.staking.v1beta1.{Description,CommissionRates,MsgCreateValidator}` and `cosmos.tx.v1beta1.{TxBody,AuthInfo,
SignerInfo,ModeInfo,Fee,Tx,TxRaw,SignDoc}`; for signed transactions after genesis also `cosmos.gov.v1beta1.{MsgVote,
MsgSubmitProposal(Response)}`, `cosmos.upgrade.v1beta1.{Plan,SoftwareUpgradeProposal}`,
`cosmos.params.v1beta1.{ParamChange,ParameterChangeProposal}`, `cosmos.auth.v1beta1.{BaseAccount,QueryAccount*}` and
`cosmos.base.abci.v1beta1.{MsgData,TxMsgData}`. Another message is a dataclass away (the tests define `MsgSend` to check
the codec against cosmjs's published sign-bytes vectors).
"""

# ruff: noqa: RUF009 - `proto_field` returns a `dataclasses.field(...)`; ruff cannot see through the helper.

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Any as AnyType
from typing import ClassVar, TypeVar

M = TypeVar("M", bound="Message")

STRING = "string"
BYTES = "bytes"
UINT64 = "uint64"
INT64 = "int64"  # signed: a negative value is a ten-byte varint (two's complement), as Go writes it
ENUM = "enum"
MESSAGE = "message"
INT = "int"  # gogoproto customtype sdk.Int: a Python int, a decimal string on the wire and in JSON
DEC = "dec"  # gogoproto customtype sdk.Dec: a Python Decimal, 18 fixed decimals

DEC_PRECISION = 18
_WIRE_VARINT = 0
_WIRE_LEN = 2
_UINT64_MAX = 2**64 - 1


class ProtoError(ValueError):
    """Bytes or JSON that do not decode to the expected message; the message names the field path."""


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    number: int
    kind: str
    repeated: bool = False
    always: bool = False
    """gogoproto `nullable=false` / customtype: encoded even when empty or zero."""
    oneof: bool = False
    """Member of a oneof: omitted from JSON when unset (jsonpb does not emit unset oneofs)."""
    fork: bool = False
    """A field a chain's fork added (Sei's `Fee.gas_estimate`): accepted when read, omitted from JSON while it holds
    its default, so the JSON written for a stock SDK chain carries no field that chain does not know."""
    message: type[Message] | None = None
    enum: type[IntEnum] | None = None


def proto_field(
    number: int,
    kind: str,
    *,
    repeated: bool = False,
    always: bool = False,
    oneof: bool = False,
    fork: bool = False,
    message: type[Message] | None = None,
    enum: type[IntEnum] | None = None,
    default: int | None = None,
) -> AnyType:
    """A dataclass field carrying its protobuf description, with the proto3 default as the Python default (or
    `default` for an integer field whose Go zero value is another number, see `Timestamp`)."""
    spec = FieldSpec(number, kind, repeated, always or kind in (INT, DEC), oneof, fork, message, enum)
    metadata = {"proto": spec}
    if repeated:
        return dataclasses.field(default=(), metadata=metadata)
    if kind == MESSAGE:
        if always:
            assert message is not None
            return dataclasses.field(default_factory=message, metadata=metadata)
        return dataclasses.field(default=None, metadata=metadata)
    defaults: dict[str, object] = {STRING: "", BYTES: b"", UINT64: 0, INT64: 0, ENUM: 0, INT: 0, DEC: Decimal(0)}
    return dataclasses.field(default=defaults[kind] if default is None else default, metadata=metadata)


# --- wire primitives ---------------------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte varints; none of our fields has one, but be correct
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(data: bytes, offset: int, path: str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if offset >= len(data):
            raise ProtoError(f"{path}: truncated varint")
        byte = data[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result > _UINT64_MAX:
                raise ProtoError(f"{path}: varint overflows 64 bits")
            return result, offset
        shift += 7
        if shift >= 70:
            raise ProtoError(f"{path}: varint longer than 10 bytes")


def _tag(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, _WIRE_LEN) + encode_varint(len(payload)) + payload


# --- Dec helpers ---------------------------------------------------------------------------------------------------

_DEC_TEXT = re.compile(r"^-?(\d+)(\.\d+)?$")


def parse_dec(text: str) -> Decimal:
    """An sdk.Dec from its decimal text (`"0.1"`, `"0.100000000000000000"`); at most 18 decimals."""
    if not isinstance(text, str) or not _DEC_TEXT.match(text):
        raise ProtoError(f"{text!r} is not a decimal number")
    fraction = text.partition(".")[2]
    if len(fraction) > DEC_PRECISION:
        raise ProtoError(f"{text!r} has more than {DEC_PRECISION} decimal places")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ProtoError(f"{text!r} is not a decimal number") from None


def format_dec(value: Decimal) -> str:
    """The SDK's JSON form of a Dec: always 18 decimals (`0.100000000000000000`)."""
    return f"{value:.{DEC_PRECISION}f}"


def _dec_wire(value: Decimal) -> bytes:
    # Through text, not arithmetic: Decimal arithmetic rounds to the context's 28 digits, text is exact.
    if value.as_tuple().exponent < -DEC_PRECISION:  # type: ignore[operator]
        raise ProtoError(f"{value} has more than {DEC_PRECISION} decimal places")
    return str(int(format_dec(value).replace(".", ""))).encode()


def _dec_from_wire(text: str, path: str) -> Decimal:
    if not re.fullmatch(r"-?\d+", text):
        raise ProtoError(f"{path}: {text!r} is not a Dec's integer encoding")
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    digits = digits.rjust(DEC_PRECISION + 1, "0")
    return Decimal(f"{sign}{digits[:-DEC_PRECISION]}.{digits[-DEC_PRECISION:]}")


def _int_from_text(text: object, path: str) -> int:
    if not isinstance(text, str) or not re.fullmatch(r"-?\d+", text):
        raise ProtoError(f"{path}: {text!r} is not an integer string")
    return int(text)


# --- the message base ----------------------------------------------------------------------------------------------


class Message:
    """Base of the dataclass messages; subclasses are `@dataclasses.dataclass(frozen=True)` with `proto_field`s."""

    TYPE_URL: ClassVar[str] = ""

    @classmethod
    @functools.cache
    def field_specs(cls) -> tuple[tuple[str, FieldSpec], ...]:
        specs = [(field.name, field.metadata["proto"]) for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
        return tuple(sorted(specs, key=lambda item: item[1].number))

    # binary --------------------------------------------------------------------------------------------------------

    def encode(self) -> bytes:
        """gogoproto-identical bytes: field-number order, defaults skipped unless the field is `always`."""
        out = bytearray()
        for name, spec in self.field_specs():
            value = getattr(self, name)
            for item in value if spec.repeated else (value,):
                out += _encode_value(spec, item, spec.repeated)
        return bytes(out)

    @classmethod
    def decode(cls: type[M], data: bytes, path: str = "") -> M:
        """Parse `data`; unknown fields, wrong wire types and repeated singular fields are `ProtoError`s."""
        path = path or cls.__name__
        specs = {spec.number: (name, spec) for name, spec in cls.field_specs()}
        values: dict[str, AnyType] = {}
        offset = 0
        while offset < len(data):
            key, offset = _read_varint(data, offset, path)
            number, wire_type = key >> 3, key & 7
            if number not in specs:
                raise ProtoError(f"{path}: unknown field number {number}")
            name, spec = specs[number]
            field_path = f"{path}.{name}"
            expected = _WIRE_VARINT if spec.kind in (UINT64, INT64, ENUM) else _WIRE_LEN
            if wire_type != expected:
                raise ProtoError(f"{field_path}: wire type {wire_type}, expected {expected}")
            if wire_type == _WIRE_VARINT:
                raw_int, offset = _read_varint(data, offset, field_path)
                if spec.kind == INT64 and raw_int >= 1 << 63:
                    raw_int -= 1 << 64
                value: AnyType = _enum_value(spec, raw_int, field_path) if spec.kind == ENUM else raw_int
            else:
                length, offset = _read_varint(data, offset, field_path)
                if offset + length > len(data):
                    raise ProtoError(f"{field_path}: length {length} runs past the end of the message")
                value = _decode_payload(spec, data[offset : offset + length], field_path)
                offset += length
            if spec.repeated:
                values.setdefault(name, []).append(value)
            elif name in values:
                raise ProtoError(f"{field_path}: singular field appears more than once")
            else:
                values[name] = value
        return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in values.items()})

    # proto-JSON ----------------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, AnyType]:
        """The SDK's proto-JSON object (jsonpb, OrigName, EmitDefaults)."""
        out: dict[str, AnyType] = {}
        for name, spec in self.field_specs():
            value = getattr(self, name)
            if spec.oneof and value is None:
                continue
            if spec.fork and not value:
                continue
            if spec.repeated:
                out[name] = [_value_to_json(spec, item) for item in value]
            else:
                out[name] = _value_to_json(spec, value)
        return out

    @classmethod
    def from_json(cls: type[M], obj: object, path: str = "") -> M:
        """Parse a proto-JSON object; unknown keys and values of the wrong type are `ProtoError`s naming the path."""
        path = path or cls.__name__
        if not isinstance(obj, dict):
            raise ProtoError(f"{path}: expected an object, got {type(obj).__name__}")
        specs = dict(cls.field_specs())
        unknown = sorted(set(obj) - set(specs))
        if unknown:
            raise ProtoError(f"{path}: unknown field {unknown[0]!r}")
        values: dict[str, AnyType] = {}
        for name, raw in obj.items():
            spec = specs[name]
            field_path = f"{path}.{name}"
            if raw is None:
                if spec.kind == MESSAGE and not spec.repeated and not spec.always:
                    continue  # an absent message
                raise ProtoError(f"{field_path}: null is not allowed here")
            if spec.repeated:
                if not isinstance(raw, list):
                    raise ProtoError(f"{field_path}: expected a list")
                values[name] = tuple(_value_from_json(spec, item, f"{field_path}[{i}]") for i, item in enumerate(raw))
            else:
                values[name] = _value_from_json(spec, raw, field_path)
        return cls(**values)


def _encode_value(spec: FieldSpec, value: AnyType, in_list: bool) -> bytes:
    kind = spec.kind
    if kind == MESSAGE:
        if value is None:
            return b""
        return _length_delimited(spec.number, value.encode())
    if kind in (UINT64, INT64, ENUM):
        number = int(value)
        return _tag(spec.number, _WIRE_VARINT) + encode_varint(number) if number or in_list else b""
    if kind == STRING:
        return _length_delimited(spec.number, value.encode()) if value or in_list or spec.always else b""
    if kind == BYTES:
        return _length_delimited(spec.number, bytes(value)) if value or in_list or spec.always else b""
    if kind == INT:
        return _length_delimited(spec.number, str(int(value)).encode())
    if kind == DEC:
        return _length_delimited(spec.number, _dec_wire(value))
    raise AssertionError(f"unknown field kind {kind}")


def _decode_payload(spec: FieldSpec, payload: bytes, path: str) -> AnyType:
    if spec.kind == MESSAGE:
        assert spec.message is not None
        return spec.message.decode(payload, path)
    if spec.kind == BYTES:
        return payload
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtoError(f"{path}: not valid UTF-8") from None
    if spec.kind == STRING:
        return text
    if spec.kind == INT:
        return _int_from_text(text, path)
    if spec.kind == DEC:
        return _dec_from_wire(text, path)
    raise ProtoError(f"{path}: a {spec.kind} field cannot be length-delimited")


def _enum_value(spec: FieldSpec, number: int, path: str) -> IntEnum:
    assert spec.enum is not None
    try:
        return spec.enum(number)
    except ValueError:
        raise ProtoError(f"{path}: {number} is not a known {spec.enum.__name__}") from None


def _value_to_json(spec: FieldSpec, value: AnyType) -> AnyType:
    kind = spec.kind
    if kind == MESSAGE:
        return None if value is None else value.to_json()
    if kind == BYTES:
        return base64.b64encode(value).decode()
    if kind in (UINT64, INT64, INT):
        return str(int(value))
    if kind == ENUM:
        assert spec.enum is not None
        return spec.enum(value).name
    if kind == DEC:
        return format_dec(value)
    return value


def _value_from_json(spec: FieldSpec, raw: object, path: str) -> AnyType:
    kind = spec.kind
    if kind == MESSAGE:
        assert spec.message is not None
        return spec.message.from_json(raw, path)
    if kind == STRING:
        if not isinstance(raw, str):
            raise ProtoError(f"{path}: expected a string")
        return raw
    if kind == BYTES:
        if not isinstance(raw, str):
            raise ProtoError(f"{path}: expected base64 text")
        try:
            return base64.b64decode(raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ProtoError(f"{path}: {raw!r} is not base64") from None
    if kind in (UINT64, INT64):
        number = raw if isinstance(raw, int) and not isinstance(raw, bool) else _int_from_text(raw, path)
        low, high = (0, _UINT64_MAX) if kind == UINT64 else (-(1 << 63), (1 << 63) - 1)
        if not low <= number <= high:
            raise ProtoError(f"{path}: {number} is outside {kind}")
        return number
    if kind == ENUM:
        assert spec.enum is not None
        if isinstance(raw, str) and raw in spec.enum.__members__:
            return spec.enum[raw]
        if isinstance(raw, int) and not isinstance(raw, bool):
            return _enum_value(spec, raw, path)
        raise ProtoError(f"{path}: {raw!r} is not a {spec.enum.__name__}")
    if kind == INT:
        return _int_from_text(raw, path)
    if kind == DEC:
        try:
            return parse_dec(raw)  # type: ignore[arg-type]
        except ProtoError as error:
            raise ProtoError(f"{path}: {error}") from None
    raise AssertionError(f"unknown field kind {kind}")


# --- google.protobuf.Any and the type registry ---------------------------------------------------------------------

_REGISTRY: dict[str, type[Message]] = {}


def registered(type_url: str) -> Callable[[type[M]], type[M]]:
    """Class decorator: make a message packable into `Any` under `type_url` (and decodable from proto-JSON)."""

    def register(cls: type[M]) -> type[M]:
        cls.TYPE_URL = type_url
        _REGISTRY[type_url] = cls
        return cls

    return register


def registered_types() -> Iterator[str]:
    return iter(sorted(_REGISTRY))


@dataclasses.dataclass(frozen=True)
class Any(Message):
    """`google.protobuf.Any`. In proto-JSON it is the packed message's fields plus `"@type"`."""

    type_url: str = proto_field(1, STRING)
    value: bytes = proto_field(2, BYTES)

    @classmethod
    def pack(cls, message: Message) -> Any:
        if not message.TYPE_URL:
            raise ProtoError(f"{type(message).__name__} has no registered type URL")
        return cls(message.TYPE_URL, message.encode())

    def unpack(self, path: str = "Any") -> Message:
        message_type = _REGISTRY.get(self.type_url)
        if message_type is None:
            raise ProtoError(f"{path}: unsupported type {self.type_url!r}")
        return message_type.decode(self.value, f"{path}<{self.type_url}>")

    def to_json(self) -> dict[str, AnyType]:
        return {"@type": self.type_url, **self.unpack().to_json()}

    @classmethod
    def from_json(cls, obj: object, path: str = "") -> Any:
        path = path or "Any"
        if not isinstance(obj, dict) or not isinstance(obj.get("@type"), str):
            raise ProtoError(f'{path}: expected an object with an "@type"')
        type_url = obj["@type"]
        message_type = _REGISTRY.get(type_url)
        if message_type is None:
            raise ProtoError(f"{path}: unsupported type {type_url!r}")
        fields = {key: value for key, value in obj.items() if key != "@type"}
        return cls(type_url, message_type.from_json(fields, f"{path}<{type_url}>").encode())


# --- cosmos messages -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Coin(Message):
    denom: str = proto_field(1, STRING)
    amount: int = proto_field(2, INT)


@registered("/cosmos.crypto.ed25519.PubKey")
@dataclasses.dataclass(frozen=True)
class Ed25519PubKey(Message):
    key: bytes = proto_field(1, BYTES)


@registered("/cosmos.crypto.secp256k1.PubKey")
@dataclasses.dataclass(frozen=True)
class Secp256k1PubKey(Message):
    key: bytes = proto_field(1, BYTES)


@dataclasses.dataclass(frozen=True)
class Description(Message):
    moniker: str = proto_field(1, STRING)
    identity: str = proto_field(2, STRING)
    website: str = proto_field(3, STRING)
    security_contact: str = proto_field(4, STRING)
    details: str = proto_field(5, STRING)


@dataclasses.dataclass(frozen=True)
class CommissionRates(Message):
    rate: Decimal = proto_field(1, DEC)
    max_rate: Decimal = proto_field(2, DEC)
    max_change_rate: Decimal = proto_field(3, DEC)


@registered("/cosmos.staking.v1beta1.MsgCreateValidator")
@dataclasses.dataclass(frozen=True)
class MsgCreateValidator(Message):
    description: Description = proto_field(1, MESSAGE, message=Description, always=True)
    commission: CommissionRates = proto_field(2, MESSAGE, message=CommissionRates, always=True)
    min_self_delegation: int = proto_field(3, INT)
    delegator_address: str = proto_field(4, STRING)
    validator_address: str = proto_field(5, STRING)
    pubkey: Any | None = proto_field(6, MESSAGE, message=Any)
    value: Coin = proto_field(7, MESSAGE, message=Coin, always=True)


class SignMode(IntEnum):
    SIGN_MODE_UNSPECIFIED = 0
    SIGN_MODE_DIRECT = 1
    SIGN_MODE_TEXTUAL = 2
    SIGN_MODE_LEGACY_AMINO_JSON = 127


@dataclasses.dataclass(frozen=True)
class ModeInfoSingle(Message):
    mode: SignMode = proto_field(1, ENUM, enum=SignMode)


@dataclasses.dataclass(frozen=True)
class ModeInfo(Message):
    """`oneof sum { Single single = 1; Multi multi = 2; }`; multisig signers are not supported (no field 2)."""

    single: ModeInfoSingle | None = proto_field(1, MESSAGE, message=ModeInfoSingle, oneof=True)


@dataclasses.dataclass(frozen=True)
class SignerInfo(Message):
    public_key: Any | None = proto_field(1, MESSAGE, message=Any)
    mode_info: ModeInfo | None = proto_field(2, MESSAGE, message=ModeInfo)
    sequence: int = proto_field(3, UINT64)


@dataclasses.dataclass(frozen=True)
class Fee(Message):
    amount: tuple[Coin, ...] = proto_field(1, MESSAGE, message=Coin, repeated=True)
    gas_limit: int = proto_field(2, UINT64)
    payer: str = proto_field(3, STRING)
    granter: str = proto_field(4, STRING)
    gas_estimate: int = proto_field(5, UINT64, fork=True)
    """Sei's fork: the estimated gas (`seid gentx` writes `"gas_estimate": "0"`). Zero is not encoded, so the signed
    bytes of a gentx with a zero estimate are those of the stock SDK."""


@dataclasses.dataclass(frozen=True)
class AuthInfo(Message):
    signer_infos: tuple[SignerInfo, ...] = proto_field(1, MESSAGE, message=SignerInfo, repeated=True)
    fee: Fee | None = proto_field(2, MESSAGE, message=Fee)


@dataclasses.dataclass(frozen=True)
class TxBody(Message):
    messages: tuple[Any, ...] = proto_field(1, MESSAGE, message=Any, repeated=True)
    memo: str = proto_field(2, STRING)
    timeout_height: int = proto_field(3, UINT64)
    extension_options: tuple[Any, ...] = proto_field(1023, MESSAGE, message=Any, repeated=True)
    non_critical_extension_options: tuple[Any, ...] = proto_field(2047, MESSAGE, message=Any, repeated=True)


@dataclasses.dataclass(frozen=True)
class Tx(Message):
    """The decoded transaction, as a gentx file holds it (in proto-JSON)."""

    body: TxBody | None = proto_field(1, MESSAGE, message=TxBody)
    auth_info: AuthInfo | None = proto_field(2, MESSAGE, message=AuthInfo)
    signatures: tuple[bytes, ...] = proto_field(3, BYTES, repeated=True)


@dataclasses.dataclass(frozen=True)
class TxRaw(Message):
    """What is broadcast and signed over: the body and auth info as the exact bytes the signer saw."""

    body_bytes: bytes = proto_field(1, BYTES)
    auth_info_bytes: bytes = proto_field(2, BYTES)
    signatures: tuple[bytes, ...] = proto_field(3, BYTES, repeated=True)


@dataclasses.dataclass(frozen=True)
class SignDoc(Message):
    """SIGN_MODE_DIRECT: the signer signs SHA-256 of this message's encoding."""

    body_bytes: bytes = proto_field(1, BYTES)
    auth_info_bytes: bytes = proto_field(2, BYTES)
    chain_id: str = proto_field(3, STRING)
    account_number: int = proto_field(4, UINT64)


# --- transactions after genesis: governance messages and the queries signing needs -------------------------------
# Field numbers from cosmos-sdk v0.45 (x/gov v1beta1, x/upgrade, x/params, x/auth, types/abci.proto). Sei's fork adds
# `is_expedited` to proposals; it is left out here (false is the proto3 default and is not encoded either way).


class VoteOption(IntEnum):
    VOTE_OPTION_UNSPECIFIED = 0
    VOTE_OPTION_YES = 1
    VOTE_OPTION_ABSTAIN = 2
    VOTE_OPTION_NO = 3
    VOTE_OPTION_NO_WITH_VETO = 4


@registered("/cosmos.gov.v1beta1.MsgVote")
@dataclasses.dataclass(frozen=True)
class MsgVote(Message):
    proposal_id: int = proto_field(1, UINT64)
    voter: str = proto_field(2, STRING)
    option: VoteOption = proto_field(3, ENUM, enum=VoteOption)


@registered("/cosmos.gov.v1beta1.MsgSubmitProposal")
@dataclasses.dataclass(frozen=True)
class MsgSubmitProposal(Message):
    content: Any | None = proto_field(1, MESSAGE, message=Any)
    initial_deposit: tuple[Coin, ...] = proto_field(2, MESSAGE, message=Coin, repeated=True)
    proposer: str = proto_field(3, STRING)


@dataclasses.dataclass(frozen=True)
class MsgSubmitProposalResponse(Message):
    proposal_id: int = proto_field(1, UINT64)


GO_ZERO_TIME_SECONDS = -62135596800
"""Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: what gogoproto's stdtime writes for it."""


@dataclasses.dataclass(frozen=True)
class Timestamp(Message):
    """`google.protobuf.Timestamp` as a gogoproto `stdtime` field carries a Go `time.Time`; the default is Go's zero
    time (not the Unix epoch), because that is what an unset non-nullable `time.Time` holds."""

    seconds: int = proto_field(1, INT64, default=GO_ZERO_TIME_SECONDS)
    nanos: int = proto_field(2, INT64)


@dataclasses.dataclass(frozen=True)
class Plan(Message):
    """`cosmos.upgrade.v1beta1.Plan`. Field 2 (`time`) is deprecated and non-nullable (`stdtime`,
    `nullable=false`): gogoproto always writes it, the zero time included (13 bytes with its tag), and a chain that
    re-encodes the body to compare sizes (seid: "tx body wire size does not match canonical size") refuses a body
    without it. The SDK refuses a plan whose time is not zero, so it always holds Go's zero time. Field 5 (IBC client
    state) is not supported."""

    name: str = proto_field(1, STRING)
    time: Timestamp = proto_field(2, MESSAGE, message=Timestamp, always=True)
    height: int = proto_field(3, UINT64)  # int64 on the wire; only positive heights are valid
    info: str = proto_field(4, STRING)


@registered("/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal")
@dataclasses.dataclass(frozen=True)
class SoftwareUpgradeProposal(Message):
    title: str = proto_field(1, STRING)
    description: str = proto_field(2, STRING)
    plan: Plan = proto_field(3, MESSAGE, message=Plan, always=True)


@dataclasses.dataclass(frozen=True)
class ParamChange(Message):
    subspace: str = proto_field(1, STRING)
    key: str = proto_field(2, STRING)
    value: str = proto_field(3, STRING)


@registered("/cosmos.params.v1beta1.ParameterChangeProposal")
@dataclasses.dataclass(frozen=True)
class ParameterChangeProposal(Message):
    title: str = proto_field(1, STRING)
    description: str = proto_field(2, STRING)
    changes: tuple[ParamChange, ...] = proto_field(3, MESSAGE, message=ParamChange, repeated=True)


@registered("/cosmos.auth.v1beta1.BaseAccount")
@dataclasses.dataclass(frozen=True)
class BaseAccount(Message):
    address: str = proto_field(1, STRING)
    pub_key: Any | None = proto_field(2, MESSAGE, message=Any)
    account_number: int = proto_field(3, UINT64)
    sequence: int = proto_field(4, UINT64)


@dataclasses.dataclass(frozen=True)
class QueryAccountRequest(Message):
    address: str = proto_field(1, STRING)


@dataclasses.dataclass(frozen=True)
class QueryAccountResponse(Message):
    account: Any | None = proto_field(1, MESSAGE, message=Any)


@dataclasses.dataclass(frozen=True)
class MsgData(Message):
    msg_type: str = proto_field(1, STRING)
    data: bytes = proto_field(2, BYTES)


@dataclasses.dataclass(frozen=True)
class TxMsgData(Message):
    """What a committed transaction's `tx_result.data` holds: one `MsgData` per message, in order."""

    data: tuple[MsgData, ...] = proto_field(1, MESSAGE, message=MsgData, repeated=True)

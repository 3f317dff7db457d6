"""Node identity keys: the Ed25519 node key and validator (consensus) key files of a CometBFT / sei-tendermint home.

File formats (sei-tendermint v0.35 lineage, byte-compatible with what `seid init` writes):

- `config/node_key.json`, mode 0600, compact JSON, no trailing newline:
  `{"id":"<node ID>","priv_key":{"type":"tendermint/PrivKeyEd25519","value":"<base64 of seed || public key>"}}`.
  The `id` field is written because the genesis assembler reads it; CometBFT 0.38 files omit it and are accepted.
- `config/priv_validator_key.json`, mode 0600, 2-space indented: `address`, `pub_key`, `priv_key`.
- `data/priv_validator_state.json`, mode 0600, 2-space indented: `{"height": "0", "round": 0, "step": 0}`.

Node ID = lowercase hex of SHA-256(public key)[:20]; validator address = the same 20 bytes in UPPERCASE hex.

Rules that protect a validator worth real money:
- Key files are written with `write_once`: an existing key is never replaced, not even a corrupt one (loading it
  fails with a `TaskError` naming the file, and the file is left as it is).
- Loading validates everything: 64-byte value, public half derived from the 32-byte private seed, `id` / `address`
  / `pub_key` consistent with the key. A node ID is always derived from the key bytes, never taken from the `id` field.
- `priv_validator_state.json` is never overwritten, and is never created next to a validator key that already exists
  (a fresh height-0 state for a key that may have signed removes double-sign protection). A new validator gets its
  state file *before* its key, so a run interrupted between the two completes on the next run.
- Private key bytes never appear in `repr`, `str` or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.io.files import write_once
from agent.models import TaskError

if TYPE_CHECKING:  # cryptography is imported when a key is made or read: an idle agent does not carry it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "PRIV_KEY_TYPE",
    "PUB_KEY_TYPE",
    "Ed25519Key",
    "consensus_public_key",
    "ensure_node_key",
    "ensure_validator_key",
    "load_node_key",
    "load_validator_key",
    "load_validator_state",
    "node_id",
    "node_id_from_file",
    "node_key_path",
    "validator_address",
    "validator_key_path",
    "validator_state_path",
]

PRIV_KEY_TYPE = "tendermint/PrivKeyEd25519"
PUB_KEY_TYPE = "tendermint/PubKeyEd25519"
KEY_FILE_MODE = 0o600
_SEED_SIZE = 32
_PUBLIC_SIZE = 32
_VALUE_SIZE = _SEED_SIZE + _PUBLIC_SIZE
_INITIAL_STATE = {"height": "0", "round": 0, "step": 0}
_RESTORE_HINT = "the file was left untouched; restore it from a backup, or move it away deliberately to get a new key"


def node_key_path(home: Path) -> Path:
    return home / "config" / "node_key.json"


def validator_key_path(home: Path) -> Path:
    return home / "config" / "priv_validator_key.json"


def validator_state_path(home: Path) -> Path:
    return home / "data" / "priv_validator_state.json"


def _key_hash(public_key: bytes) -> bytes:
    if len(public_key) != _PUBLIC_SIZE:
        raise ValueError(f"an Ed25519 public key is {_PUBLIC_SIZE} bytes, not {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:20]


def node_id(public_key: bytes) -> str:
    """The CometBFT node ID of an Ed25519 public key: lowercase hex of SHA-256(key)[:20] (40 characters)."""
    return _key_hash(public_key).hex()


def validator_address(public_key: bytes) -> str:
    """The validator (consensus) address of an Ed25519 public key: UPPERCASE hex of SHA-256(key)[:20]."""
    return _key_hash(public_key).hex().upper()


class Ed25519Key:
    """An Ed25519 key pair as Tendermint stores it. Only public material is visible: `repr` shows the node ID."""

    __slots__ = ("_private", "public_key")

    def __init__(self, private: Ed25519PrivateKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        """The 32-byte public key."""

    @classmethod
    def generate(cls) -> Ed25519Key:
        """A new key from the operating system's CSPRNG."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_tendermint_value(cls, value: object, *, source: str) -> Ed25519Key:
        """Parse a `priv_key.value` (base64 of the 32-byte seed followed by the 32-byte public key).

        Raises TaskError naming `source` (a file and field) when the value is not base64, not 64 bytes, or its public
        half is not the public key of its seed. The message never contains the value.
        """
        if not isinstance(value, str):
            raise TaskError(f"{source}: must be a base64 string")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise TaskError(f"{source}: not valid base64", hint=_RESTORE_HINT) from None
        if len(raw) != _VALUE_SIZE:
            raise TaskError(
                f"{source}: decodes to {len(raw)} bytes, expected {_VALUE_SIZE} (32-byte seed + 32-byte public key)",
                hint=_RESTORE_HINT,
            )
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = cls(Ed25519PrivateKey.from_private_bytes(raw[:_SEED_SIZE]))
        if key.public_key != raw[_SEED_SIZE:]:
            raise TaskError(f"{source}: the public half does not belong to the private seed", hint=_RESTORE_HINT)
        return key

    @property
    def public_key_base64(self) -> str:
        return base64.b64encode(self.public_key).decode("ascii")

    @property
    def node_id(self) -> str:
        return node_id(self.public_key)

    @property
    def address(self) -> str:
        return validator_address(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature of `message` (64 bytes)."""
        return self._private.sign(message)

    def _tendermint_value(self) -> str:
        """base64(seed || public key): the private `priv_key.value`. Used only to write the key file."""
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        seed = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return base64.b64encode(seed + self.public_key).decode("ascii")

    def node_key_json(self) -> str:
        """The exact `node_key.json` content (compact, with `id`). Contains the private key: write it, never log it."""
        document = {"id": self.node_id, "priv_key": {"type": PRIV_KEY_TYPE, "value": self._tendermint_value()}}
        return json.dumps(document, separators=(",", ":"))

    def validator_key_json(self) -> str:
        """The exact `priv_validator_key.json` content (2-space indent). Contains the private key."""
        document = {
            "address": self.address,
            "pub_key": {"type": PUB_KEY_TYPE, "value": self.public_key_base64},
            "priv_key": {"type": PRIV_KEY_TYPE, "value": self._tendermint_value()},
        }
        return json.dumps(document, indent=2)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ed25519Key) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"Ed25519Key(node_id={self.node_id!r}, public_key={self.public_key_base64!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would copy the private key into whatever stores the pickle (a task row, a cache); refuse.
        raise TypeError("Ed25519Key holds a private key and cannot be pickled")


# --- loading ------------------------------------------------------------------------------------------------------


def _load_json_object(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TaskError(
            f"{path}: cannot read: {getattr(error, 'strerror', None) or error}", hint=_RESTORE_HINT
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        # The decoder's message gives a position only, never the file's content.
        raise TaskError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})", hint=_RESTORE_HINT) from None
    if not isinstance(document, dict):
        raise TaskError(f"{path}: expected a JSON object", hint=_RESTORE_HINT)
    return document


def _typed_key(document: dict[str, Any], field: str, expected_type: str, path: Path) -> object:
    entry = document.get(field)
    if not isinstance(entry, dict):
        raise TaskError(f"{path}: {field} is missing or not an object", hint=_RESTORE_HINT)
    if entry.get("type") != expected_type:
        raise TaskError(
            f"{path}: {field}.type is {entry.get('type')!r}, expected {expected_type!r} (only Ed25519 is supported)",
            hint=_RESTORE_HINT,
        )
    return entry.get("value")


def load_node_key(path: Path) -> Ed25519Key:
    """Load and validate `node_key.json`: an Ed25519 key whose `id`, when present, matches the key."""
    document = _load_json_object(path)
    key = Ed25519Key.from_tendermint_value(
        _typed_key(document, "priv_key", PRIV_KEY_TYPE, path), source=f"{path}: priv_key.value"
    )
    recorded = document.get("id")
    if recorded is not None and recorded != key.node_id:
        raise TaskError(f"{path}: id {recorded!r} does not match the key's node ID {key.node_id!r}", hint=_RESTORE_HINT)
    return key


def node_id_from_file(path: Path) -> str:
    """This node's ID, derived from the key bytes of `node_key.json` (a wrong `id` field is an error, not trusted)."""
    return load_node_key(path).node_id


def load_validator_key(path: Path) -> Ed25519Key:
    """Load and validate `priv_validator_key.json`: `address` and `pub_key` must both belong to `priv_key`."""
    document = _load_json_object(path)
    key = Ed25519Key.from_tendermint_value(
        _typed_key(document, "priv_key", PRIV_KEY_TYPE, path), source=f"{path}: priv_key.value"
    )
    if _typed_key(document, "pub_key", PUB_KEY_TYPE, path) != key.public_key_base64:
        raise TaskError(f"{path}: pub_key.value is not the public key of priv_key", hint=_RESTORE_HINT)
    if document.get("address") != key.address:
        raise TaskError(
            f"{path}: address {document.get('address')!r} does not match the key's address {key.address!r}",
            hint=_RESTORE_HINT,
        )
    return key


def consensus_public_key(home: Path) -> bytes:
    """The 32-byte Ed25519 consensus public key of the validator in `home` (for a gentx's `MsgCreateValidator`)."""
    return load_validator_key(validator_key_path(home)).public_key


def load_validator_state(path: Path) -> dict[str, Any]:
    """Load and validate `priv_validator_state.json` (`height` a decimal string, `round` and `step` integers)."""
    state = _load_json_object(path)
    height, round_, step = state.get("height"), state.get("round"), state.get("step")
    if not (isinstance(height, str) and height.isdigit()):
        raise TaskError(f"{path}: height must be a decimal string, got {height!r}", hint=_RESTORE_HINT)
    for name, value in (("round", round_), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TaskError(f"{path}: {name} must be a non-negative integer, got {value!r}", hint=_RESTORE_HINT)
    return state


# --- creating -----------------------------------------------------------------------------------------------------


def _present(path: Path) -> bool:
    # A dangling symlink counts as present: write_once would refuse it, and it is not ours to replace.
    return path.exists() or path.is_symlink()


def ensure_node_key(path: Path) -> tuple[Ed25519Key, bool]:
    """The node key at `path`, generated and written once (mode 0600) when absent. Returns (key, created).

    An existing file is loaded and validated, never replaced: a corrupt one raises TaskError naming it.
    """
    if not _present(path):
        key = Ed25519Key.generate()
        if write_once(path, key.node_key_json(), mode=KEY_FILE_MODE):
            return key, True
    return load_node_key(path), False


def ensure_validator_key(key_path: Path, state_path: Path) -> tuple[Ed25519Key, bool]:
    """The validator key at `key_path` with its signing state at `state_path`, created when absent.

    Returns (key, created). The state file is validated when it exists and never overwritten. For a new key the
    state `{"height":"0","round":0,"step":0}` is written first and the key second, so an interrupted run completes
    on the next. An existing key without a state file is refused: inventing a height-0 state for a key that may
    already have signed would allow a double sign.
    """
    key_present, state_present = _present(key_path), _present(state_path)
    if key_present and not state_present:
        raise TaskError(
            f"{state_path} is missing while {key_path} exists; refusing to create a height-0 signing state for an "
            "existing validator key (double-sign risk)",
            hint="copy priv_validator_state.json from this validator's previous home; create it by hand only if "
            "the key has never signed",
        )
    if state_present:
        load_validator_state(state_path)
    else:
        write_once(state_path, json.dumps(_INITIAL_STATE, indent=2), mode=KEY_FILE_MODE)
    if not key_present:
        key = Ed25519Key.generate()
        if write_once(key_path, key.validator_key_json(), mode=KEY_FILE_MODE):
            return key, True
    return load_validator_key(key_path), False

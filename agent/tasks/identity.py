"""`generate-identity`: give a node its keys, its moniker and a minimal genesis, like `seid init`, replacing nothing.

First every file the task would keep is validated (existing keys and signing state, the chain of an existing
genesis), so a corrupt key or a genesis for another chain fails the task before anything is written. Then these
steps, each idempotent, so a run interrupted anywhere completes on the next:
1. create `config/` and `data/`;
2. validator signing state, validator key, node key, each written once (`agent.chain.keys`): an existing key is
   loaded, never replaced; an existing validator key without its signing state is refused (double-sign risk);
3. `config/config.toml`: when absent, a minimal commented default (with `mode` at top level, where seid reads
   it); then `moniker` is merge-patched in. The file is never rewritten from a template, so peers, state-sync
   settings and comments survive;
4. `config/genesis.json`: when absent, a minimal genesis for `chainId` with sei-tendermint's default consensus
   params; when present it is kept, but one for a different chain fails the task;
5. the `identity` done-marker, last.

With the marker present the task only verifies: it loads both keys (validating them), checks an existing genesis is
for `chainId`, and returns the identity. It does not re-apply the moniker, because a later config-patch or
config-apply may have changed config.toml on purpose.

The result holds public values only: node ID, validator address and consensus public key.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from agent.chain.keys import (
    Ed25519Key,
    ensure_node_key,
    ensure_validator_key,
    load_node_key,
    load_validator_key,
    load_validator_state,
    node_key_path,
    validator_key_path,
    validator_state_path,
)
from agent.io.files import has_marker, write_marker, write_once
from agent.io.toml import patch_toml_file
from agent.models import TaskError, TaskType
from agent.models.params.base import CHAIN_ID_MAX_LENGTH, ChainId, TaskParams

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---

MONIKER_MAX_LENGTH = 70
"""The Cosmos SDK's `MaxMonikerLength` for a validator description; a longer moniker cannot go into a gentx."""


class GenerateIdentityParams(TaskParams):
    """`generate-identity`: the chain this node's minimal genesis is for, and the node's moniker."""

    chain_id: ChainId = Field(description=f"Chain ID: 1-{CHAIN_ID_MAX_LENGTH} characters of A-Z a-z 0-9 _ . -")
    moniker: str = Field(description="Human-readable node name written to config.toml (1-70 printable characters).")

    @field_validator("chain_id")
    @classmethod
    def _chain_id_required(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("moniker")
    @classmethod
    def _moniker_printable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if value != value.strip():
            raise ValueError(f"{value!r} has leading or trailing whitespace")
        if len(value) > MONIKER_MAX_LENGTH:
            raise ValueError(f"is {len(value)} characters, at most {MONIKER_MAX_LENGTH} allowed")
        if not value.isprintable():
            raise ValueError(f"{value!r} contains control characters")
        return value


IDENTITY_MARKER = "identity"
PUBLIC_FILE_MODE = 0o644

DEFAULT_CONFIG_TOML = """\
# config.toml written by nodetask-agent because none existed (seid init's file, reduced to what the agent manages).
# seid uses its built-in default for every key that is not set here. config-patch and config-apply edit this file
# in place and keep these comments. Keys use sei-tendermint's hyphenated spelling.

# A custom human readable name for this node
moniker = ""

# Mode of Node: full | validator | seed
mode = "full"

#######################################################
###           P2P Configuration Options             ###
#######################################################
[p2p]

# Address to listen for incoming connections
laddr = "tcp://0.0.0.0:26656"

# Comma separated list of nodes to keep persistent connections to (id@host:port)
persistent-peers = ""

#######################################################
###         State Sync Configuration Options        ###
#######################################################
[statesync]

# State sync rapidly bootstraps a new node by discovering, fetching, and restoring a state machine snapshot
enable = false

# RPC servers (comma-separated) for light client verification of the synced state machine
rpc-servers = ""

# Trusted height and hash of a block, obtained from a trusted source
trust-height = 0
trust-hash = ""

#######################################################
###         Consensus Configuration Options         ###
#######################################################
[consensus]

# How long to wait after committing a block, before starting on the new height
timeout-commit = "5s"

#######################################################
###          Mempool Configuration Options          ###
#######################################################
[mempool]

# Maximum number of transactions in the mempool
size = 5000
"""

# sei-tendermint's DefaultConsensusParams (sei-chain, sei-tendermint/types/params.go), in Tendermint's JSON form:
# 64-bit integers and durations (nanoseconds) as strings. These are what `seid init` writes.
DEFAULT_CONSENSUS_PARAMS: dict[str, Any] = {
    "block": {"max_bytes": "22020096", "max_gas": "100000000", "min_txs_in_block": "10", "max_gas_wanted": "50000000"},
    "evidence": {"max_age_num_blocks": "100000", "max_age_duration": "172800000000000", "max_bytes": "1048576"},
    "validator": {"pub_key_types": ["ed25519"]},
    "version": {"app_version": "0"},
    "synchrony": {"precision": "505000000", "message_delay": "12000000000"},
    "timeout": {
        "propose": "1000000000",
        "propose_delta": "500000000",
        "vote": "50000000",
        "vote_delta": "500000000",
        "commit": "50000000",
        "bypass_commit_timeout": False,
    },
    "abci": {"vote_extensions_enable_height": "0", "recheck_tx": False},
}

# A JSON string or structural token; everything else (numbers, literals, whitespace) is skipped.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')
_GENESIS_HEAD = 1 << 20


def go_rfc3339nano(moment: datetime) -> str:
    """`2026-04-01T10:20:30.5Z`: Go's RFC3339Nano in UTC (trailing zeros of the fraction trimmed), as genesis uses."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def minimal_genesis(chain_id: str, now: datetime) -> str:
    """The genesis `seid init` writes before the ceremony: no validators, empty app_state (2-space indented)."""
    document = {
        "genesis_time": go_rfc3339nano(now),
        "chain_id": chain_id,
        "initial_height": "1",
        "consensus_params": DEFAULT_CONSENSUS_PARAMS,
        "app_hash": "",
        "app_state": {},
    }
    return json.dumps(document, indent=2)


def _top_level_string(text: str, key: str) -> str | None:
    """The string value of `key` in the outermost JSON object of `text`, found without parsing the rest."""
    depth, last_string, wanted = 0, "", False
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "{[":
            depth += 1
        elif token in "}]":
            depth -= 1
        elif token == ":":
            wanted = depth == 1 and last_string == key
        elif token == ",":
            wanted = False
        else:
            value: str = json.loads(token)
            if wanted:
                return value
            last_string = value
    return None


def genesis_chain_id(path: Path) -> str:
    """The `chain_id` of the genesis file at `path`.

    Genesis files can be gigabytes (exported state), so the first MiB is scanned for the top-level key, where
    Tendermint writes it; only a file that has it later is parsed whole.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_GENESIS_HEAD)
            truncated = bool(handle.read(1))
        chain_id = _top_level_string(head.decode("utf-8", errors="replace"), "chain_id")
        if chain_id is None:
            document = json.loads(path.read_bytes() if truncated else head)
            chain_id = document.get("chain_id") if isinstance(document, dict) else None
    except OSError as error:
        raise TaskError(f"{path}: cannot read: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TaskError(f"{path}: not valid JSON ({error})", hint="fix or remove the file") from None
    if not isinstance(chain_id, str):
        raise TaskError(f"{path}: has no chain_id string", hint="fix or remove the file")
    return chain_id


def _public_identity(node_key: Ed25519Key, validator_key: Ed25519Key) -> dict[str, str]:
    return {
        "nodeId": node_key.node_id,
        "validatorAddress": validator_key.address,
        "consensusPubKey": validator_key.public_key_base64,
    }


def _check_existing(home: Path, chain_id: str) -> None:
    """Validate every file the task would keep, before it writes anything: a corrupt key or a genesis for another
    chain fails the task with the home exactly as it was."""
    for path, load in (
        (node_key_path(home), load_node_key),
        (validator_key_path(home), load_validator_key),
        (validator_state_path(home), load_validator_state),
    ):
        if path.exists() or path.is_symlink():
            load(path)
    genesis = home / "config" / "genesis.json"
    if genesis.exists() and (existing := genesis_chain_id(genesis)) != chain_id:
        raise TaskError(
            f"{genesis} is for chain {existing!r}, not chainId {chain_id!r}",
            hint="use the chain ID of the existing genesis, or remove the file if it is left over from another chain",
        )


def create_identity(home: Path, chain_id: str, moniker: str) -> dict[str, str]:
    """Steps 1-5 of the module docstring (blocking; the handler runs it in a thread)."""
    _check_existing(home, chain_id)
    if has_marker(home, IDENTITY_MARKER):
        return _public_identity(load_node_key(node_key_path(home)), load_validator_key(validator_key_path(home)))
    config_dir = home / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (home / "data").mkdir(exist_ok=True)
    # Validator first: its refusal (a key without signing state) must come before anything is created.
    validator_key, _ = ensure_validator_key(validator_key_path(home), validator_state_path(home))
    node_key, _ = ensure_node_key(node_key_path(home))
    config_toml = config_dir / "config.toml"
    write_once(config_toml, DEFAULT_CONFIG_TOML, mode=PUBLIC_FILE_MODE)
    patch_toml_file(config_toml, {"moniker": moniker})
    # Only when absent: an existing genesis (checked above to be for this chain) is the ceremony's or the network's.
    write_once(config_dir / "genesis.json", minimal_genesis(chain_id, datetime.now(UTC)), mode=PUBLIC_FILE_MODE)
    write_marker(home, IDENTITY_MARKER)
    return _public_identity(node_key, validator_key)


@handler(TaskType.GENERATE_IDENTITY, GenerateIdentityParams)
async def generate_identity(params: GenerateIdentityParams, ctx: TaskContext) -> dict[str, Any]:
    """Create node and validator keys, set the moniker and write a minimal genesis, never replacing existing files."""
    identity = await asyncio.to_thread(create_identity, ctx.home, params.chain_id, params.moniker)
    ctx.log.info("generate-identity: node %s, validator %s", identity["nodeId"], identity["validatorAddress"])
    return identity


HANDLERS = [generate_identity]

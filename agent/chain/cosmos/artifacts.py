"""What the ceremony publishes in the genesis bucket, and where.

S3 layout (all under the genesis bucket):

    <chainId>/<nodeName>/gentx.json      a node's signed gentx (proto-JSON), from upload-genesis-artifacts
    <chainId>/<nodeName>/identity.json   its public identity (below), from upload-genesis-artifacts
    <chainId>/peers.json                 ["<nodeId>@<host>:<port>", ...], from the assembler, uploaded first
    <chainId>/genesis.json               the assembled genesis, from the assembler, uploaded last
    <sourceChainId>/exported-state.json  a source chain's `seid export`, from export-state (fork input)

identity.json holds public material only (never node_key.json, which holds the node's private key):

    {"nodeName": "...", "nodeId": "<40 hex>", "p2pAddress": "<host>:<port>", "moniker": "...",
     "consensusPubKey": {"type": "tendermint/PubKeyEd25519", "value": "<base64>"},
     "consensusAddress": "<40 HEX>", "accountAddress": "sei1...", "validatorAddress": "seivaloper1..."}
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from .genesis import ED25519_PUB_KEY_TYPE


def gentx_key(chain_id: str, node_name: str) -> str:
    return f"{chain_id}/{node_name}/gentx.json"


def identity_key(chain_id: str, node_name: str) -> str:
    return f"{chain_id}/{node_name}/identity.json"


def genesis_key(chain_id: str) -> str:
    return f"{chain_id}/genesis.json"


def peers_key(chain_id: str) -> str:
    return f"{chain_id}/peers.json"


def export_key(chain_id: str) -> str:
    return f"{chain_id}/exported-state.json"


class IdentityInvalid(ValueError):
    """An identity.json that is not the documented shape; the message names the field."""


@dataclass(frozen=True)
class NodeIdentity:
    node_name: str
    node_id: str
    p2p_address: str
    moniker: str
    consensus_public_key: bytes
    consensus_address: str
    account_address: str
    validator_address: str

    def to_json(self) -> dict[str, Any]:
        return {
            "nodeName": self.node_name,
            "nodeId": self.node_id,
            "p2pAddress": self.p2p_address,
            "moniker": self.moniker,
            "consensusPubKey": {
                "type": ED25519_PUB_KEY_TYPE,
                "value": base64.b64encode(self.consensus_public_key).decode(),
            },
            "consensusAddress": self.consensus_address,
            "accountAddress": self.account_address,
            "validatorAddress": self.validator_address,
        }

    @classmethod
    def from_json(cls, document: object) -> NodeIdentity:
        if not isinstance(document, dict):
            raise IdentityInvalid("expected a JSON object")

        def text(field: str) -> str:
            value = document.get(field)
            if not isinstance(value, str):
                raise IdentityInvalid(f"{field} is missing or not a string")
            return value

        node_id = text("nodeId")
        if not re.fullmatch(r"[0-9a-f]{40}", node_id):
            raise IdentityInvalid(f"nodeId {node_id!r} is not 40 lowercase hex digits")
        consensus = document.get("consensusPubKey")
        if not isinstance(consensus, dict) or consensus.get("type") != ED25519_PUB_KEY_TYPE:
            raise IdentityInvalid(f"consensusPubKey must be {{type: {ED25519_PUB_KEY_TYPE!r}, value}}")
        try:
            key = base64.b64decode(str(consensus.get("value", "")), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise IdentityInvalid("consensusPubKey.value is not a base64 32-byte Ed25519 key")
        return cls(
            node_name=text("nodeName"),
            node_id=node_id,
            p2p_address=text("p2pAddress"),
            moniker=text("moniker"),
            consensus_public_key=key,
            consensus_address=text("consensusAddress"),
            account_address=text("accountAddress"),
            validator_address=text("validatorAddress"),
        )

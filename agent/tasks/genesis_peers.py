"""set-genesis-peers: the ceremony's `peers.json` into config.toml's `[p2p]` persistent peers.

Reads `s3://<bucket>/<chainId>/peers.json` (bucket, region and chain ID default to `SEI_GENESIS_BUCKET`,
`SEI_GENESIS_REGION` and `SEI_CHAIN_ID`): a JSON array of `<node id>@<host>:<port>` strings. Every entry is validated
(a malformed one fails the task naming it, nothing is written), this node's own entry is dropped (its ID is derived
from the key in `config/node_key.json`, not from the file's `id` field), duplicates are dropped, and the rest, in the
file's order, is merge-patched into `[p2p]` of `config/config.toml` keeping comments and layout and the key spelling
the file already uses (`persistent-peers` in sei-tendermint files, `persistent_peers` in CometBFT ones).

No marker: the task simply re-applies the list, and re-running it is harmless. A missing config.toml is an error,
never created holding nothing but `[p2p]` (seid would start on defaults for everything else).
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent.chain.keys import node_id_from_file, node_key_path
from agent.io.s3 import S3Client, s3_url
from agent.io.toml import prepare_toml_patch
from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.params.addresses import parse_peer
from agent.models.params.base import ChainId
from agent.models.params.s3 import S3Params

from .base import TaskContext, handler
from .prechecks import genesis_peers_bucket_known

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


def _snake(name: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in name)


class SetGenesisPeersParams(S3Params):
    """`set-genesis-peers`: `s3://<bucket>/<chainId>/peers.json` into config.toml's persistent peers."""

    chain_id: ChainId = ""


PEERS_INVALID = "PeersInvalid"
MAX_PEERS_BYTES = 1024 * 1024


def _parse_peers(document: Any, source: str) -> list[str]:
    if not isinstance(document, list):
        raise TaskError(f"{source}: expected a JSON array of peer addresses, got {type(document).__name__}")
    peers: list[str] = []
    for index, entry in enumerate(document):
        if not isinstance(entry, str):
            raise TaskError(f"{source}: entry {index} is {entry!r}, not a string", reason=PEERS_INVALID)
        try:
            peer = parse_peer(entry)
        except ValueError as error:
            raise TaskError(f"{source}: entry {index}: {error}", reason=PEERS_INVALID) from None
        if peer not in peers:
            peers.append(peer)
    return peers


@handler(TaskType.SET_GENESIS_PEERS, SetGenesisPeersParams, precheck=genesis_peers_bucket_known)
async def set_genesis_peers(params: SetGenesisPeersParams, ctx: TaskContext) -> dict[str, Any] | None:
    """Write the genesis ceremony's peers (minus this node) into config.toml's [p2p] persistent peers."""
    chain_id = params.chain_id or ctx.settings.chain_id
    if not chain_id:
        raise ParamsInvalid("params.chainId: no chain ID given and SEI_CHAIN_ID is not set")
    bucket = params.bucket_or(ctx.settings.genesis_bucket, "SEI_GENESIS_BUCKET")
    config = ctx.home / "config" / "config.toml"
    if not config.exists():
        raise TaskError(f"{config} does not exist", hint="run generate-identity (or seid init) first")
    own_id = await asyncio.to_thread(node_id_from_file, node_key_path(ctx.home))
    key = f"{chain_id}/peers.json"
    source = s3_url(bucket, key)
    s3 = S3Client.from_settings(ctx.settings, region=params.region or ctx.settings.genesis_region)
    peers = _parse_peers(await s3.get_json(bucket, key, max_bytes=MAX_PEERS_BYTES), source)
    others = [peer for peer in peers if not peer.startswith(f"{own_id}@")]
    edit = prepare_toml_patch(
        config, {"p2p": {"persistent-peers": ",".join(others)}}, label="config.toml", match_spelling=True
    )
    changed = await asyncio.to_thread(edit.write)
    return {"source": source, "peers": len(others), "removedSelf": len(others) < len(peers), "changed": changed}


HANDLERS = [set_genesis_peers]

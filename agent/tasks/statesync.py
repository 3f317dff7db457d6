"""`configure-state-sync`: choose a trusted block, cross-checked between witnesses, and write `[statesync]`.

1. Done-marker `statesync` present: succeed at once, reporting what config.toml holds.
2. Witnesses: `rpcServers` (at least two), else the hosts of config.toml's persistent peers at `peerRpcPort`.
3. Every witness is asked for `/status` at once. One that does not answer is skipped and listed in the result; fewer
   than two answering fails (`WitnessUnavailable`, retryable). Witnesses on another chain (`network`), or on a chain
   other than this node's genesis, fail the task (`WitnessMismatch`).
4. Trust height: with `useLocalSnapshot`, the newest snapshot height under `data/snapshots/`; otherwise the lowest
   latest height among the witnesses minus `trustHeightOffset`, clamped to at least 1 and to the highest earliest
   height any witness still keeps (so every witness can serve the block).
5. Every answering witness is asked for `/block?height=H`. Any two that disagree on the hash (or the height) fail the
   task with reason `WitnessMismatch`, naming both witnesses and both hashes: there is no majority vote, because a
   witness that lies about a trusted hash is an incident for a human, not a tie to break. Fewer than two serving
   the block fails with `WitnessUnavailable`.
6. `[statesync]` in config.toml gets enable, trust-height, trust-hash, rpc-servers (the agreeing witnesses),
   use-local-snapshot and, when given, trust-period and backfill-blocks: comments and the file's key spelling are
   kept. config.toml must exist (config-apply or generate-identity writes it). The marker is written last.

A single witness is never duplicated to satisfy "two servers": one source cannot cross-check itself.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from agent.chain.rpc import BlockInfo, NodeStatus, RpcClient, RpcError
from agent.chain.seiconfig import read_key, write_keys
from agent.io.files import has_marker, write_marker
from agent.models import TaskError, TaskType
from agent.models.params.addresses import GoDuration, RpcAddress
from agent.models.params.base import TaskParams

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


class ConfigureStateSyncParams(TaskParams):
    """`configure-state-sync`: where the trusted block comes from, and the `[statesync]` options to write."""

    rpc_servers: list[RpcAddress] = Field(
        default_factory=list,
        description="Witness RPC addresses (host:port or http(s)://host:port), at least two distinct. Empty: the "
        "hosts of config.toml's persistent peers, at `peerRpcPort`.",
    )
    use_local_snapshot: bool = Field(
        default=False,
        description="Trust the height of the newest snapshot under data/snapshots/ (restored from S3) instead of "
        "the witnesses' latest height minus `trustHeightOffset`.",
    )
    trust_height_offset: int = Field(
        default=2000, ge=1, le=10_000_000, description="Blocks below the witnesses' latest height to trust."
    )
    trust_period: GoDuration | None = Field(default=None, description="`trust-period`, e.g. '168h0m0s'.")
    backfill_blocks: int | None = Field(default=None, ge=0, description="`backfill-blocks`, written when given.")
    peer_rpc_port: int = Field(default=26657, ge=1, le=65535, description="RPC port of witnesses taken from peers.")
    witness_timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Per-call timeout to a witness.")

    @field_validator("rpc_servers")
    @classmethod
    def _distinct_witnesses(cls, servers: list[str]) -> list[str]:
        if len(servers) == 1:
            raise ValueError(
                f"one witness ({servers[0]!r}) cannot cross-check a trust hash: give at least two, or none to use "
                "the persistent peers"
            )
        if len(set(servers)) != len(servers):
            duplicates = sorted({server for server in servers if servers.count(server) > 1})
            raise ValueError(f"witnesses listed twice: {', '.join(duplicates)}")
        return servers


MARKER = "statesync"
WITNESS_UNAVAILABLE = "WitnessUnavailable"
WITNESS_MISMATCH = "WitnessMismatch"


@dataclass
class Witness:
    address: str
    status: NodeStatus | None = None
    block: BlockInfo | None = None
    error: str = ""


def _witnesses_from_peers(home: Path, rpc_port: int) -> list[str]:
    listed = read_key(home, "network.p2p.persistent_peers") or ""  # sei-config's comma-separated string
    peers = [peer.strip() for peer in listed.split(",") if peer.strip()]
    hosts = list(dict.fromkeys(peer.split("@", 1)[1].rsplit(":", 1)[0] for peer in peers))
    if len(hosts) < 2:
        raise TaskError(
            f"rpcServers is empty and config.toml's persistent peers give {len(hosts)} distinct host(s); "
            "at least two witnesses are needed to cross-check the trust hash",
            reason=WITNESS_UNAVAILABLE,
            hint="pass rpcServers, or run discover-peers / config-apply with persistent peers first",
        )
    return [f"{host}:{rpc_port}" for host in hosts]


def _newest_local_snapshot(home: Path) -> int:
    directory = home / "data" / "snapshots"
    heights = [int(entry.name) for entry in directory.glob("*") if entry.is_dir() and entry.name.isdigit()]
    if not heights:
        raise TaskError(
            f"useLocalSnapshot: no snapshot found in {directory}",
            hint="run snapshot-restore first, or set useLocalSnapshot to false",
        )
    return max(heights)


def _genesis_chain_id(home: Path) -> str | None:
    try:
        document = json.loads((home / "config" / "genesis.json").read_bytes())
    except (OSError, ValueError):
        return None  # no genesis yet (configure-genesis may come later): the witnesses' agreement still holds
    chain_id = document.get("chain_id") if isinstance(document, dict) else None
    return chain_id if isinstance(chain_id, str) and chain_id else None


def _skipped(witnesses: list[Witness]) -> list[dict[str, str]]:
    return [{"address": witness.address, "error": witness.error} for witness in witnesses if witness.error]


def _need_two(answering: list[Witness], witnesses: list[Witness], what: str) -> None:
    if len(answering) >= 2:
        return
    details = "; ".join(f"{item['address']}: {item['error']}" for item in _skipped(witnesses))
    raise TaskError(
        f"{len(answering)} of {len(witnesses)} witnesses answered {what}; two are needed to cross-check the trust "
        f"hash ({details})",
        reason=WITNESS_UNAVAILABLE,
        retryable=True,
    )


async def _ask(witness: Witness, seconds: float, height: int | None) -> None:
    try:
        async with RpcClient(witness.address, timeout=seconds) as rpc:
            if height is None:
                witness.status = await rpc.status()
            else:
                witness.block = await rpc.block(height)
    except RpcError as error:
        witness.error = error.message


def _check_same_chain(answering: list[Witness], genesis_chain: str | None) -> None:
    first = answering[0]
    assert first.status is not None
    for other in answering[1:]:
        assert other.status is not None
        if other.status.network != first.status.network:
            raise TaskError(
                f"witnesses are on different chains: {first.address} is on {first.status.network!r}, "
                f"{other.address} on {other.status.network!r}",
                reason=WITNESS_MISMATCH,
            )
    if genesis_chain and first.status.network != genesis_chain:
        raise TaskError(
            f"witness {first.address} is on chain {first.status.network!r} but this node's genesis is for "
            f"{genesis_chain!r}",
            reason=WITNESS_MISMATCH,
        )


def _trust_height(answering: list[Witness], offset: int, local_snapshot: int | None) -> int:
    statuses = [witness.status for witness in answering if witness.status is not None]
    lowest_tip = min(status.latest_height for status in statuses)
    highest_floor = max(max(status.earliest_height, 1) for status in statuses)
    if local_snapshot is None:
        return max(lowest_tip - offset, highest_floor)
    if not highest_floor <= local_snapshot <= lowest_tip:
        raise TaskError(
            f"the local snapshot's height {local_snapshot} is outside what every witness keeps "
            f"({highest_floor}..{lowest_tip})",
            hint="use witnesses that keep that height (an archive node), or a newer snapshot",
        )
    return local_snapshot


def _agreed_hash(serving: list[Witness], height: int) -> str:
    reference = serving[0]
    assert reference.block is not None
    for other in serving:
        assert other.block is not None
        if other.block.height != height:
            raise TaskError(
                f"witness {other.address} answered block {other.block.height} when asked for {height}",
                reason=WITNESS_MISMATCH,
            )
        if other.block.hash != reference.block.hash:
            raise TaskError(
                f"witnesses disagree on the block hash at height {height}: {reference.address} says "
                f"{reference.block.hash}, {other.address} says {other.block.hash}",
                reason=WITNESS_MISMATCH,
                hint="one of them is on a fork or lying; check both before trusting either",
            )
    return reference.block.hash


async def _already_configured(home: Path) -> dict[str, Any]:
    values = await asyncio.to_thread(
        lambda: {key: read_key(home, f"statesync.{key}") for key in ("trust_height", "trust_hash", "rpc_servers")}
    )
    return {
        "alreadyConfigured": True,
        "trustHeight": values["trust_height"],
        "trustHash": values["trust_hash"],
        "rpcServers": values["rpc_servers"],
    }


@handler(TaskType.CONFIGURE_STATE_SYNC, ConfigureStateSyncParams)
async def configure_state_sync(params: ConfigureStateSyncParams, ctx: TaskContext) -> dict[str, Any]:
    """Pick a trust height and a hash two witnesses agree on, and enable state sync in config.toml."""
    home = ctx.home
    if has_marker(home, MARKER):
        return await _already_configured(home)
    if not (home / "config" / "config.toml").exists():
        raise TaskError(
            f"config/config.toml not found in {home}", reason="ConfigMissing", hint="run config-apply first"
        )
    addresses = list(params.rpc_servers) or await asyncio.to_thread(_witnesses_from_peers, home, params.peer_rpc_port)
    local_snapshot = await asyncio.to_thread(_newest_local_snapshot, home) if params.use_local_snapshot else None
    witnesses = [Witness(address) for address in addresses]

    ctx.progress(1, 3, "steps", f"asking {len(witnesses)} witnesses for their status")
    await asyncio.gather(*(_ask(witness, params.witness_timeout_seconds, None) for witness in witnesses))
    answering = [witness for witness in witnesses if witness.status is not None]
    _need_two(answering, witnesses, "/status")
    _check_same_chain(answering, await asyncio.to_thread(_genesis_chain_id, home))
    height = _trust_height(answering, params.trust_height_offset, local_snapshot)

    ctx.progress(2, 3, "steps", f"cross-checking the block hash at height {height}")
    await asyncio.gather(*(_ask(witness, params.witness_timeout_seconds, height) for witness in answering))
    serving = [witness for witness in answering if witness.block is not None]
    _need_two(serving, witnesses, f"/block?height={height}")
    trust_hash = _agreed_hash(serving, height)

    ctx.progress(3, 3, "steps", "writing [statesync]")
    servers = [witness.address for witness in serving]
    await asyncio.to_thread(
        write_keys,
        home,
        {
            "statesync.enable": True,
            "statesync.trust_height": height,
            "statesync.trust_hash": trust_hash,
            "statesync.rpc_servers": servers,
            "statesync.use_local_snapshot": params.use_local_snapshot,
            "statesync.trust_period": params.trust_period,
            "statesync.backfill_blocks": params.backfill_blocks,
        },
    )
    await asyncio.to_thread(write_marker, home, MARKER)
    return {
        "trustHeight": height,
        "trustHash": trust_hash,
        "rpcServers": servers,
        "witnessesSkipped": _skipped(witnesses),
        "useLocalSnapshot": params.use_local_snapshot,
        "chainId": serving[0].status.network if serving[0].status else "",
    }


HANDLERS = [configure_state_sync]

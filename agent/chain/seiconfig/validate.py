"""Validation of a unified config: structured diagnostics `{severity, field, message}`.

`ERROR` means seid would refuse to start, misbehave, or put the node at risk; config-apply and config-reload write
nothing and config-validate fails when there is one. `WARNING` is a likely mistake; `INFO` is worth knowing. The
severities and the JSON shape are those the controller parses from sei-config (`{"severity":"ERROR","field":...}`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel

from agent.models.params.node import go_duration_seconds

from .model import Mode, SeiConfig, get_dotted_value, listen_port
from .registry import registry

Severity = Literal["ERROR", "WARNING", "INFO"]
_HASH = re.compile(r"[0-9A-Fa-f]{64}")


class Diagnostic(BaseModel):
    """One finding about one unified key (or `mode`)."""

    severity: Severity
    field: str
    message: str


class ValidationReport(BaseModel):
    """The outcome of validating one config: what config-validate returns and config-apply refuses on."""

    valid: bool
    version: int
    mode: str
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [item for item in self.diagnostics if item.severity == "ERROR"]

    def errors_json(self) -> str:
        """The errors as the JSON array sei-config used in its failure message (the controller parses it)."""
        return json.dumps([item.model_dump() for item in self.errors], separators=(",", ":"))

    def result(self) -> dict[str, Any]:
        return self.model_dump()


def _error(field: str, message: str) -> Diagnostic:
    return Diagnostic(severity="ERROR", field=field, message=message)


def _warning(field: str, message: str) -> Diagnostic:
    return Diagnostic(severity="WARNING", field=field, message=message)


def _info(field: str, message: str) -> Diagnostic:
    return Diagnostic(severity="INFO", field=field, message=message)


def _required(config: SeiConfig) -> Iterator[Diagnostic]:
    for key, entry in registry().items():
        if config.mode in entry.toml.required_for and get_dotted_value(config, key) in (None, "", []):
            yield _error(key, f"required in {config.mode} mode")


_LISTENERS = [
    ("network.p2p.laddr", None),
    ("network.rpc.laddr", None),
    ("telemetry.prometheus_listen_addr", "telemetry.prometheus"),
    ("api.address", "api.enable"),
    ("grpc.address", "grpc.enable"),
    ("grpc_web.address", "grpc_web.enable"),
]


def _ports(config: SeiConfig) -> Iterator[Diagnostic]:
    """Two enabled listeners on one port: the second server cannot start."""
    taken: dict[int, str] = {}
    listeners: list[tuple[str, int | None]] = []
    for key, switch in _LISTENERS:
        if switch is None or get_dotted_value(config, switch):
            listeners.append((key, listen_port(get_dotted_value(config, key))))
    if config.evm.http_enabled:
        listeners.append(("evm.http_port", config.evm.http_port))
    if config.evm.ws_enabled:
        listeners.append(("evm.ws_port", config.evm.ws_port))
    for key, port in listeners:
        if port is None:
            continue
        if port in taken:
            yield _error(key, f"port {port} is already used by {taken[port]}")
        else:
            taken[port] = key


def _state_sync(config: SeiConfig) -> Iterator[Diagnostic]:
    sync = config.statesync
    if not sync.enable:
        return
    if config.mode is Mode.SEED:
        yield _error("statesync.enable", "a seed node does not restore application state; disable state sync")
    if len(set(sync.rpc_servers or [])) < 2:
        yield _error("statesync.rpc_servers", "state sync needs at least two distinct witnesses to verify against")
    if not sync.trust_height:
        yield _error("statesync.trust_height", "must be > 0 when state sync is enabled")
    if not sync.trust_hash or not _HASH.fullmatch(sync.trust_hash):
        yield _error("statesync.trust_hash", f"{sync.trust_hash!r} is not a 64-hex block hash")
    if sync.trust_period is not None and go_duration_seconds(sync.trust_period) <= 0:
        yield _error("statesync.trust_period", "must be longer than 0")


def _storage(config: SeiConfig) -> Iterator[Diagnostic]:
    storage = config.storage
    if storage.pruning == "custom":
        if not storage.pruning_keep_recent:
            yield _error("storage.pruning_keep_recent", "must be > 0 with pruning = custom")
        if storage.pruning_interval is None or storage.pruning_interval < 10:
            yield _error("storage.pruning_interval", "must be >= 10 with pruning = custom")
    if config.mode is Mode.ARCHIVE:
        if storage.pruning != "nothing":
            yield _error("storage.pruning", f"an archive node keeps every height: 'nothing', not {storage.pruning!r}")
        if not storage.state_store.enable:
            yield _error("storage.state_store.enable", "an archive node serves historical state: enable it")
        elif storage.state_store.keep_recent != 0:
            yield _error("storage.state_store.keep_recent", "an archive node keeps every version: set 0")
        if storage.min_retain_blocks:
            yield _error("storage.min_retain_blocks", "an archive node keeps every block: set 0")
    if not storage.state_commit.enable:
        yield _warning("storage.state_commit.enable", "SeiDB state commitment is off; Sei v2 nodes expect it on")
    if config.snapshot.interval and storage.state_commit.enable:
        interval = storage.state_commit.snapshot_interval
        if interval and config.snapshot.interval % interval and interval % config.snapshot.interval:
            yield _warning(
                "snapshot.interval",
                f"{config.snapshot.interval} is not a multiple or divisor of "
                f"storage.state_commit.snapshot_interval ({interval})",
            )


def _peers(config: SeiConfig) -> Iterator[Diagnostic]:
    p2p = config.network.p2p
    if not p2p.persistent_peers and not p2p.bootstrap_peers and not config.statesync.enable:
        yield _warning("network.p2p.persistent_peers", "no persistent or bootstrap peers: the node may find no one")
    for key in ("persistent_peers", "bootstrap_peers"):
        peers = getattr(p2p, key) or []
        duplicates = sorted({peer for peer in peers if peers.count(peer) > 1})
        if duplicates:
            yield _warning(f"network.p2p.{key}", f"listed twice: {', '.join(duplicates)}")


def _exposure(config: SeiConfig) -> Iterator[Diagnostic]:
    if config.mode is Mode.VALIDATOR:
        if config.evm.http_enabled or config.evm.ws_enabled:
            yield _warning("evm.http_enabled", "a validator serving EVM RPC is exposed to query load and attacks")
        if config.api.enable:
            yield _warning("api.enable", "a validator serving the REST API is exposed to query load and attacks")
        if config.network.rpc.unsafe:
            yield _error("network.rpc.unsafe", "unsafe RPC commands on a validator let anyone dial or drop peers")
        if not config.chain.minimum_gas_prices:
            yield _warning("chain.minimum_gas_prices", "empty: this validator accepts transactions paying no fee")
    if config.network.rpc.unsafe and config.mode is not Mode.VALIDATOR:
        yield _warning("network.rpc.unsafe", "unsafe RPC commands are enabled")
    if "*" in config.network.rpc.cors_allowed_origins:
        yield _info("network.rpc.cors_allowed_origins", "any origin may call the RPC from a browser")


def _mode(config: SeiConfig) -> Iterator[Diagnostic]:
    if config.mode is Mode.ARCHIVE:
        yield _info("mode", "archive keeps every height: plan disk growth accordingly")
    if config.mode is Mode.SEED and not config.network.p2p.pex:
        yield _error("network.p2p.pex", "a seed node exists to exchange peers: enable pex")


_RULES = (_required, _ports, _state_sync, _storage, _peers, _exposure, _mode)


def validate(config: SeiConfig, *, extra: Iterable[Diagnostic] = ()) -> ValidationReport:
    """Run every rule over `config`; `extra` carries findings made while reading files (unparseable values)."""
    diagnostics = list(extra)
    for rule in _RULES:
        diagnostics.extend(rule(config))
    order = {"ERROR": 0, "WARNING": 1, "INFO": 2}
    diagnostics.sort(key=lambda item: order[item.severity])
    valid = not any(item.severity == "ERROR" for item in diagnostics)
    return ValidationReport(valid=valid, version=config.version, mode=str(config.mode), diagnostics=diagnostics)

"""Validation of a unified config: structured diagnostics `{severity, field, message}`.

The checks are sei-config's, with its fields, severities and messages (the table's `rules` are the observed
outcomes; tests/chain/test_seiconfig_table.py replays every probe against `validate`). The project adds the few
checks listed in `EXTRA_RULES`, each documented in docs/config-model.md. `ERROR` means seid would refuse to start,
misbehave, or put the node at risk; config-apply and config-reload write nothing and config-validate fails when
there is one. `WARNING` is a likely mistake.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel

from .model import CURRENT_VERSION, Mode, SeiConfig

Severity = Literal["ERROR", "WARNING", "INFO"]

WRITE_MODES = frozenset(
    {
        "memiavl_only",
        "migrate_evm",
        "evm_migrated",
        "migrate_all_but_bank",
        "all_migrated_but_bank",
        "migrate_bank",
        "flatkv_only",
        "test_only_dual_write",
        "cosmos_only",
        "dual_write",
        "split_write",
    }
)
READ_MODES = frozenset({"cosmos_only", "evm_first", "split_read"})
PRUNING = ("default", "nothing", "everything", "custom")

EXTRA_RULES = {
    "network.p2p.listen_address": "two enabled listeners on one port (ERROR)",
    "network.rpc.listen_address": "two enabled listeners on one port (ERROR)",
    "metrics.prometheus_listen_addr": "two enabled listeners on one port (ERROR)",
    "api.rest.address": "two enabled listeners on one port (ERROR)",
    "api.grpc.address": "two enabled listeners on one port (ERROR)",
    "api.grpc_web.address": "two enabled listeners on one port (ERROR)",
    "evm.http_port": "two enabled listeners on one port (ERROR)",
    "evm.ws_port": "two enabled listeners on one port (ERROR)",
    "network.rpc.unsafe": "unsafe RPC commands on a validator (WARNING)",
    "network.p2p.pex": "a seed node without peer exchange (WARNING)",
    "chain.chain_id": "a chain ID override is written to neither file (WARNING)",
    "chain.freeze_height": "freeze together with halt-height or halt-time, or above 2^63-1 (ERROR; seid refuses both)",
}
"""Checks of the project's own that sei-config does not make: field -> what is checked."""


class Diagnostic(BaseModel):
    """One finding about one unified key (or `mode`, `version`, `storage`, `evm` as sei-config names them)."""

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
        """Every diagnostic as the JSON array seictl puts in its failure message (the controller parses it)."""
        return json.dumps([item.model_dump() for item in self.diagnostics], separators=(",", ":"))

    def result(self) -> dict[str, Any]:
        return self.model_dump()


def _error(field: str, message: str) -> Diagnostic:
    return Diagnostic(severity="ERROR", field=field, message=message)


def _warning(field: str, message: str) -> Diagnostic:
    return Diagnostic(severity="WARNING", field=field, message=message)


def go_duration_ns(text: str | None) -> float:
    """A Go duration string in nanoseconds (0 for None or an empty string)."""
    if not text:
        return 0.0
    units = {"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
    sign = -1 if text.startswith("-") else 1
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", text):
        total += float(number) * units[unit]
    return sign * total


def _hex_error(text: str) -> str | None:
    """Go's `hex.DecodeString` error text for `text`, or None when it decodes."""
    digits = set("0123456789abcdefABCDEF")
    pairs = len(text) // 2 * 2
    for char in text[:pairs]:
        if char not in digits:
            return f"encoding/hex: invalid byte: U+{ord(char):04X} {char!r}"
    if len(text) % 2:
        if text[-1] not in digits:
            return f"encoding/hex: invalid byte: U+{ord(text[-1]):04X} {text[-1]!r}"
        return "encoding/hex: odd length hex string"
    return None


def _mode_and_version(config: SeiConfig, max_version: int) -> Iterator[Diagnostic]:
    if config.mode == "":
        yield _error("mode", "mode must be set")
    elif config.mode not in {mode.value for mode in Mode}:
        yield _error(
            "mode", f"unknown mode {json.dumps(str(config.mode))}; valid modes: validator, full, seed, archive"
        )
    if config.version < 1:
        yield _error("version", "config version must be >= 1")
    if config.version > max_version:
        yield _error(
            "version",
            f"config version {config.version} is newer than supported version {max_version}; "
            "upgrade or run `seictl config migrate`",
        )


_NON_NEGATIVE = (
    "network.rpc.max_open_connections",
    "network.rpc.max_subscription_clients",
    "network.rpc.max_subscriptions_per_client",
    "network.rpc.timeout_broadcast_tx_commit",
    "network.rpc.max_body_bytes",
    "network.rpc.max_header_bytes",
    "network.p2p.flush_throttle_timeout",
    "network.p2p.max_packet_msg_payload_size",
    "network.p2p.send_rate",
    "network.p2p.recv_rate",
    "consensus.unsafe_propose_timeout_override",
    "consensus.unsafe_commit_timeout_override",
    "consensus.create_empty_blocks_interval",
    "consensus.peer_gossip_sleep_duration",
    "consensus.double_sign_check_height",
    "mempool.size",
    "mempool.max_txs_bytes",
    "mempool.cache_size",
    "mempool.max_tx_bytes",
    "mempool.ttl_duration",
    "mempool.ttl_num_blocks",
)


def _number(config: SeiConfig, key: str) -> float:
    value = config.get(key)
    if isinstance(value, str):
        return go_duration_ns(value)
    return float(value or 0)


def _values(config: SeiConfig) -> Iterator[Diagnostic]:
    get = config.get
    if not get("chain.min_gas_prices"):
        yield _error("chain.min_gas_prices", "min_gas_prices must be set")
    workers = get("chain.concurrency_workers")
    if workers is not None and workers < -1:
        yield _error("chain.concurrency_workers", "concurrency_workers must be >= -1")
    for key in _NON_NEGATIVE:
        if _number(config, key) < 0:
            yield _error(key, "must be >= 0")
    threshold = get("mempool.drop_utilisation_threshold") or 0.0
    if threshold < 0 or threshold > 1.0:
        yield _error("mempool.drop_utilisation_threshold", "must be between 0.0 and 1.0")


def _state_sync(config: SeiConfig) -> Iterator[Diagnostic]:
    get = config.get
    if not get("state_sync.enable"):
        return
    if not get("state_sync.use_p2p") and len(get("state_sync.rpc_servers") or []) < 2:
        yield _error("state_sync.rpc_servers", "at least two RPC servers are required when not using P2P")
    period = get("state_sync.trust_period")  # None: not written, seid's own default (168h) applies
    if period is not None and go_duration_ns(period) <= 0:
        yield _error("state_sync.trust_period", "must be > 0 when state sync is enabled")
    if (get("state_sync.trust_height") or 0) <= 0:
        yield _error("state_sync.trust_height", "must be > 0 when state sync is enabled")
    trust_hash = get("state_sync.trust_hash") or ""
    if trust_hash:
        problem = _hex_error(trust_hash)
        if problem:
            yield _error("state_sync.trust_hash", f"invalid hex: {problem}")
    else:
        yield _error("state_sync.trust_hash", "must be set when state sync is enabled")
    if (get("state_sync.fetchers") or 0) <= 0:
        yield _error("state_sync.fetchers", "must be > 0")
    if (get("state_sync.backfill_blocks") or 0) < 0:
        yield _error("state_sync.backfill_blocks", "must be >= 0")


def _quoted(value: Any) -> str:
    return json.dumps(value if value is not None else "")


def _storage(config: SeiConfig) -> Iterator[Diagnostic]:
    get = config.get
    pruning = get("storage.pruning")
    if pruning not in PRUNING:
        yield _error(
            "storage.pruning",
            f"unknown pruning strategy {_quoted(pruning)}; valid: default, nothing, everything, custom",
        )
    for store in ("state_commit", "state_store"):
        write_mode = get(f"storage.{store}.write_mode")
        if write_mode and write_mode not in WRITE_MODES:
            yield _error(f"storage.{store}.write_mode", f"invalid write_mode: {_quoted(write_mode)}")
        if store == "state_commit" and write_mode == "test_only_dual_write":
            yield _warning(f"storage.{store}.write_mode", "test_only_dual_write must not be used in production")
        read_mode = get(f"storage.{store}.read_mode")
        if read_mode and read_mode not in READ_MODES:
            yield _error(f"storage.{store}.read_mode", f"invalid read_mode: {_quoted(read_mode)}")
    backend = get("storage.state_store.backend")
    if backend and backend not in ("pebbledb", "rocksdb"):
        yield _warning(
            "storage.state_store.backend", f"unusual backend {_quoted(backend)}; expected pebbledb or rocksdb"
        )


def _evm_metrics_logging(config: SeiConfig) -> Iterator[Diagnostic]:
    get = config.get
    if get("evm.http_enabled") and (get("evm.http_port") or 0) <= 0:
        yield _error("evm.http_port", "must be > 0 when HTTP is enabled")
    if get("evm.ws_enabled") and (get("evm.ws_port") or 0) <= 0:
        yield _error("evm.ws_port", "must be > 0 when WS is enabled")
    if config.mode == Mode.VALIDATOR and (get("evm.http_enabled") or get("evm.ws_enabled")):
        yield _warning("evm", "EVM RPC is enabled on a validator node; this is unusual and may increase attack surface")
    if (get("metrics.max_open_connections") or 0) < 0:
        yield _error("metrics.max_open_connections", "must be >= 0")
    log_format = get("logging.format")
    if not log_format:
        yield _error("logging.format", "format must be set (plain, text, or json)")
    elif log_format not in ("plain", "text", "json"):
        yield _error("logging.format", f"unknown format {_quoted(log_format)}; valid: plain, text, json")


def _cross_field(config: SeiConfig) -> Iterator[Diagnostic]:
    if config.get("storage.pruning") == "everything" and (config.get("storage.snapshot_interval") or 0) > 0:
        yield _error("storage", "cannot enable snapshots with 'everything' pruning strategy")


def listen_port(address: Any) -> int | None:
    """The TCP port of a listen address (`tcp://0.0.0.0:26656`, `0.0.0.0:9090`, `:26660`); None if it has none."""
    if not isinstance(address, str):
        return None
    match = re.fullmatch(r"(?:(?:tcp|http|https)://)?(?:[A-Za-z0-9.\-]*|\[[0-9A-Fa-f:.]+\]):(\d{1,5})", address)
    if not match or not 1 <= int(match.group(1)) <= 65535:
        return None
    return int(match.group(1))


_LISTENERS = [
    ("network.p2p.listen_address", None),
    ("network.rpc.listen_address", None),
    ("metrics.prometheus_listen_addr", "metrics.enabled"),
    ("api.rest.address", "api.rest.enable"),
    ("api.grpc.address", "api.grpc.enable"),
    ("api.grpc_web.address", "api.grpc_web.enable"),
]


def _ours(config: SeiConfig) -> Iterator[Diagnostic]:
    """The project's own checks (EXTRA_RULES)."""
    listeners: list[tuple[str, int | None]] = []
    for key, switch in _LISTENERS:
        if switch is None or config.get(switch):
            listeners.append((key, listen_port(config.get(key))))
    for key, switch in (("evm.http_port", "evm.http_enabled"), ("evm.ws_port", "evm.ws_enabled")):
        port = config.get(key)
        if config.get(switch) and isinstance(port, int) and port > 0:
            listeners.append((key, port))
    taken: dict[int, str] = {}
    for key, port in listeners:
        if port is None:
            continue
        if port in taken:
            yield _error(key, f"port {port} is already used by {taken[port]}")
        else:
            taken[port] = key
    if config.mode == Mode.VALIDATOR and config.get("network.rpc.unsafe"):
        yield _warning("network.rpc.unsafe", "unsafe RPC commands on a validator let anyone dial or drop peers")
    if config.mode == Mode.SEED and config.get("network.p2p.pex") is False:
        yield _warning("network.p2p.pex", "a seed node exists to exchange peers: enable pex")
    freeze = config.get("chain.freeze_height") or 0
    if freeze and (config.get("chain.halt_height") or config.get("chain.halt_time")):
        yield _error("chain.freeze_height", "cannot be combined with chain.halt_height or chain.halt_time")
    if freeze > 2**63 - 1:
        yield _error("chain.freeze_height", "must be <= 9223372036854775807")
    if config.get("chain.chain_id"):
        yield _warning(
            "chain.chain_id",
            "written to neither config.toml nor app.toml (as in sei-config); the chain ID comes from genesis.json "
            "and client.toml",
        )


_RULES = (_values, _state_sync, _storage, _evm_metrics_logging, _cross_field, _ours)


def validate(
    config: SeiConfig, *, extra: Iterable[Diagnostic] = (), max_version: int = CURRENT_VERSION
) -> ValidationReport:
    """Run every rule over `config`; `extra` carries findings made while reading files (unparseable values)."""
    diagnostics = list(extra)
    diagnostics.extend(_mode_and_version(config, max_version))
    for rule in _RULES:
        diagnostics.extend(rule(config))
    valid = not any(item.severity == "ERROR" for item in diagnostics)
    return ValidationReport(valid=valid, version=config.version, mode=str(config.mode), diagnostics=diagnostics)

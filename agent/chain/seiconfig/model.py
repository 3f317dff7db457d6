"""The unified Sei node configuration: one typed model over config.toml (sei-tendermint) and app.toml (Sei app).

Every leaf field carries a `Toml` marker saying which file and TOML key it maps to (in Sei's own spelling, which
the renderer adapts to a file that spells keys with the other separator), whether seid applies a change without a
restart (`hot`), and in which modes it must have a value (`required_for`). The registry (`registry.py`) is derived
from these markers, so the model is the one source of truth for keys, types, files and reload rules.

A field whose default is `None` is *not managed* unless set: config-apply writes it only when an override (or the
file) gives it a value. These are the keys other tasks own (persistent peers, `[statesync]`, the moniker) and the
ones whose absence means "seid's own default" (consensus timeout overrides, halt height).

Scope: the keys a Sei operator actually touches (about 90): P2P, RPC, mempool, consensus timeout overrides, state
sync, tx indexing, pruning and SeiDB (state-commit / state-store), snapshots, the app's base options, API / gRPC,
EVM RPC, telemetry and logging. Anything else in the files is left exactly as it is; an override naming a key
outside the model is refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from agent.models.params.node import GoDuration, PeerAddress, RpcAddress

CONFIG_TOML = "config.toml"
APP_TOML = "app.toml"
CURRENT_VERSION = 1


class Mode(StrEnum):
    """What the node is for. `archive` is a full node that keeps every height (config.toml has no such mode)."""

    VALIDATOR = "validator"
    FULL = "full"
    SEED = "seed"
    ARCHIVE = "archive"


ALL_MODES = frozenset(Mode)


@dataclass(frozen=True)
class Toml:
    """Where a unified key lives on disk and how it behaves."""

    file: str
    key: str
    """Dotted TOML path in Sei's spelling, e.g. `p2p.persistent-peers` or `state-commit.sc-enable`."""
    hot: bool = False
    """seid applies a change without a restart (config-reload accepts only these)."""
    required_for: frozenset[Mode] = frozenset()
    """Modes in which the key must have a non-empty value (an ERROR diagnostic otherwise)."""
    comma: bool = False
    """A list written as one comma-separated string (`persistent-peers = "a,b"`), not a TOML array."""
    doc: str = ""


def _config(key: str, doc: str = "", **options: Any) -> Toml:
    return Toml(CONFIG_TOML, key, doc=doc, **options)


def _app(key: str, doc: str = "", **options: Any) -> Toml:
    return Toml(APP_TOML, key, doc=doc, **options)


def _no_bool(value: Any) -> Any:
    # pydantic would turn `true` into 1; a boolean given for a number is a mistake worth naming.
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _comma_list(value: Any) -> Any:
    # The files (and sei-config's string overrides) hold lists as "a,b,c"; an empty string is an empty list.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Int = Annotated[int, BeforeValidator(_no_bool), Field(ge=0, le=2**63 - 1)]
Port = Annotated[int, BeforeValidator(_no_bool), Field(ge=1, le=65535)]
Peers = Annotated[list[PeerAddress], BeforeValidator(_comma_list)]
Witnesses = Annotated[list[RpcAddress], BeforeValidator(_comma_list)]
Names = Annotated[list[str], BeforeValidator(_comma_list)]


def _check_listen_address(value: str) -> str:
    if value.startswith("unix://") and len(value) > len("unix://"):
        return value
    if listen_port(value) is None:
        raise ValueError(f"{value!r} is not a listen address such as 'tcp://0.0.0.0:26656', '0.0.0.0:9090' or ':26660'")
    return value


def listen_port(address: str) -> int | None:
    """The TCP port of a listen address (`tcp://0.0.0.0:26656`, `0.0.0.0:9090`, `:26660`); None if it has none."""
    match = _LISTEN.fullmatch(address)
    if not match or not 1 <= int(match.group(1)) <= 65535:
        return None
    return int(match.group(1))


_LISTEN = re.compile(r"(?:(?:tcp|http|https)://)?(?:[A-Za-z0-9.\-]*|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")
ListenAddress = Annotated[str, AfterValidator(_check_listen_address)]

_ALL = ALL_MODES
_SERVING = frozenset({Mode.VALIDATOR, Mode.FULL, Mode.ARCHIVE})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NodeSection(_Section):
    moniker: Annotated[str | None, _config("moniker", "Human-readable node name")] = None
    db_backend: Annotated[
        Literal["goleveldb", "cleveldb", "boltdb", "rocksdb", "badgerdb"] | None,
        _config("db-backend", "Tendermint database backend"),
    ] = None


class LoggingSection(_Section):
    level: Annotated[
        Literal["debug", "info", "warn", "error"], _config("log-level", "seid log level", hot=True, required_for=_ALL)
    ] = "info"
    format: Annotated[Literal["plain", "json"], _config("log-format", "Log output format")] = "plain"


class P2PSection(_Section):
    laddr: Annotated[ListenAddress, _config("p2p.laddr", "P2P listen address", required_for=_ALL)] = (
        "tcp://0.0.0.0:26656"
    )
    external_address: Annotated[str | None, _config("p2p.external-address", "host:port advertised to peers")] = None
    persistent_peers: Annotated[
        Peers | None, _config("p2p.persistent-peers", "Peers to keep connected (id@host:port)", comma=True)
    ] = None
    bootstrap_peers: Annotated[
        Peers | None, _config("p2p.bootstrap-peers", "Peers added to the address book at start", comma=True)
    ] = None
    unconditional_peer_ids: Annotated[
        Names | None, _config("p2p.unconditional-peer-ids", "Node IDs exempt from connection limits", comma=True)
    ] = None
    private_peer_ids: Annotated[
        Names | None, _config("p2p.private-peer-ids", "Node IDs never gossiped", comma=True)
    ] = None
    pex: Annotated[bool, _config("p2p.pex", "Peer exchange reactor")] = True
    max_connections: Annotated[Int, _config("p2p.max-connections", "Inbound plus outbound connections")] = 200
    allow_duplicate_ip: Annotated[bool, _config("p2p.allow-duplicate-ip", "Several peers from one IP")] = False
    handshake_timeout: Annotated[GoDuration, _config("p2p.handshake-timeout")] = "20s"
    dial_timeout: Annotated[GoDuration, _config("p2p.dial-timeout")] = "3s"
    send_rate: Annotated[Int, _config("p2p.send-rate", "Bytes per second")] = 20480000
    recv_rate: Annotated[Int, _config("p2p.recv-rate", "Bytes per second")] = 20480000


class RPCSection(_Section):
    laddr: Annotated[ListenAddress, _config("rpc.laddr", "CometBFT RPC listen address", required_for=_ALL)] = (
        "tcp://0.0.0.0:26657"
    )
    cors_allowed_origins: Annotated[list[str], _config("rpc.cors-allowed-origins", hot=True)] = Field(
        default_factory=list
    )
    cors_allowed_methods: Annotated[list[str], _config("rpc.cors-allowed-methods", hot=True)] = Field(
        default_factory=lambda: ["HEAD", "GET", "POST"]
    )
    cors_allowed_headers: Annotated[list[str], _config("rpc.cors-allowed-headers", hot=True)] = Field(
        default_factory=lambda: ["Origin", "Accept", "Content-Type", "X-Requested-With", "X-Server-Time"]
    )
    max_open_connections: Annotated[Int, _config("rpc.max-open-connections", hot=True)] = 900
    max_subscription_clients: Annotated[Int, _config("rpc.max-subscription-clients", hot=True)] = 100
    max_subscriptions_per_client: Annotated[Int, _config("rpc.max-subscriptions-per-client", hot=True)] = 5
    max_body_bytes: Annotated[Int, _config("rpc.max-body-bytes", hot=True)] = 1000000
    max_header_bytes: Annotated[Int, _config("rpc.max-header-bytes")] = 1048576
    timeout_broadcast_tx_commit: Annotated[GoDuration, _config("rpc.timeout-broadcast-tx-commit")] = "10s"
    unsafe: Annotated[bool, _config("rpc.unsafe", "Unsafe RPC commands (/dial_peers...)")] = False


class NetworkSection(_Section):
    p2p: P2PSection = Field(default_factory=P2PSection)
    rpc: RPCSection = Field(default_factory=RPCSection)


class MempoolSection(_Section):
    size: Annotated[Int, _config("mempool.size", "Maximum transactions in the mempool", hot=True)] = 5000
    cache_size: Annotated[Int, _config("mempool.cache-size")] = 10000
    max_txs_bytes: Annotated[Int, _config("mempool.max-txs-bytes")] = 10737418240
    max_tx_bytes: Annotated[Int, _config("mempool.max-tx-bytes")] = 2048576
    broadcast: Annotated[bool, _config("mempool.broadcast")] = True
    pending_size: Annotated[Int, _config("mempool.pending-size")] = 5000
    max_pending_txs_bytes: Annotated[Int, _config("mempool.max-pending-txs-bytes")] = 1073741824
    ttl_duration: Annotated[GoDuration | None, _config("mempool.ttl-duration")] = None
    ttl_num_blocks: Annotated[Int | None, _config("mempool.ttl-num-blocks")] = None


class ConsensusSection(_Section):
    """sei-tendermint takes timeouts from consensus params; these are its `unsafe-*-override` escape hatches."""

    timeout_propose: Annotated[GoDuration | None, _config("consensus.unsafe-propose-timeout-override")] = None
    timeout_propose_delta: Annotated[GoDuration | None, _config("consensus.unsafe-propose-timeout-delta-override")] = (
        None
    )
    timeout_vote: Annotated[GoDuration | None, _config("consensus.unsafe-vote-timeout-override")] = None
    timeout_vote_delta: Annotated[GoDuration | None, _config("consensus.unsafe-vote-timeout-delta-override")] = None
    timeout_commit: Annotated[GoDuration | None, _config("consensus.unsafe-commit-timeout-override")] = None
    double_sign_check_height: Annotated[Int | None, _config("consensus.double-sign-check-height")] = None
    create_empty_blocks: Annotated[bool | None, _config("consensus.create-empty-blocks")] = None


class StateSyncSection(_Section):
    """Owned by configure-state-sync: nothing here is written unless set."""

    enable: Annotated[bool | None, _config("statesync.enable")] = None
    rpc_servers: Annotated[Witnesses | None, _config("statesync.rpc-servers", "Witnesses, host:port", comma=True)] = (
        None
    )
    trust_height: Annotated[Int | None, _config("statesync.trust-height")] = None
    trust_hash: Annotated[str | None, _config("statesync.trust-hash")] = None
    trust_period: Annotated[GoDuration | None, _config("statesync.trust-period")] = None
    use_local_snapshot: Annotated[bool | None, _config("statesync.use-local-snapshot")] = None
    backfill_blocks: Annotated[Int | None, _config("statesync.backfill-blocks")] = None
    discovery_time: Annotated[GoDuration | None, _config("statesync.discovery-time")] = None
    fetchers: Annotated[Int | None, _config("statesync.fetchers")] = None


Indexer = Literal["kv", "psql", "null"]


def _kv_indexer() -> list[Indexer]:
    return ["kv"]


class TxIndexSection(_Section):
    # CometBFT / Tendermint 0.34 write one string (`indexer = "kv"`), sei-tendermint a list: both read as a list.
    indexer: Annotated[list[Indexer], BeforeValidator(_comma_list), _config("tx-index.indexer")] = Field(
        default_factory=_kv_indexer
    )


class StateCommitSection(_Section):
    enable: Annotated[bool, _app("state-commit.sc-enable", "SeiDB state commitment (memiavl)")] = True
    async_commit_buffer: Annotated[Int, _app("state-commit.sc-async-commit-buffer")] = 100
    keep_recent: Annotated[Int, _app("state-commit.sc-keep-recent")] = 1
    snapshot_interval: Annotated[Int, _app("state-commit.sc-snapshot-interval")] = 10000


class StateStoreSection(_Section):
    enable: Annotated[bool, _app("state-store.ss-enable", "Historical state for queries")] = True
    backend: Annotated[Literal["pebbledb", "rocksdb"], _app("state-store.ss-backend")] = "pebbledb"
    keep_recent: Annotated[Int, _app("state-store.ss-keep-recent", "Versions kept; 0 keeps all")] = 100000
    prune_interval: Annotated[Int, _app("state-store.ss-prune-interval", "Seconds")] = 600
    async_write_buffer: Annotated[Int, _app("state-store.ss-async-write-buffer")] = 100


class StorageSection(_Section):
    pruning: Annotated[
        Literal["default", "nothing", "everything", "custom"],
        _app("pruning", "Application state pruning strategy", required_for=_SERVING),
    ] = "default"
    pruning_keep_recent: Annotated[Int | None, _app("pruning-keep-recent", "With pruning=custom")] = None
    pruning_interval: Annotated[Int | None, _app("pruning-interval", "With pruning=custom")] = None
    min_retain_blocks: Annotated[Int | None, _app("min-retain-blocks", "Tendermint block retention")] = None
    state_commit: StateCommitSection = Field(default_factory=StateCommitSection)
    state_store: StateStoreSection = Field(default_factory=StateStoreSection)


class SnapshotSection(_Section):
    interval: Annotated[Int, _app("state-sync.snapshot-interval", "Blocks between state-sync snapshots; 0 off")] = 0
    keep_recent: Annotated[Int, _app("state-sync.snapshot-keep-recent")] = 2
    directory: Annotated[str | None, _app("state-sync.snapshot-directory")] = None


class ChainSection(_Section):
    minimum_gas_prices: Annotated[str | None, _app("minimum-gas-prices", "e.g. 0.02usei")] = None
    halt_height: Annotated[Int | None, _app("halt-height")] = None
    concurrency_workers: Annotated[Int | None, _app("concurrency-workers")] = None
    occ_enabled: Annotated[bool | None, _app("occ-enabled")] = None


class APISection(_Section):
    enable: Annotated[bool, _app("api.enable", "Cosmos REST API")] = True
    address: Annotated[ListenAddress, _app("api.address")] = "tcp://0.0.0.0:1317"
    max_open_connections: Annotated[Int, _app("api.max-open-connections")] = 1000
    enable_unsafe_cors: Annotated[bool, _app("api.enabled-unsafe-cors")] = False


class GRPCSection(_Section):
    enable: Annotated[bool, _app("grpc.enable")] = True
    address: Annotated[ListenAddress, _app("grpc.address")] = "0.0.0.0:9090"


class GRPCWebSection(_Section):
    enable: Annotated[bool, _app("grpc-web.enable")] = True
    address: Annotated[ListenAddress, _app("grpc-web.address")] = "0.0.0.0:9091"


class EVMSection(_Section):
    http_enabled: Annotated[bool, _app("evm.http_enabled", "EVM JSON-RPC over HTTP")] = True
    http_port: Annotated[Port, _app("evm.http_port")] = 8545
    ws_enabled: Annotated[bool, _app("evm.ws_enabled", "EVM JSON-RPC over WebSocket")] = True
    ws_port: Annotated[Port, _app("evm.ws_port")] = 8546
    cors_origins: Annotated[str, _app("evm.cors_origins", "Comma-separated origins", hot=True)] = "*"
    ws_origins: Annotated[str, _app("evm.ws_origins", "Comma-separated origins", hot=True)] = "*"
    simulation_gas_limit: Annotated[Int, _app("evm.simulation_gas_limit", hot=True)] = 10000000
    filter_timeout: Annotated[GoDuration, _app("evm.filter_timeout", hot=True)] = "2m0s"
    max_log_no_block: Annotated[Int, _app("evm.max_log_no_block", hot=True)] = 10000
    max_blocks_for_log: Annotated[Int, _app("evm.max_blocks_for_log", hot=True)] = 2000
    deny_list: Annotated[list[str], _app("evm.deny_list", "EVM RPC methods refused", hot=True)] = Field(
        default_factory=list
    )


class TelemetrySection(_Section):
    enabled: Annotated[bool, _app("telemetry.enabled", "Cosmos SDK telemetry")] = True
    service_name: Annotated[str | None, _app("telemetry.service-name")] = None
    prometheus_retention_time: Annotated[Int, _app("telemetry.prometheus-retention-time", "Seconds; 0 off")] = 60
    prometheus: Annotated[bool, _config("instrumentation.prometheus", "CometBFT Prometheus metrics")] = True
    prometheus_listen_addr: Annotated[ListenAddress, _config("instrumentation.prometheus-listen-addr")] = ":26660"


class SeiConfig(BaseModel):
    """The whole unified config. Build one with `SeiConfig.for_mode(mode)`; see the module docstring."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    version: int = CURRENT_VERSION
    mode: Mode = Mode.FULL
    node: NodeSection = Field(default_factory=NodeSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    network: NetworkSection = Field(default_factory=NetworkSection)
    mempool: MempoolSection = Field(default_factory=MempoolSection)
    consensus: ConsensusSection = Field(default_factory=ConsensusSection)
    statesync: StateSyncSection = Field(default_factory=StateSyncSection)
    tx_index: TxIndexSection = Field(default_factory=TxIndexSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    snapshot: SnapshotSection = Field(default_factory=SnapshotSection)
    chain: ChainSection = Field(default_factory=ChainSection)
    api: APISection = Field(default_factory=APISection)
    grpc: GRPCSection = Field(default_factory=GRPCSection)
    grpc_web: GRPCWebSection = Field(default_factory=GRPCWebSection)
    evm: EVMSection = Field(default_factory=EVMSection)
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)

    @classmethod
    def for_mode(cls, mode: Mode | str) -> SeiConfig:
        """The defaults of `mode`: the model's defaults (a serving full node) with `MODE_DEFAULTS[mode]` on top."""
        chosen = Mode(mode)
        values = cls().model_dump()
        for dotted, value in MODE_DEFAULTS[chosen].items():
            set_dotted(values, dotted, value)
        values["mode"] = chosen
        return cls.model_validate(values)


def set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `values["a"]["b"]["c"] = value` for `"a.b.c"` (intermediate dicts must exist)."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        values = values[part]
    values[leaf] = value


def get_dotted_value(config: BaseModel, dotted: str) -> Any:
    current: Any = config
    for part in dotted.split("."):
        current = getattr(current, part)
    return current


MODE_DEFAULTS: dict[Mode, dict[str, Any]] = {
    # Signs blocks: no public query surface, no historical state, no tx index (each costs disk and attack surface).
    Mode.VALIDATOR: {
        "storage.state_store.enable": False,
        "tx_index.indexer": ["null"],
        "api.enable": False,
        "evm.http_enabled": False,
        "evm.ws_enabled": False,
    },
    # Serves queries with recent history: the model's defaults as they are.
    Mode.FULL: {},
    # Only crawls and gossips addresses: peer exchange on, many connections, nothing served, nothing stored.
    Mode.SEED: {
        "network.p2p.pex": True,
        "network.p2p.max_connections": 1000,
        "storage.pruning": "everything",
        "storage.state_store.enable": False,
        "tx_index.indexer": ["null"],
        "api.enable": False,
        "grpc.enable": False,
        "grpc_web.enable": False,
        "evm.http_enabled": False,
        "evm.ws_enabled": False,
    },
    # Keeps every height of application state and blocks.
    Mode.ARCHIVE: {
        "storage.pruning": "nothing",
        "storage.min_retain_blocks": 0,
        "storage.state_store.enable": True,
        "storage.state_store.keep_recent": 0,
        "tx_index.indexer": ["kv"],
    },
}
"""Per-mode defaults over the model's field defaults, as dotted keys."""

TENDERMINT_MODE = {Mode.VALIDATOR: "validator", Mode.FULL: "full", Mode.SEED: "seed", Mode.ARCHIVE: "full"}
"""config.toml's top-level `mode` for each unified mode (sei-tendermint knows validator, full and seed)."""

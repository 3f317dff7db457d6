"""The unified Sei node configuration, key for key sei-config's (github.com/sei-protocol/sei-config).

The keys, their types, their file and TOML path, their defaults in each mode and their hot-reload flag come from
`sei-config-table.json`, a data table that `scripts/seiconfig-table.py` derives from a sei-config checkout by running
the library (see docs/config-model.md). This module reads that table and lays the project's *documented decisions*
over it (`DEFAULT_DECISIONS`, `UNMANAGED`); nothing else may differ, and tests/chain/test_seiconfig_table.py fails on
any other divergence.

A config is a `SeiConfig`: the mode, the schema version and one value per unified key. A value of `None` means "not
managed": config-apply does not write the key, so seid keeps the file's value or its own default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

CONFIG_TOML = "config.toml"
APP_TOML = "app.toml"


@cache
def table() -> dict[str, Any]:
    """sei-config's registry table (`sei-config-table.json`), as committed."""
    loaded: dict[str, Any] = json.loads(resources.files(__package__).joinpath("sei-config-table.json").read_text())
    return loaded


SOURCE: dict[str, Any] = table()["source"]
CURRENT_VERSION: int = SOURCE["current_schema_version"]
"""The config schema version written to app.toml `[sei] version` (sei-config's CurrentVersion)."""


class Mode(StrEnum):
    """What the node is for. `archive` is a full node that keeps every height (config.toml has no such mode)."""

    VALIDATOR = "validator"
    FULL = "full"
    SEED = "seed"
    ARCHIVE = "archive"


ALL_MODES = frozenset(Mode)

TENDERMINT_MODE = {Mode.VALIDATOR: "validator", Mode.FULL: "full", Mode.SEED: "seed", Mode.ARCHIVE: "full"}
"""config.toml's top-level `mode` for each unified mode (sei-tendermint knows validator, full and seed)."""

META_KEYS = frozenset({"mode", "version"})
"""Registry keys that are the config's own metadata (app.toml `[sei]`), held as `SeiConfig.mode` / `.version`."""

DEFAULT_DECISIONS: dict[tuple[str, Mode], Any] = {
    # sei-config's seed mode keeps the base `tcp://127.0.0.1` listen addresses; a seed that listens on loopback
    # cannot be dialled by anyone, and the pod's readiness probe cannot reach its RPC. Every other mode listens on
    # 0.0.0.0, and so does a seed here.
    ("network.p2p.listen_address", Mode.SEED): "tcp://0.0.0.0:26656",
    ("network.rpc.listen_address", Mode.SEED): "tcp://0.0.0.0:26657",
}
"""Defaults that differ from sei-config on purpose (each is documented in docs/config-model.md)."""

UNMANAGED_REASONS = {
    "chain.moniker": "sei-config defaults it to the host name of the process rendering the file (the sidecar's, not "
    "seid's); the moniker is set by `seid init` / generate-identity and left alone",
    "chain.concurrency_workers": "in validator and seed mode sei-config derives it from the CPU count of the machine "
    "rendering the file, not seid's; left to seid's own default there",
    "evm.worker_pool_size": "derived from the CPU count of the machine rendering the file; left to seid's default",
    "evm.max_concurrent_simulation_calls": "derived from the CPU count of the machine rendering the file; left to "
    "seid's default",
}
"""Why a machine-dependent sei-config default is not written (in the modes where it depends on the machine)."""

_WRITE_MODES_UNMANAGED = (
    "sei-config v0.0.21 writes the v1 name `cosmos_only` under schema version 2 (its own 1 -> 2 migration renames it "
    "to `memiavl_only`, which seid init writes) and v0.0.25+ no longer renders it: left to seid's default"
)
UNMANAGED_DECISIONS = {
    "consensus.wal_path": "the consensus WAL's location is seid's (`seid init` writes data/tendermint/cs.wal/wal); "
    "sei-config's data/cs.wal/wal is an older sei-tendermint default, and moving it under a running node loses its WAL",
    "storage.state_commit.write_mode": _WRITE_MODES_UNMANAGED,
    "storage.state_commit.read_mode": _WRITE_MODES_UNMANAGED,
    "storage.state_store.write_mode": _WRITE_MODES_UNMANAGED,
    "storage.state_store.read_mode": _WRITE_MODES_UNMANAGED,
    **dict.fromkeys(
        ("network.p2p.persistent_peers",),
        "owned by discover-peers / set-genesis-peers: a config-apply must not wipe the peers they wrote",
    ),
    **dict.fromkeys(
        (
            "state_sync.enable",
            "state_sync.rpc_servers",
            "state_sync.trust_height",
            "state_sync.trust_hash",
            "state_sync.trust_period",
            "state_sync.use_local_snapshot",
            "state_sync.backfill_blocks",
        ),
        "owned by configure-state-sync: a config-apply must not wipe the trust point it wrote",
    ),
}
"""sei-config keys the project does not default in any mode (written only when set), and why."""

MACHINE_DEPENDENT_UNDETECTED = frozenset(
    {("chain.concurrency_workers", Mode.VALIDATOR), ("chain.concurrency_workers", Mode.SEED)}
)
"""Machine-dependent defaults the table script cannot see on a small machine: sei-config computes them as
max(10, min(2 x NumCPU, 128)), which is 10 on 1 to 5 CPUs (config.go `defaultConcurrencyWorkers`)."""

DEPRECATED_ALIASES: dict[str, str] = {
    "node.moniker": "chain.moniker",
    "node.db_backend": "storage.db_backend",
    "network.p2p.laddr": "network.p2p.listen_address",
    "network.rpc.laddr": "network.rpc.listen_address",
    "consensus.timeout_propose": "consensus.unsafe_propose_timeout_override",
    "consensus.timeout_propose_delta": "consensus.unsafe_propose_timeout_delta_override",
    "consensus.timeout_vote": "consensus.unsafe_vote_timeout_override",
    "consensus.timeout_vote_delta": "consensus.unsafe_vote_timeout_delta_override",
    "consensus.timeout_commit": "consensus.unsafe_commit_timeout_override",
    "statesync.enable": "state_sync.enable",
    "statesync.rpc_servers": "state_sync.rpc_servers",
    "statesync.trust_height": "state_sync.trust_height",
    "statesync.trust_hash": "state_sync.trust_hash",
    "statesync.trust_period": "state_sync.trust_period",
    "statesync.use_local_snapshot": "state_sync.use_local_snapshot",
    "statesync.backfill_blocks": "state_sync.backfill_blocks",
    "statesync.discovery_time": "state_sync.discovery_time",
    "statesync.fetchers": "state_sync.fetchers",
    "storage.min_retain_blocks": "chain.min_retain_blocks",
    "storage.state_commit.keep_recent": "storage.state_commit.memiavl.snapshot_keep_recent",
    "storage.state_commit.snapshot_interval": "storage.state_commit.memiavl.snapshot_interval",
    "storage.state_store.prune_interval": "storage.state_store.prune_interval_seconds",
    "snapshot.interval": "storage.snapshot_interval",
    "snapshot.keep_recent": "storage.snapshot_keep_recent",
    "snapshot.directory": "storage.snapshot_directory",
    "chain.minimum_gas_prices": "chain.min_gas_prices",
    "api.enable": "api.rest.enable",
    "api.address": "api.rest.address",
    "api.max_open_connections": "api.rest.max_open_connections",
    "api.enable_unsafe_cors": "api.rest.enable_unsafe_cors",
    "grpc.enable": "api.grpc.enable",
    "grpc.address": "api.grpc.address",
    "grpc_web.enable": "api.grpc_web.enable",
    "grpc_web.address": "api.grpc_web.address",
    "telemetry.enabled": "metrics.enabled",
    "telemetry.service_name": "metrics.service_name",
    "telemetry.prometheus_retention_time": "metrics.prometheus_retention_time",
    "telemetry.prometheus": "metrics.enabled",
    "telemetry.prometheus_listen_addr": "metrics.prometheus_listen_addr",
}
"""The project's key names before it adopted sei-config's (API v1alpha1): accepted, resolved, reported deprecated."""


@dataclass(frozen=True)
class Placement:
    """One place a key is written: a file and the dotted TOML path in it (sei-config's spelling)."""

    file: str
    toml: str


@dataclass(frozen=True)
class KeySpec:
    """One unified key, as the table has it plus the project's decisions."""

    key: str
    type: str
    """sei-config's type class: string, int, uint, float, bool, duration, []string, other."""
    env: str
    hot: bool
    placements: tuple[Placement, ...]
    defaults: dict[Mode, Any]
    comma: bool
    """A list written as one comma-separated string (`persistent-peers = "a,b"`), not a TOML array."""
    description: str = ""
    unit: str = ""
    upstream_defaults: dict[Mode, Any] = field(default_factory=dict)


def _spec(row: dict[str, Any]) -> KeySpec:
    key = row["key"]
    placements = tuple(Placement(item["file"], item["toml"]) for item in row["files"])
    comma = row["type"] == "[]string" and any(isinstance(item["value"], str) for item in row["files"])
    # A nil list that sei-config writes as one comma-joined string is `""` on disk, the same as an empty list.
    upstream = {
        mode: [] if comma and row["defaults"][mode.value] is None else row["defaults"][mode.value] for mode in Mode
    }
    defaults = dict(upstream)
    for mode in Mode:
        if (key, mode) in DEFAULT_DECISIONS:
            defaults[mode] = DEFAULT_DECISIONS[(key, mode)]
        if (
            mode.value in row["machine_dependent_modes"]
            or (key, mode) in MACHINE_DEPENDENT_UNDETECTED
            or key in UNMANAGED_DECISIONS
        ):
            defaults[mode] = None
    return KeySpec(
        key=key,
        type=row["type"],
        env=row["env"],
        hot=row["hot"],
        placements=placements,
        defaults=defaults,
        comma=comma,
        description=row["description"],
        unit=row["unit"],
        upstream_defaults=upstream,
    )


LATER_VERSION_KEYS: dict[str, dict[str, Any]] = {
    "chain.freeze_height": {
        "type": "uint",
        "file": APP_TOML,
        "toml": "freeze-height",
        "seen": "sei-config after v0.0.21 (freeze_test.go @ fc2d1efb); seid reads app.toml `freeze-height`",
    },
    "storage.state_store.evm_ss_split": {
        "type": "bool",
        "file": APP_TOML,
        "toml": "state-store.evm-ss-split",
        "seen": "sei-config after v0.0.21 (true in full mode only); seid reads `[state-store] evm-ss-split`",
    },
}
"""Keys of sei-config versions after the table's (v0.0.25+, pinned by seictl HEAD), known from public sources but not
from a checkout: accepted and written when set, never defaulted (see docs/config-model.md)."""


def _later_spec(key: str, info: dict[str, Any]) -> KeySpec:
    return KeySpec(
        key=key,
        type=info["type"],
        env="SEI_" + key.upper().replace(".", "_"),
        hot=False,
        placements=(Placement(info["file"], info["toml"]),),
        defaults=dict.fromkeys(Mode),
        comma=False,
        description=info["seen"],
        upstream_defaults=dict.fromkeys(Mode),
    )


@cache
def key_specs() -> dict[str, KeySpec]:
    """Every registry key of the table (including `mode` and `version`), in the table's (sorted) order, then the
    later-version keys."""
    specs = {row["key"]: _spec(row) for row in table()["keys"]}
    specs.update({key: _later_spec(key, info) for key, info in LATER_VERSION_KEYS.items() if key not in specs})
    return specs


def canonical_key(key: str) -> str:
    """`key` with a deprecated alias resolved to sei-config's name (an unknown key is returned unchanged)."""
    return DEPRECATED_ALIASES.get(key, key)


@dataclass
class SeiConfig:
    """One node's config: its mode, its schema version and a value per unified key (None: not managed)."""

    mode: Mode | str = Mode.FULL
    """A `Mode`; any other string only while it is being validated (it is then an ERROR diagnostic)."""
    version: int = CURRENT_VERSION
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_mode(cls, mode: Mode | str) -> SeiConfig:
        """The defaults of `mode`: sei-config's, with the project's documented decisions on top."""
        chosen = Mode(mode)
        values = {key: spec.defaults[chosen] for key, spec in key_specs().items() if key not in META_KEYS}
        return cls(mode=chosen, version=CURRENT_VERSION, values=_copy(values))

    def get(self, key: str) -> Any:
        """The value of a unified key (or a deprecated alias); `mode` and `version` are the metadata."""
        key = canonical_key(key)
        if key == "mode":
            return str(self.mode)
        if key == "version":
            return self.version
        return self.values[key]

    def replace(
        self, values: dict[str, Any], *, mode: Mode | str | None = None, version: int | None = None
    ) -> SeiConfig:
        """A copy with some values (canonical keys, already typed) and optionally a new mode or version."""
        merged = _copy(self.values)
        chosen_mode: Mode | str = self.mode if mode is None else mode
        chosen_version = self.version if version is None else version
        for key, value in values.items():
            if key == "mode":
                chosen_mode = value
            elif key == "version":
                chosen_version = value
            else:
                merged[key] = value
        if chosen_mode in Mode.__members__.values():
            chosen_mode = Mode(chosen_mode)
        return SeiConfig(mode=chosen_mode, version=chosen_version, values=merged)


def _copy(values: dict[str, Any]) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, list) else value for key, value in values.items()}


_V2_WRITE_MODES = {"cosmos_only": "memiavl_only", "dual_write": "migrate_evm", "split_write": "evm_migrated"}


def migrate(config: SeiConfig, target: int) -> tuple[SeiConfig, list[str]]:
    """`config` raised to schema version `target`, with a description of each step applied (sei-config's
    migrations: 1 -> 2 renames the v1 SeiDB write modes to the FlatKV scheme, seid >= v6.5)."""
    applied: list[str] = []
    current = config
    while current.version < target:
        if current.version == 1:
            renamed = {
                key: _V2_WRITE_MODES[current.values[key]]
                for key in ("storage.state_commit.write_mode", "storage.state_store.write_mode")
                if current.values.get(key) in _V2_WRITE_MODES
            }
            current = current.replace(renamed, version=2)
            applied.append(
                "1 -> 2: SeiDB write modes renamed to the FlatKV scheme (cosmos_only -> memiavl_only, "
                "dual_write -> migrate_evm, split_write -> evm_migrated)"
            )
        else:
            raise ValueError(f"no migration from config version {current.version}")
    return current, applied

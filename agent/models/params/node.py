"""Params of the node tasks that talk to CometBFT RPC or edit the node's configuration:
configure-state-sync, await-condition, discover-peers, config-apply, config-validate and config-reload.

The grammars shared by these tasks and by the unified config model live here, in the bottom layer, once:
a peer address `<node id>@<host>:<port>`, an RPC address `host:port` (or `http(s)://host:port`), and a Go duration
(`"168h0m0s"`, `"500ms"`). A value that does not fit is refused before the handler runs, naming the value.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, field_validator, model_validator

from .base import TaskParams

# --- shared grammars ---------------------------------------------------------------------------------------------

_NODE_ID = re.compile(r"[0-9a-fA-F]{40}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_SERVICE_LABEL = re.compile(r"_[A-Za-z0-9-]{1,62}")
_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+|0")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def check_host(host: str) -> str:
    """A DNS name, an IPv4 address or an IPv6 address (without brackets); raises ValueError naming it."""
    if not host:
        raise ValueError("empty host")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"{host!r} is not a valid host name or IP address")
    return host


def check_srv_name(name: str) -> str:
    """An SRV owner name: service labels with a leading underscore (`_p2p._tcp.`) before a DNS name."""
    labels = name.removesuffix(".").split(".")
    while labels and _SERVICE_LABEL.fullmatch(labels[0]):
        labels.pop(0)
    try:
        check_host(".".join(labels))
    except ValueError:
        raise ValueError(f"{name!r} is not a valid SRV name such as '_p2p._tcp.sei.example.com'") from None
    return name


def parse_nameserver(text: str) -> tuple[str, int]:
    """A resolver address `ip`, `ip:port` or `[ipv6]:port` -> (ip, port); port 53 when absent."""
    address = text.strip()
    try:
        return str(ipaddress.ip_address(address.strip("[]"))), 53
    except ValueError:
        pass
    refusal = f"nameserver {text!r} must be an IP address (optionally with :port)"
    try:
        host, port = split_host_port(address)
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(refusal) from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{whole!r}: port {text!r} is not a number in 1-65535")
    return int(text)


def split_host_port(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); raises ValueError naming the address."""
    if address.startswith("["):
        host, separator, rest = address[1:].partition("]")
        if not separator or not rest.startswith(":"):
            raise ValueError(f"{address!r} is not [ipv6]:port")
        port_text = rest[1:]
    else:
        host, separator, port_text = address.rpartition(":")
        if not separator:
            raise ValueError(f"{address!r} has no :port")
        if ":" in host:
            raise ValueError(f"{address!r}: write an IPv6 host in brackets, [addr]:port")
    try:
        check_host(host)
    except ValueError as error:
        raise ValueError(f"{address!r}: {error}") from None
    return host, _port(port_text, address)


def parse_peer(text: str) -> str:
    """Validate a persistent-peer address `<40-hex node id>@<host>:<port>` and return it with the ID lowercased."""
    peer = text.strip()
    node_id, separator, address = peer.partition("@")
    if not separator:
        raise ValueError(f"peer {text!r} is not <node id>@<host>:<port> (no '@')")
    if not _NODE_ID.fullmatch(node_id):
        raise ValueError(f"peer {text!r}: node ID {node_id!r} is not 40 hexadecimal characters")
    try:
        split_host_port(address)
    except ValueError as error:
        raise ValueError(f"peer {text!r}: {error}") from None
    return f"{node_id.lower()}@{address}"


def parse_rpc_address(text: str) -> str:
    """Validate an RPC address: `host:port`, or `http://`, `https://` or `tcp://` followed by `host:port`."""
    address = text.strip()
    scheme, separator, rest = address.partition("://")
    if separator:
        if scheme.lower() not in ("http", "https", "tcp"):
            raise ValueError(f"RPC address {text!r}: scheme {scheme!r} is not http, https or tcp")
        rest = rest.rstrip("/")
        if "/" in rest:
            raise ValueError(f"RPC address {text!r}: only scheme://host:port is allowed, no path")
    else:
        rest = address
    try:
        split_host_port(rest)
    except ValueError as error:
        raise ValueError(f"RPC address {error}") from None
    return address.rstrip("/")


def go_duration_seconds(text: str) -> float:
    """Seconds in a Go duration string (`"1h30m"`, `"500ms"`, `"0"`); raises ValueError naming it."""
    if not _GO_DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a Go duration such as '168h0m0s', '30s' or '500ms'")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


def _check_duration(text: str) -> str:
    go_duration_seconds(text)
    return text


def _peer_value(value: Any) -> Any:
    return parse_peer(value) if isinstance(value, str) else value


def _rpc_value(value: Any) -> Any:
    return parse_rpc_address(value) if isinstance(value, str) else value


PeerAddress = Annotated[str, BeforeValidator(_peer_value)]
"""`<node id>@<host>:<port>`, node ID lowercased."""
RpcAddress = Annotated[str, BeforeValidator(_rpc_value)]
"""`host:port` or `http(s)://host:port`."""
GoDuration = Annotated[str, AfterValidator(_check_duration)]
"""A Go duration string, kept as written."""
NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

# --- configure-state-sync ------------------------------------------------------------------------------------------


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


# --- await-condition -----------------------------------------------------------------------------------------------


class AwaitConditionParams(TaskParams):
    """`await-condition`: block until the local node reaches a height or has caught up, then optionally stop seid."""

    condition: Literal["height", "catchingUp"] = Field(
        description="`height`: latest height >= targetHeight. `catchingUp`: the node reports catching_up == false "
        "(and, when targetHeight is given, is at or past it)."
    )
    target_height: int | None = Field(default=None, gt=0, description="Required for `height`; must be > 0.")
    action: Literal["", "SIGTERM_SEID"] = Field(
        default="", description="`SIGTERM_SEID`: once the condition holds, stop seid (SIGTERM, SIGKILL after grace)."
    )
    rpc_endpoint: RpcAddress | None = Field(default=None, description="Default: the agent's SEI_RPC_ENDPOINT.")
    poll_interval_seconds: float = Field(default=1.0, ge=0.05, le=60)
    request_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    grace_seconds: float = Field(default=30.0, ge=0, le=3600, description="SIGTERM to SIGKILL delay for the action.")

    @model_validator(mode="after")
    def _height_needs_target(self) -> AwaitConditionParams:
        if self.condition == "height" and self.target_height is None:
            raise ValueError("targetHeight is required when condition is 'height'")
        return self


# --- discover-peers ------------------------------------------------------------------------------------------------


class StaticSource(TaskParams):
    """Peers given verbatim (each validated as `<node id>@<host>:<port>`); no RPC query."""

    type: Literal["static"]
    addresses: list[PeerAddress] = Field(min_length=1)


class Ec2TagsSource(TaskParams):
    """Running EC2 instances carrying all `tags` (every page of DescribeInstances)."""

    type: Literal["ec2Tags"]
    region: NonEmptyStr
    tags: dict[NonEmptyStr, str] = Field(min_length=1)
    address: Literal["public", "private"] = Field(
        default="public", description="Which IP to dial: `public` (falling back to private, as the seed) or `private`."
    )


class DnsSource(TaskParams):
    """Hosts from DNS: A/AAAA records of `hosts` (P2P port = `p2pPort`) and SRV records of `srv` (P2P port from the
    record, its target resolved to addresses)."""

    type: Literal["dns"]
    hosts: list[NonEmptyStr] = Field(default_factory=list)
    srv: list[NonEmptyStr] = Field(default_factory=list)
    nameservers: list[str] = Field(
        default_factory=list, description="`ip` or `ip:port` of resolvers to ask; default: the system's resolv.conf."
    )

    @model_validator(mode="after")
    def _something_to_resolve(self) -> DnsSource:
        if not self.hosts and not self.srv:
            raise ValueError("give at least one name in `hosts` (A records) or `srv` (SRV records)")
        for host in self.hosts:
            check_host(host)
        for name in self.srv:
            check_srv_name(name)
        for server in self.nameservers:
            parse_nameserver(server)
        return self


class KubernetesSource(TaskParams):
    """Running pods matching `labelSelector`, read from the Kubernetes API with the pod's ServiceAccount (only when
    the agent runs in a cluster). The agent's own pod is never a candidate."""

    type: Literal["kubernetes"]
    label_selector: NonEmptyStr
    namespace: str = Field(default="", description="Default: the agent's own namespace.")


PeerSource = Annotated[StaticSource | Ec2TagsSource | DnsSource | KubernetesSource, Field(discriminator="type")]


class DiscoverPeersParams(TaskParams):
    """`discover-peers`: find peers from several sources, learn each one's node ID, write `persistent-peers`."""

    sources: list[PeerSource] = Field(min_length=1)
    rpc_port: int = Field(default=26657, ge=1, le=65535, description="Candidates' RPC port (node ID from /status).")
    # Explicit alias: the camelCase generator would spell it `p2PPort`, which no user types (the docs say p2pPort).
    p2p_port: int = Field(
        default=26656, ge=1, le=65535, alias="p2pPort", description="Candidates' P2P port (in the peer address)."
    )
    query_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    max_peers: int | None = Field(default=None, ge=1, description="Keep at most this many peers (first found first).")


# --- config-apply / config-validate / config-reload ----------------------------------------------------------------

OverrideValue = str | bool | int | float | list[str]
"""An override as sent: a string (sei-config's wire form, parsed by the key's type) or a JSON scalar or list."""


def _check_override_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    for key in overrides:
        parts = key.split(".")
        if not key or not all(re.fullmatch(r"[a-z][a-z0-9_]*", part) for part in parts):
            raise ValueError(f"{key!r} is not a dotted key such as 'network.p2p.persistent_peers'")
    return overrides


class ConfigApplyParams(TaskParams):
    """`config-apply`: sei-config's ConfigIntent. Keys and value types are checked against the config model by the
    handler before any file is touched (an unknown key or a value of the wrong type is a ParamsInvalid naming it)."""

    mode: Literal["validator", "full", "seed", "archive"] | None = Field(
        default=None, description="Node mode; required unless `incremental`."
    )
    overrides: dict[str, OverrideValue] = Field(default_factory=dict, description="Dotted unified key -> value.")
    incremental: bool = Field(
        default=False,
        description="false: the mode's defaults plus overrides are written over every modelled key. true: the "
        "files on disk are the base; only the overrides (and a changed mode) are written.",
    )
    target_version: int = Field(default=0, ge=0, le=1, description="Config schema version; 0 means current (1).")

    @field_validator("overrides")
    @classmethod
    def _dotted_keys(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        return _check_override_keys(overrides)

    @model_validator(mode="after")
    def _mode_unless_incremental(self) -> ConfigApplyParams:
        if not self.incremental and self.mode is None:
            raise ValueError("mode is required unless incremental is true (validator, full, seed or archive)")
        return self


class ConfigValidateParams(TaskParams):
    """`config-validate` takes no params: it validates config.toml and app.toml as they are on disk."""


class ConfigReloadParams(TaskParams):
    """`config-reload`: hot-reloadable keys to change in place (anything else is refused by name)."""

    fields: dict[str, OverrideValue] = Field(min_length=1, description="Dotted unified key -> value.")

    @field_validator("fields")
    @classmethod
    def _dotted_keys(cls, fields: dict[str, Any]) -> dict[str, Any]:
        return _check_override_keys(fields)

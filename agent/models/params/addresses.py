"""Field types for params models that name a node on the network: a peer address `<node id>@<host>:<port>`, an RPC
address `host:port` (or `http(s)://host:port`), a host, a DNS SRV name, a nameserver and a Go duration (`"168h0m0s"`,
`"500ms"`).

They live in the bottom layer, once, because the unified config model and `agent.chain` parse the same grammars as the
task families' params models (which live beside their handlers in `agent/tasks/`). A value that does not fit is
refused before the handler runs, naming the value.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints

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


# --- await-condition -----------------------------------------------------------------------------------------------


# --- discover-peers ------------------------------------------------------------------------------------------------


# --- config-apply / config-validate / config-reload ----------------------------------------------------------------

"""seid's admin gRPC server: the one way to change a running seid's configuration (its log level) without a restart.

sei-chain's `admin` package serves `seiprotocol.seichain.admin.v0.AdminService` when app.toml says
`[admin_server] admin_enabled = true`, on `admin_address` (loopback only, default `127.0.0.1:9095`), over plaintext
HTTP/2 (gRPC without TLS). `SetLogLevel{pattern, level}` changes the level of seid's loggers matching `pattern`
(`*`: every logger and the default) and answers how many it affected. The messages are three-field protobufs, encoded
here by hand; the HTTP/2 framing is the `h2` library's.

Who is dialled: only the `admin_address` of the node's own app.toml, and only when its host is loopback, an address
of this pod's own network namespace (one a socket can bind), or exactly the agent's `SEI_ADMIN_ADDRESS`; a wildcard
host is dialled on loopback. Anything else is refused without a connection (`dial_address`): app.toml can be written
by config-apply's params, and a param must not turn the agent into an h2c client of any host.

What comes back: a gRPC error is reported by its status code and the code's fixed name; the server's `grpc-message`
is percent-decoded, then scrubbed and bounded (`scrub_output`) before it may reach a status. An answer larger than
`MAX_ANSWER_BYTES` is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from agent.io.toml import read_toml
from agent.models.params.addresses import split_host_port
from agent.models.redaction import scrub_output

DEFAULT_ADDRESS = "127.0.0.1:9095"
SET_LOG_LEVEL = "/seiprotocol.seichain.admin.v0.AdminService/SetLogLevel"
MESSAGE_LIMIT = 200
"""Characters of the server's (scrubbed) `grpc-message` kept in an error."""
MAX_ANSWER_BYTES = 64 * 1024
"""A SetLogLevel answer is a few bytes; anything near this is not seid's admin server."""
GRPC_CODES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


class AdminError(Exception):
    """The admin server could not be reached or refused the call (the message says which)."""


class AdminAddressRefused(AdminError):
    """app.toml's admin address is not one the agent may dial; nothing was sent."""


def _pod_local(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `ip` belongs to this network namespace (the pod's): only then can a socket bind it."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def dial_address(address: str, *, allowed: str = "") -> str:
    """The `host:port` to dial for app.toml's `admin_address`: a wildcard host (and `localhost`) becomes loopback.

    `AdminAddressRefused` unless the host is a loopback address, an address of this pod, or the address is exactly
    `allowed` (the agent's `SEI_ADMIN_ADDRESS`). Host names other than `localhost` are refused: where they resolve
    is not the node's to decide.
    """
    try:
        host, port = split_host_port(address.strip())
    except ValueError as error:
        raise AdminAddressRefused(f"app.toml [admin_server] admin_address: {error}") from None
    if allowed and address.strip() == allowed.strip():
        return address.strip()
    if host == "localhost":
        return f"127.0.0.1:{port}"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_unspecified:
            return f"[::1]:{port}" if ip.version == 6 else f"127.0.0.1:{port}"
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if ip.is_loopback or (mapped is not None and mapped.is_loopback) or _pod_local(ip):
            return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    raise AdminAddressRefused(
        f"app.toml [admin_server] admin_address {address!r} is neither loopback nor an address of this pod; the "
        "agent does not dial it (set SEI_ADMIN_ADDRESS to exactly that address to allow it)"
    )


def admin_address(home: Path) -> str | None:
    """`admin_address` from app.toml when seid runs the admin server; None when it does not.

    seid starts it only with `[admin_server] admin_enabled = true` *and* the REST API or gRPC enabled (sei-chain
    starts it from `RegisterLocalServices`, which seid calls only when `[api] enable` or `[grpc] enable` is true).
    """
    document = read_toml(home / "config" / "app.toml", missing_ok=True)
    section: Any = document.get("admin_server", {})
    if not isinstance(section, dict) or section.get("admin_enabled") is not True:
        return None
    if not any(_enabled(document, table) for table in ("api", "grpc")):
        return None
    address = section.get("admin_address") or DEFAULT_ADDRESS
    return str(address)


def _enabled(document: dict[str, Any], table: str) -> bool:
    section = document.get(table)
    return isinstance(section, dict) and section.get("enable") is True


def _field(number: int, text: str) -> bytes:
    data = text.encode()
    return bytes([number << 3 | 2]) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _affected(message: bytes) -> int:
    """Field 3 (`affected`, varint) of a SetLogLevelResponse; other fields are skipped."""
    position, affected = 0, 0
    while position < len(message):
        key, position = _read_varint(message, position)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, position = _read_varint(message, position)
            if number == 3:
                affected = value
        elif kind == 2:
            length, position = _read_varint(message, position)
            position += length
        else:
            raise AdminError(f"unexpected protobuf wire type {kind} in the SetLogLevel answer")
    return affected


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise AdminError("truncated protobuf in the SetLogLevel answer")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


async def set_log_level(address: str, level: str, *, pattern: str = "*", seconds: float = 10.0) -> int:
    """Set the level of seid's loggers matching `pattern`; returns how many loggers it affected.

    `address` is dialled as given: callers pass it through `dial_address` first. `AdminError` when the server cannot
    be reached within `seconds`, breaks the protocol, or answers with a gRPC error (its code, name and scrubbed text).
    """
    host, _, port = address.rpartition(":")
    try:
        return await asyncio.wait_for(_call(host.strip("[]"), int(port), pattern, level), seconds)
    except (OSError, TimeoutError, ValueError) as error:
        raise AdminError(f"seid admin server at {address}: {error or type(error).__name__}") from None
    except h2.exceptions.H2Error as error:
        raise AdminError(f"seid admin server at {address}: HTTP/2 protocol error ({type(error).__name__})") from None


def grpc_failure(status: str, message: str) -> str:
    """`gRPC status 3 (INVALID_ARGUMENT): <scrubbed, bounded message>`: the code and its fixed name; the server's own
    text only after percent-decoding, scrubbing and bounding."""
    code = int(status) if status.isdigit() and len(status) <= 3 else None
    name = GRPC_CODES.get(code, "not a gRPC status code") if code is not None else "missing or malformed"
    shown = str(code) if code is not None else "?"
    text = scrub_output(unquote(message), MESSAGE_LIMIT, keep="head") if message else ""
    return f"gRPC status {shown} ({name})" + (f": {text}" if text else "")


async def _call(host: str, port: int, pattern: str, level: str) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        connection.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", SET_LOG_LEVEL),
                (":authority", f"{host}:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        body = _field(1, pattern) + _field(2, level)
        connection.send_data(stream, struct.pack(">BI", 0, len(body)) + body, end_stream=True)
        writer.write(connection.data_to_send())
        await writer.drain()
        return await _answer(connection, reader, writer, stream)
    finally:
        writer.close()


async def _answer(
    connection: h2.connection.H2Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: int
) -> int:
    payload = b""
    headers: dict[str, str] = {}
    while True:
        data = await reader.read(65536)
        if not data:
            raise AdminError("the connection closed before the answer")
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                headers.update({str(name): str(value) for name, value in event.headers or []})
            elif isinstance(event, h2.events.DataReceived):
                payload += event.data or b""
                if len(payload) > MAX_ANSWER_BYTES:
                    raise AdminError(f"answer larger than {MAX_ANSWER_BYTES} bytes: not seid's admin server")
                connection.acknowledge_received_data(event.flow_controlled_length or 0, stream)
            elif isinstance(event, h2.events.StreamReset):
                raise AdminError(f"stream reset (error code {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded):
                status = headers.get("grpc-status", "")
                if status != "0":
                    raise AdminError(grpc_failure(status, headers.get("grpc-message", "")))
                return _affected(payload[5:])
        writer.write(connection.data_to_send())
        await writer.drain()

"""seid's admin gRPC server: the one way to change a running seid's configuration (its log level) without a restart.

sei-chain's `admin` package serves `seiprotocol.seichain.admin.v0.AdminService` when app.toml says
`[admin_server] admin_enabled = true`, on `admin_address` (loopback only, default `127.0.0.1:9095`), over plaintext
HTTP/2 (gRPC without TLS). `SetLogLevel{pattern, level}` changes the level of seid's loggers matching `pattern`
(`*`: every logger and the default) and answers how many it affected. The messages are three-field protobufs, encoded
here by hand; the HTTP/2 framing is the `h2` library's.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events

from agent.io.toml import read_toml

DEFAULT_ADDRESS = "127.0.0.1:9095"
SET_LOG_LEVEL = "/seiprotocol.seichain.admin.v0.AdminService/SetLogLevel"


class AdminError(Exception):
    """The admin server could not be reached or refused the call (the message says which)."""


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

    `AdminError` when the server cannot be reached within `seconds` or answers with a gRPC error.
    """
    host, _, port = address.rpartition(":")
    try:
        return await asyncio.wait_for(_call(host.strip("[]"), int(port), pattern, level), seconds)
    except (OSError, TimeoutError, ValueError) as error:
        raise AdminError(f"seid admin server at {address}: {error or type(error).__name__}") from None


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
                connection.acknowledge_received_data(event.flow_controlled_length or 0, stream)
            elif isinstance(event, h2.events.StreamReset):
                raise AdminError(f"stream reset (error code {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded):
                status = headers.get("grpc-status", "")
                if status != "0":
                    raise AdminError(f"gRPC status {status or 'missing'}: {headers.get('grpc-message', '')}")
                return _affected(payload[5:])
        writer.write(connection.data_to_send())
        await writer.drain()

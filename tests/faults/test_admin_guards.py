"""config-reload's admin gRPC client under hostile config and a hostile server (issue 21 B10): it dials only the
admin address of the node's own app.toml when that is loopback, pod-local or the agent's SEI_ADMIN_ADDRESS, and the
server's `grpc-message` reaches the status only as a fixed code name plus scrubbed, bounded text."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from agent.chain.admin import MESSAGE_LIMIT, AdminAddressRefused, dial_address
from agent.io.toml import prepare_toml_patch
from agent.models import TaskType
from tests.chain.sei_files import install_sample_config
from tests.fixtures.common import HandlerRunner
from tests.fixtures.seid_admin import FakeAdmin, running_fake_admin


@pytest.fixture
async def fake_admin() -> AsyncIterator[FakeAdmin]:
    async with running_fake_admin() as admin:
        yield admin


def enable_admin(home: Path, address: str) -> None:
    install_sample_config(home)
    patch = {"admin_server": {"admin_enabled": True, "admin_address": address}, "grpc": {"enable": True}}
    prepare_toml_patch(home / "config" / "app.toml", patch, label="app.toml").write()


async def test_an_admin_address_off_the_pod_is_never_dialled(
    home: Path, run_handler: HandlerRunner, fake_admin: FakeAdmin
) -> None:
    port = fake_admin.address.rpartition(":")[2]
    enable_admin(home, f"admin.nodetask.invalid:{port}")  # e.g. written by a config-apply override
    result = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"logging.level": "debug"}})
    assert result is not None and result["appliedLive"] == []
    assert any("neither loopback nor an address of this pod" in note for note in result["notes"])
    assert fake_admin.requests == []


async def test_the_servers_grpc_message_reaches_the_result_only_scrubbed_and_bounded(
    home: Path, run_handler: HandlerRunner, fake_admin: FakeAdmin
) -> None:
    secret_hex = "ab" * 32
    fake_admin.status = 3
    fake_admin.message = quote(f"password=hunter2 key {secret_hex} \x1b[31m" + "x" * 5000)
    enable_admin(home, fake_admin.address)
    result = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"logging.level": "debug"}})
    assert result is not None and result["appliedLive"] == []
    (note,) = [note for note in result["notes"] if "not applied live" in note]
    assert "gRPC status 3 (INVALID_ARGUMENT)" in note
    assert "hunter2" not in note and secret_hex not in note and "\x1b" not in note
    assert len(note) < MESSAGE_LIMIT + 200
    assert fake_admin.requests  # it was asked: the refusal came from the server


@pytest.mark.parametrize(
    ("status", "shown"),
    [("16", "gRPC status 16 (UNAUTHENTICATED)"), ("99", "gRPC status 99 (not a gRPC status code)"), ("x", "(missing")],
)
async def test_an_unknown_or_malformed_grpc_status_is_named_not_echoed(
    home: Path, run_handler: HandlerRunner, fake_admin: FakeAdmin, status: str, shown: str
) -> None:
    fake_admin.status = status  # type: ignore[assignment]  # the fake sends str(status) as the trailer
    enable_admin(home, fake_admin.address)
    result = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"logging.level": "debug"}})
    assert result is not None
    assert any(shown in note for note in result["notes"])


def _local_non_loopback() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: no packet is sent; only the route is looked up
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else str(address)


@pytest.mark.parametrize(
    ("address", "dialled"),
    [
        ("127.0.0.1:9095", "127.0.0.1:9095"),
        ("127.0.0.2:9095", "127.0.0.2:9095"),
        ("localhost:9095", "127.0.0.1:9095"),
        ("0.0.0.0:9095", "127.0.0.1:9095"),
        ("[::]:9095", "[::1]:9095"),
        ("[::1]:9095", "[::1]:9095"),
    ],
)
def test_loopback_and_wildcard_admin_addresses_are_dialled_on_loopback(address: str, dialled: str) -> None:
    assert dial_address(address) == dialled


@pytest.mark.parametrize("address", ["198.51.100.7:9095", "admin.example.com:9095", "10.255.255.254:9095", "nope"])
def test_other_admin_addresses_are_refused_unless_the_agent_allows_exactly_them(address: str) -> None:
    with pytest.raises(AdminAddressRefused):
        dial_address(address)
    if ":" in address:
        assert dial_address(address, allowed=address) == address


def test_an_address_of_the_pod_itself_is_pod_local() -> None:
    own = _local_non_loopback()
    if own is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    assert dial_address(f"{own}:9095") == f"{own}:9095"

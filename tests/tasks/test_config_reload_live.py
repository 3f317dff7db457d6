"""config-reload makes the running seid take `logging.level` through its admin gRPC server (a stand-in speaking real
gRPC over HTTP/2 here; verified against a real seid in docs/config-model.md), and says a restart is required for
everything it could not apply."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.chain.admin import SET_LOG_LEVEL, AdminError, set_log_level
from agent.io.toml import prepare_toml_patch, read_toml
from agent.models import TaskType
from tests.chain.sei_files import install_sample_config
from tests.fixtures.common import HandlerRunner
from tests.fixtures.seid_admin import FakeAdmin, running_fake_admin


@pytest.fixture
async def fake_admin() -> AsyncIterator[FakeAdmin]:
    async with running_fake_admin() as admin:
        yield admin


def enable_admin(home: Path, address: str, *, grpc: bool = True) -> None:
    patch = {"admin_server": {"admin_enabled": True, "admin_address": address}, "grpc": {"enable": grpc}}
    if not grpc:
        patch["api"] = {"enable": False}
    prepare_toml_patch(home / "config" / "app.toml", patch, label="app.toml").write()


async def test_set_log_level_calls_the_admin_service(fake_admin: FakeAdmin) -> None:
    assert await set_log_level(fake_admin.address, "debug") == 42
    assert fake_admin.requests == [(SET_LOG_LEVEL, "*", "debug")]


async def test_a_grpc_error_is_reported_with_its_status(fake_admin: FakeAdmin) -> None:
    fake_admin.status, fake_admin.message = 3, "invalid log level"
    with pytest.raises(AdminError, match=r"gRPC status 3 \(INVALID_ARGUMENT\): invalid log level"):
        await set_log_level(fake_admin.address, "loud")


async def test_an_unreachable_admin_server_is_an_admin_error() -> None:
    with socket.socket() as reserved:  # bound, never listening: a connection to it is refused
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        with pytest.raises(AdminError, match=f"seid admin server at 127.0.0.1:{port}"):
            await set_log_level(f"127.0.0.1:{port}", "debug", seconds=5)


async def test_logging_level_is_applied_live_when_seid_runs_the_admin_server(
    home: Path,
    run_handler: HandlerRunner,
    fake_admin: FakeAdmin,
) -> None:
    install_sample_config(home)
    enable_admin(home, fake_admin.address)
    result = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"logging.level": "debug"}})
    assert result is not None
    assert (result["appliedLive"], result["restartRequired"], result["pendingRestart"]) == (
        ["logging.level"],
        False,
        [],
    )
    assert fake_admin.requests == [(SET_LOG_LEVEL, "*", "debug")]
    assert read_toml(home / "config" / "config.toml")["log-level"] == "debug"


async def test_keys_nothing_can_apply_live_still_need_a_restart(
    home: Path,
    run_handler: HandlerRunner,
    fake_admin: FakeAdmin,
) -> None:
    install_sample_config(home)
    enable_admin(home, fake_admin.address)
    result = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"logging.level": "warn", "mempool.size": 3000}})
    assert result is not None
    assert (result["appliedLive"], result["restartRequired"]) == (["logging.level"], True)
    assert result["pendingRestart"] == ["mempool.size"]
    assert "take effect when seid restarts" in result["notes"][-1]


@pytest.mark.parametrize("failure", ["admin-off", "no-api-no-grpc", "refused"])
async def test_a_reload_seid_did_not_take_is_never_reported_as_applied(
    home: Path,
    run_handler: HandlerRunner,
    fake_admin: FakeAdmin,
    failure: str,
) -> None:
    install_sample_config(home)
    if failure == "no-api-no-grpc":
        enable_admin(home, fake_admin.address, grpc=False)
    elif failure == "refused":
        enable_admin(home, fake_admin.address)
        fake_admin.status, fake_admin.message = 3, "invalid log level"
    result = await run_handler(TaskType.CONFIG_RELOAD, {"fields": {"logging.level": "error"}})
    assert result is not None
    assert (result["appliedLive"], result["restartRequired"], result["pendingRestart"]) == ([], True, ["logging.level"])
    assert read_toml(home / "config" / "config.toml")["log-level"] == "error"  # the file is changed either way
    assert len(fake_admin.requests) == (1 if failure == "refused" else 0)
    assert result["notes"]

"""reset-data on real files: what it keeps, the signing state it writes, and resuming after a crash mid-wipe.
(Stopping and restarting real nodes is in tests/chain_real/test_lifecycle_real.py.)"""

from __future__ import annotations

import json
import secrets
import socket
from pathlib import Path

import pytest

from agent.io.files import marker_path
from agent.models import TaskError, TaskType
from agent.models.settings import AgentSettings
from agent.tasks.lifecycle import TRASH_DIR
from tests.fixtures.common import HandlerRunner


@pytest.fixture
def runner(settings: AgentSettings) -> HandlerRunner:
    with socket.socket() as probe:  # an RPC address with nothing behind it: the node is "stopped"
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return HandlerRunner(
        settings.model_copy(
            update={"rpc_endpoint": f"http://127.0.0.1:{port}", "seid_binary": f"seid-{secrets.token_hex(4)}"}
        )
    )


def validator_home(home: Path, height: int = 1234) -> None:
    data = home / "data"
    (data / "application.db").mkdir(parents=True, exist_ok=True)
    (data / "application.db" / "000001.ldb").write_bytes(b"x" * 1000)
    (data / "blockstore.db").mkdir(exist_ok=True)
    (data / "blockstore.db" / "000002.ldb").write_bytes(b"y" * 500)
    (data / "priv_validator_state.json").write_text(
        json.dumps({"height": str(height), "round": 1, "step": 3, "signature": "c2ln", "signbytes": "AB"})
    )
    (home / "config" / "node_key.json").write_text('{"priv_key": "keep me"}')
    marker_path(home, "statesync").write_text("")
    marker_path(home, "snapshot").write_text("")


def state(home: Path) -> dict[str, object]:
    return json.loads((home / "data" / "priv_validator_state.json").read_text())


async def test_only_data_is_wiped_and_the_last_signed_height_is_kept(runner: HandlerRunner, home: Path) -> None:
    validator_home(home)

    result = await runner(TaskType.RESET_DATA)

    assert result is not None and result["wipedBytes"] >= 1500 and result["resumed"] is False
    assert sorted(entry.name for entry in (home / "data").iterdir()) == ["priv_validator_state.json"]
    assert state(home) == {"height": "1234", "round": 1, "step": 3}  # the old signature is not carried
    assert ((home / "data" / "priv_validator_state.json").stat().st_mode & 0o777) == 0o600
    assert (home / "config" / "node_key.json").read_text() == '{"priv_key": "keep me"}'
    assert not marker_path(home, "statesync").exists()
    assert marker_path(home, "snapshot").exists()


async def test_keep_signing_state_false_starts_at_height_zero(runner: HandlerRunner, home: Path) -> None:
    validator_home(home)
    await runner(TaskType.RESET_DATA, {"keepSigningState": False})
    assert state(home) == {"height": "0", "round": 0, "step": 0}


async def test_a_run_after_a_crash_mid_wipe_finishes_it(runner: HandlerRunner, home: Path) -> None:
    validator_home(home, height=900)
    # What a crash leaves: some entries already in the trash (with the signing state), one still in data/.
    attempt = home / "data" / TRASH_DIR / "1"
    attempt.mkdir(parents=True)
    (home / "data" / "application.db").rename(attempt / "application.db")
    (home / "data" / "priv_validator_state.json").rename(attempt / "priv_validator_state.json")

    result = await runner(TaskType.RESET_DATA)

    assert result is not None and result["resumed"] is True
    assert result["wipedBytes"] >= 1500  # the crashed run's part counts too
    assert sorted(entry.name for entry in (home / "data").iterdir()) == ["priv_validator_state.json"]
    assert state(home)["height"] == "900"  # found in the trash


async def test_running_it_again_is_harmless(runner: HandlerRunner, home: Path) -> None:
    validator_home(home)
    await runner(TaskType.RESET_DATA)
    again = await runner(TaskType.RESET_DATA)
    assert again is not None and again["wipedBytes"] < 100
    assert state(home) == {"height": "1234", "round": 1, "step": 3}


async def test_an_unreadable_signing_state_stops_before_anything_moves(runner: HandlerRunner, home: Path) -> None:
    validator_home(home)
    (home / "data" / "priv_validator_state.json").write_text("{not json")
    with pytest.raises(TaskError, match="cannot carry the validator's last signed height") as raised:
        await runner(TaskType.RESET_DATA)
    assert raised.value.reason == "SigningStateUnreadable"
    assert (home / "data" / "application.db" / "000001.ldb").exists()


async def test_a_store_inside_data_is_never_wiped(runner: HandlerRunner, home: Path) -> None:
    validator_home(home)
    runner.settings = runner.settings.model_copy(update={"db_path": home / "data" / "agent.db"})
    with pytest.raises(TaskError, match="inside"):
        await runner(TaskType.RESET_DATA)
    assert (home / "data" / "blockstore.db").exists()

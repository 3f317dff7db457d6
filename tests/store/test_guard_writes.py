"""`GuardedStore.writes_settled`: the status writer waits on it so that a task finishing at once is one patch."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from agent.store import GuardedStore, SqliteStore
from tests.fixtures.waiting import wait_until


@pytest.mark.parametrize("write", [True, False], ids=["write-in-flight", "read-in-flight"])
async def test_writes_settled_waits_for_a_write_on_the_store_thread_not_for_a_read(tmp_path: Path, write: bool) -> None:
    guarded = GuardedStore(SqliteStore(tmp_path / "agent.db"))
    entered, release = threading.Event(), threading.Event()

    def slow() -> None:
        entered.set()
        release.wait(10)

    call = asyncio.create_task(guarded.call("slow", slow, write=write))
    try:
        await wait_until(entered.is_set, what="the slow write entered", interval=0.001)
        assert await guarded.writes_settled(within=0.1) is not write
    finally:
        release.set()
        await call
    assert await guarded.writes_settled(within=0.1)
    await guarded.close()

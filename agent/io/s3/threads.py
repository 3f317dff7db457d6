"""The bridge between the event loop and blocking S3 work in worker threads: cancellation that waits for the thread,
and progress carried back to the loop. Shared with other blocking pipelines (archives, genesis downloads)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

PROGRESS_INTERVAL = 0.25

ByteProgress = Callable[[int, int | None], None]
"""`progress(bytes_done, total_bytes_or_None)`."""


class OperationCancelled(Exception):
    """Raised inside a worker thread when the task that owns it was cancelled (see `run_blocking`)."""


async def run_blocking(fn: Callable[[threading.Event], T]) -> T:
    """Run `fn(cancel)` in a worker thread and return its result.

    When the awaiting task is cancelled, `cancel` is set and this waits for `fn` to return (it must check the event
    between chunks of work and raise `OperationCancelled`), then re-raises `CancelledError`: the caller's cleanup
    never races a thread that is still writing.
    """
    cancel = threading.Event()
    future = asyncio.ensure_future(asyncio.to_thread(fn, cancel))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved so asyncio does not log "exception was never retrieved"
        raise


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise OperationCancelled()


class ProgressRelay:
    """Carries byte counts from a worker thread to a callback on the event loop, throttled to a few per second."""

    def __init__(self, callback: ByteProgress | None, interval: float = PROGRESS_INTERVAL):
        self._callback = callback
        self._loop = asyncio.get_running_loop() if callback else None
        self._interval = interval
        self._last = 0.0

    def __call__(self, done: int, total: int | None, *, final: bool = False) -> None:
        if self._callback is None or self._loop is None:
            return
        now = time.monotonic()
        if final or now - self._last >= self._interval:
            self._last = now
            if _on_loop(self._loop):
                self._callback(done, total)
            else:
                self._loop.call_soon_threadsafe(self._callback, done, total)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

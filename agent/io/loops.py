"""Background loops that never die of an unexpected exception, and log lines that cannot flood the log.

Every long-lived background activity of the agent (status writer, Event recorder, heartbeat, resync, retention, the
store's recovery probe) runs under `supervise` or `every`: an exception is logged with its traceback (at most once
per `LogThrottle` interval for the same loop, with a count of the repeats) and the loop starts again after a capped
exponential backoff. Only cancellation ends them, so the agent never answers probes while a loop it
needs is dead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LOOP_BACKOFF_INITIAL = 1.0
LOOP_BACKOFF_CAP = 30.0


@dataclass
class LogThrottle:
    """Lets one message through per `interval` seconds and counts the ones it held back.

    `allow()` returns None while throttled, else the number of suppressed calls since the last message (0 the first
    time). Used for errors that can repeat thousands of times a second (accept() out of descriptors, a full store).
    """

    interval: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _last: float = field(default=float("-inf"), init=False)
    _suppressed: int = field(default=0, init=False)

    def allow(self) -> int | None:
        now = self.clock()
        if now - self._last < self.interval:
            self._suppressed += 1
            return None
        suppressed, self._suppressed, self._last = self._suppressed, 0, now
        return suppressed

    def reset(self) -> None:
        """Let the next message through at once (the condition it reported has ended)."""
        self._last = float("-inf")
        self._suppressed = 0


def _backoff(failures: int) -> float:
    base = min(LOOP_BACKOFF_CAP, LOOP_BACKOFF_INITIAL * float(2 ** max(0, failures - 1)))
    return base * random.uniform(0.8, 1.2)  # jitter, not cryptography


async def supervise(name: str, body: Callable[[], Awaitable[None]], *, throttle: LogThrottle | None = None) -> None:
    """Run `body()` until cancelled; if it raises (or returns), log it and run it again after a backoff.

    The backoff restarts from its initial delay once a run of `body` lasted longer than the cap (it was healthy).
    """
    throttle = throttle or LogThrottle()
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await body()
            problem: BaseException | None = None
        except asyncio.CancelledError:
            raise
        except Exception as error:
            problem = error
        if time.monotonic() - started > LOOP_BACKOFF_CAP:
            failures = 0
        failures += 1
        delay = _backoff(failures)
        suppressed = throttle.allow()
        if suppressed is not None:
            repeats = f" ({suppressed} more failure(s) since the last report)" if suppressed else ""
            if problem is None:
                log.error("background loop %s ended unexpectedly%s; restarting in %.1fs", name, repeats, delay)
            else:
                log.error(
                    "background loop %s failed%s; restarting in %.1fs",
                    name,
                    repeats,
                    delay,
                    exc_info=(type(problem), problem, problem.__traceback__),
                )
        await asyncio.sleep(delay)


async def every(
    name: str,
    interval: float,
    step: Callable[[], Awaitable[object]],
    *,
    first_delay: float | None = None,
    wake: asyncio.Event | None = None,
    throttle: LogThrottle | None = None,
) -> None:
    """Call `step()` every `interval` seconds (first after `first_delay`, default `interval`) until cancelled.

    A failing step is logged (throttled) and the next one runs after a backoff no longer than `interval`. Setting
    `wake` runs the next step at once (e.g. the store became writable again); the loop clears it.
    """
    throttle = throttle or LogThrottle()
    failures = 0
    delay = interval if first_delay is None else first_delay
    while True:
        if wake is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(wake.wait(), delay)
            except TimeoutError:
                pass
            wake.clear()
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failures += 1
            delay = min(interval, _backoff(failures))
            suppressed = throttle.allow()
            if suppressed is not None:
                repeats = f" ({suppressed} more failure(s) since the last report)" if suppressed else ""
                log.error(
                    "%s failed%s; next try in %.1fs",
                    name,
                    repeats,
                    delay,
                    exc_info=(type(error), error, error.__traceback__),
                )
            continue
        failures = 0
        throttle.reset()
        delay = interval

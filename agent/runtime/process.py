"""`AgentRuntime`: the one object that owns an agent process, whatever drives it.

Every way of running the agent (`nodetask-agent run`, `serve`, `seictl serve`, `local`) is the same process with other
front doors plugged in (`FrontDoor`): the NodeTask watch (agent.operator), the HTTP API (agent.server), the local plan
(agent.cli.local). A front door contributes routes or watchers and its own steps; it never opens a store, builds an
engine or installs a lifecycle of its own. What the runtime owns, so that it holds on every front door:

- the home and the store, exclusively: an exclusive `flock` on the home directory (one runner per home, whatever
  store it names: temporary-file cleanup may only run where no other runner writes) and the store's own `<db>.lock`
  (one runner per store); the store opened and migrated; temporary files a killed process left in the home removed;
- the engine (`Engine(`), built here only, with `NODETASK_SHUTDOWN_GRACE_SECONDS` as its stop grace;
- the metrics (`AgentMetrics`), bound once to the engine: running and overdue tasks, readiness and `nodetask_store_up`;
- the background loops, each under `agent.io.loops.supervise` (none can die of an exception): retention, the store's
  recovery probe (a store full or locked, then freed, recovers without a restart), and whatever loops the front doors
  add (status writer, Event recorder, heartbeat, resync);
- SIGTERM/SIGINT (main thread only) and the stop, in `SHUTDOWN_ORDER`.

Start-up: `open` (synchronous) runs each door's `check` (an exit code stops the process before anything is opened),
takes the home and the store and builds the engine; `start` installs the signal handlers, runs each door's `start`
(the HTTP server listens from here on: probes answer during start-up) and the runtime's loops. Then the main door's
`serve` is the process's work (the watch, or the local plan); with no main door the runtime resumes the tasks a
previous process left running and serves until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from agent.engine import Engine
from agent.io.files import clean_temporary_files
from agent.io.loops import supervise
from agent.models.settings import AgentSettings
from agent.store import SqliteStore, StoreError, StoreInUse
from agent.tasks import HandlerRegistry, KubeReader, default_registry

from .metrics import AgentMetrics

log = logging.getLogger(__name__)

SHUTDOWN_ORDER = (
    "engine",
    "status-writer",
    "event-recorder",
    "kopf",
    "background",
    "http-server",
    "api-client",
    "store",
)
"""`AgentRuntime.stop`'s steps, in order (each front-door set takes the steps of the parts it has): handlers stop
first (their rows stay running for the next start, and nothing they do afterwards reaches the store); the front doors
drain what the handlers produced (statuses and Events, while the API client is open) and end their watch; the
background loops end; probes answer until everything that writes has stopped (`close`: the HTTP server, then the API
client); the store is closed last, which records the clean stop (a missing record is how the next start counts a
kill)."""


class HomeInUse(StoreInUse):
    """Another runner holds the node home (with this store or another): one runner per home."""


class FrontDoor:
    """What drives the runtime: hooks called in the order of the module docstring; each does nothing by default.

    `main`: this door's `serve` is the process's work (at most one door per process). Steps it takes on stop are
    appended to `runtime.steps` with names from `SHUTDOWN_ORDER`.
    """

    main = False

    def check(self, runtime: AgentRuntime) -> int | None:
        """Before anything is opened: an exit code if the process cannot run (e.g. no identity, no credentials)."""
        return None

    def kube(self) -> KubeReader | None:
        """The Kubernetes reader handlers get (`TaskContext.kube`), if this door has one."""
        return None

    async def start(self, runtime: AgentRuntime) -> None:
        """The store is open and the engine built: start serving (listeners, routes, loops via `runtime.spawn`)."""

    async def serve(self, runtime: AgentRuntime) -> int:
        """The process's work, for the main door, until `runtime.stop_flag` is set; the exit code."""
        await runtime.stop_flag.wait()
        return 0

    async def drain(self, runtime: AgentRuntime) -> None:
        """After the engine stopped: flush what the handlers produced and end watches."""

    async def close(self, runtime: AgentRuntime) -> None:
        """After the background loops ended: stop serving and close clients."""


class AgentRuntime:
    """One agent process: `start`, `serve`, `stop` (or `run` for all three), with `steps` the stop steps taken."""

    def __init__(
        self,
        settings: AgentSettings,
        doors: Sequence[FrontDoor],
        *,
        registry: HandlerRegistry | None = None,
        stop: asyncio.Event | None = None,
        serving: asyncio.Event | None = None,
        say: Callable[[str], None] | None = None,
        exclusive: bool = True,
    ) -> None:
        """`serving` is set once the process serves (every door started, the work begun); `say` reports why the
        process cannot start (default: the log). `exclusive=False` (in-process test agents that share one home on
        purpose, as the chain tier's) takes neither lock and therefore removes no temporary files."""
        if sum(1 for door in doors if door.main) > 1:
            raise ValueError("at most one main front door per process")
        self.settings = settings
        self.exclusive = exclusive
        self.doors = list(doors)
        self.registry = registry or default_registry()
        self.stop_flag = stop or asyncio.Event()
        self.serving = serving or asyncio.Event()
        self.session = uuid.uuid4().hex[:12]
        """Random per process start: tells this process's writes from an earlier one's of the same pod."""
        self.steps: list[str] = []
        self.metrics = AgentMetrics()
        self.store: SqliteStore | None = None
        self.engine: Engine | None = None
        self.removed: list[Path] = []
        """Temporary files a killed process had left in the home, removed at start."""
        self._say = say or (lambda message: log.error("%s", message))
        self._home_fd: int | None = None
        self._background: list[asyncio.Task[None]] = []
        self._signals: list[int] = []

    @property
    def identity(self) -> dict[str, str]:
        """Who this process is: the pod (downward API, empty outside a cluster) and the session."""
        settings = self.settings
        return {
            "pod": settings.pod_name,
            "namespace": settings.pod_namespace,
            "podUID": settings.pod_uid,
            "session": self.session,
        }

    @property
    def running_engine(self) -> Engine:
        assert self.engine is not None, "start() first"
        return self.engine

    # ------------------------------------------------------------------------------------------------ start

    def open(self) -> int | None:
        """Each door's `check`, then the home and the store, and the engine (all synchronous: the engine exists once
        this returns); an exit code if the process cannot run. `start` calls it unless it was called."""
        if self.engine is not None:
            return None
        for door in self.doors:
            failed = door.check(self)
            if failed is not None:
                return failed
        settings = self.settings
        try:
            if self.exclusive:
                self._lock_home()
            store = SqliteStore(settings.store_path, exclusive=self.exclusive, owner={"podUID": settings.pod_uid})
        except StoreError as error:
            self._unlock_home()
            self._say(str(error))
            return 1
        self.store = store
        if store.unclean_stops:
            log.warning(
                "the previous agent process did not stop cleanly (%d time(s) in a row): killed, OOM-killed or crashed",
                store.unclean_stops,
            )
        if self.exclusive:  # safe only while no other runner can write in this home
            self.removed = clean_temporary_files(settings.home)
        if self.removed:
            log.info("removed %d temporary file(s) left by an interrupted agent: %s", len(self.removed), self.removed)
        kube = next((reader for door in self.doors if (reader := door.kube()) is not None), None)
        engine = self.engine = Engine(self.registry, store, settings, stop_grace=settings.shutdown_grace, kube=kube)
        self.metrics.bind(
            running=lambda: len(engine.running()),
            ready=engine.healthz,
            overdue=lambda: len(engine.overdue()),
            store_up=lambda: engine.store_health().ok,
        )
        engine.add_listener(self.metrics.observe)
        return None

    async def start(self) -> int | None:
        """`open`, then SIGTERM/SIGINT, every door's `start` and the runtime's loops; an exit code if the process
        cannot run."""
        failed = self.open()
        if failed is not None:
            return failed
        engine = self.running_engine
        self.install_signal_handlers()
        for door in self.doors:
            await door.start(self)
        self.spawn("retention", engine.prune_forever)
        self.spawn("store recovery probe", engine.store.watch, name="store-probe")
        return None

    def spawn(self, what: str, loop: Callable[[], Awaitable[None]], *, name: str | None = None) -> None:
        """Run `loop` in the background under `supervise` until the stop's "background" step."""
        self._background.append(asyncio.create_task(supervise(what, loop), name=name or what.replace(" ", "-")))

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT set `stop_flag` (a graceful stop); only the main thread can receive signals."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop_flag.set)
                if signum not in self._signals:
                    self._signals.append(signum)

    def _lock_home(self) -> None:
        """Hold the home directory exclusively (`flock` on the directory itself: nothing is written into the home).
        A home that does not exist holds no files to clean and needs no lock."""
        home = self.settings.home
        try:
            fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return
        except OSError as error:
            raise StoreError(f"cannot open the node home {home}: {error}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HomeInUse(
                f"the node home {home} is in use by another agent process (perhaps with another store than "
                f"{self.settings.store_path}): only one agent may run tasks in one home"
            ) from None
        self._home_fd = fd

    def _unlock_home(self) -> None:
        if self._home_fd is not None:
            os.close(self._home_fd)  # closing the descriptor releases the flock
            self._home_fd = None

    # ------------------------------------------------------------------------------------------------ serve

    async def serve(self) -> int:
        """The main door's work (or, with none, resume the previous process's tasks and serve) until stopped."""
        engine = self.running_engine
        main = next((door for door in self.doors if door.main), None)
        if main is not None:
            self.serving.set()
            return await main.serve(self)
        resumed = await unless_stopped(engine.recover(), self.stop_flag)
        if resumed is not STOPPED and resumed:
            log.info("resumed %d task(s) left running by the previous process", len(resumed))
        self.serving.set()
        await self.stop_flag.wait()
        return 0

    async def run(self) -> int:
        """`start`, `serve` until stopped (SIGTERM/SIGINT or `stop_flag`), then `stop`; the process exit code."""
        try:
            failed = await self.start()
            if failed is not None:
                return failed
            return await self.serve()
        finally:
            await self.stop()

    # ------------------------------------------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Stop every part that was started, in `SHUTDOWN_ORDER` (see there for why)."""
        if self.engine is not None:
            log.info("stopping: handlers are cancelled and their tasks resume on the next start")
            await self.engine.shutdown(grace=self.settings.shutdown_grace)
            self.steps.append("engine")
            for door in self.doors:
                await door.drain(self)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.engine is not None:
            self.steps.append("background")
            for door in self.doors:
                await door.close(self)
            await self.engine.store.close()  # after the queued store calls; records the clean stop
            self.steps.append("store")
        elif self.store is not None:
            self.store.close()
            self.steps.append("store")
        self._unlock_home()
        self._remove_signal_handlers()

    def _remove_signal_handlers(self) -> None:
        if not self._signals:
            return
        loop = asyncio.get_running_loop()
        for signum in self._signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        self._signals.clear()


STOPPED: Any = object()


async def unless_stopped(work: Awaitable[Any], stop: asyncio.Event) -> Any:
    """`await work`, or `STOPPED` (with `work` cancelled) as soon as `stop` is set."""
    working = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait(), name="stop-wait")
    try:
        await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not working.done():
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        return STOPPED
    return working.result()


def open_reader(settings: AgentSettings) -> SqliteStore:
    """The store opened to read (`nodetask-agent tasks`): no lock, never refused by a running agent."""
    return SqliteStore(settings.store_path)

"""Fault-injection helpers: a small tmpfs to fill and free, another process holding the store's write lock, an API
server that never answers, and the agent's front-door sets built exactly as their commands build them.

`front_doors(kind, settings, ...)` -> the `AgentRuntime` of `nodetask-agent run` (against `silent_api`), `serve`,
`seictl serve` or `local` (a plan of manifests): every process a fault test starts is built through the runtime.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Any

from agent.cli.local import LocalPlan, load_plan
from agent.cli.main import seictl_settings
from agent.cli.run import agent_runtime
from agent.models.settings import AgentSettings
from agent.runtime import AgentRuntime
from agent.server.frontdoor import HttpApi, serve_runtime
from agent.tasks import HandlerRegistry

FRONT_DOOR_SETS = ("run", "serve", "seictl serve", "local")
"""Every way the agent process is started (docs/design.md section 2)."""


class Volume:
    """A mounted tmpfs of a few MiB: `fill()` takes every free byte, `free()` gives it back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (65536, 4096, 512, 1):  # down to the last partial block
                while True:
                    try:
                        os.write(fd, b"\0" * size)
                    except OSError:
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def full(self) -> bool:
        stats = os.statvfs(self.path)
        return stats.f_bavail == 0


_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
print("released", flush=True)
"""


class WriteLock:
    """Another process holding the store's write lock (`BEGIN EXCLUSIVE`) until `release()`."""

    def __init__(self, db_path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the holder prints once it holds the lock (its own 30 s deadline)
        assert line.strip() == "locked", f"the lock holder did not take the lock: {line!r}"
        self.taken_at = time.monotonic()

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def silent_api(directory: Path) -> Iterator[Path]:
    """A kubeconfig naming an API server that accepts connections and never answers (for `run` without a cluster)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        kubeconfig = directory / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
                    "current-context": "x",
                }
            )
        )
        yield kubeconfig


def front_door_settings(kind: str, home: Path, **changes: Any) -> AgentSettings:
    """The settings `kind`'s command would read from an environment naming `home` and this pod; port 0 (the OS picks
    one, for tests only: the variable refuses it), loopback only."""
    env = {"SEI_HOME": str(home), "POD_NAME": "node-0", "POD_NAMESPACE": "ns", "POD_UID": "uid-0"}
    if kind == "seictl serve":
        env = {"SEI_HOME": str(home), "HOSTNAME": "node-0"}
    settings = seictl_settings(env) if kind == "seictl serve" else AgentSettings.from_env(env)
    return settings.model_copy(update={"http_port": 0, "http_host": "127.0.0.1", **changes})


def front_doors(
    kind: str,
    settings: AgentSettings,
    registry: HandlerRegistry,
    *,
    kubeconfig: Path | None = None,
    manifests: list[Path] | None = None,
) -> AgentRuntime:
    """The runtime of front-door set `kind` (one of `FRONT_DOOR_SETS`), as its command builds it."""
    if kind == "run":
        assert kubeconfig is not None, "run needs a kubeconfig (silent_api)"
        return agent_runtime(settings, kubeconfig=str(kubeconfig), registry=registry)
    if kind in ("serve", "seictl serve"):
        return serve_runtime(settings, host="127.0.0.1", registry=registry)[0]
    assert kind == "local" and manifests, "local needs manifests"
    plan = LocalPlan(load_plan(manifests, registry), keep_going=False, retry_failed=False, out=StringIO())
    return AgentRuntime(settings, [plan], registry=registry)


def http_url(runtime: AgentRuntime) -> str | None:
    """The base URL of the runtime's HTTP API, if it has one (all but `local`)."""
    for door in runtime.doors:
        if isinstance(door, HttpApi) and door.server is not None:
            return door.server.url
    return None

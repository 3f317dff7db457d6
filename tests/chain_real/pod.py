"""A node "pod" on loopback: the node container runs the shipped entrypoint, restarted like a kubelet would.

`NodeContainer` runs exactly the `seid` container's command from `deploy/examples/statefulset.yaml` (a bash loop that
waits for the agent's `/healthz` to say 200, then `exec`s `seid start --home $SEI_HOME`), with `seid` replaced by a
name unique to the test: the machine is shared, and the lifecycle tasks find the node in `/proc` by its binary name
(`SEI_BINARY`), so the name must not match anybody else's node. That name is a symlink to simd. When the process
exits, the container is started again after a short back-off (`restartPolicy: Always`), and parks at the gate again
if the agent is not ready: what the kubelet does.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.chain import ChainProcess, ProcessGroup, SimdNode

REPO = Path(__file__).resolve().parents[2]
STATEFULSET = REPO / "deploy" / "examples" / "statefulset.yaml"
RESTART_BACKOFF_SECONDS = 0.5


def entrypoint_script() -> str:
    """The node container's `args[0]` from the shipped StatefulSet example."""
    for document in yaml.safe_load_all(STATEFULSET.read_text()):
        if document and document.get("kind") == "StatefulSet":
            pod: dict[str, Any] = document["spec"]["template"]["spec"]
            container = next(item for item in pod["containers"] if item["name"] == "seid")
            assert container["command"] == ["/bin/bash", "-c"]
            return str(container["args"][0])
    raise AssertionError(f"no StatefulSet in {STATEFULSET}")


def unique_binary(directory: Path, target: Path) -> str:
    """A fresh name for the node binary: `<directory>/<name>` is a symlink to `target`; returns the name."""
    name = f"seid-{secrets.token_hex(4)}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).symlink_to(target)
    return name


class NodeContainer:
    """The node container of one pod: the shipped entrypoint, restarted whenever it exits, until `stop()`."""

    def __init__(self, node: SimdNode, processes: ProcessGroup, agent_port: int, bin_dir: Path, binary: str):
        """`binary`: a name made by `unique_binary` in `bin_dir` (the agent's SEI_BINARY)."""
        self.node = node
        self.binary = binary
        script = entrypoint_script()
        assert 'exec seid start --home "$SEI_HOME"' in script, script
        script = script.replace("exec seid start", f"exec {self.binary} start")
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(node.home.parent),
            "SEI_HOME": str(node.home),
            "NODETASK_HTTP_PORT": str(agent_port),
        }
        self.process = ChainProcess(
            f"{node.name}-container", ["/bin/bash", "-c", script], processes.directory / f"{node.name}.log", env=env
        )
        processes.processes.append(self.process)  # stopped (and its log reported) with the test's other processes
        self.starts = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._supervise, name=f"container-{node.name}", daemon=True)

    def start(self) -> NodeContainer:
        self._thread.start()
        return self

    def _supervise(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                self.process.start()
                self.starts += 1
                popen = self.process.popen
            assert popen is not None
            popen.wait()
            if self._stopping:
                return
            threading.Event().wait(RESTART_BACKOFF_SECONDS)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self.process.stop()
        self._thread.join(timeout=30)

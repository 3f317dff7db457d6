"""A real stand-in process for seid: a Python interpreter started through a symlink with the wanted name, so its
`/proc/<pid>/cmdline` argv[0] ends with `/<name>` and its `comm` is `<name>`, exactly as seid's are.

Behaviours: `graceful` exits on SIGTERM, `stubborn` ignores SIGTERM (only SIGKILL stops it).

`start_node_standin` runs it as `<name> start` (argv[1] is `start`, as the node's is): the program is a script file
named `start`. With `listen_port` it listens there (a seed's P2P port) and serves nothing else: no RPC.
`install_replayer` makes a different kind of stand-in: a program that prints output recorded from the real tool
(tests/fixtures/seidb/ for seidb) for the argv it was recorded with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_PROGRAM = """
import signal, socket, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if len(sys.argv) > 2:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[2])))
    listener.listen(16)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def _link(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / name
    if not link.exists():
        link.symlink_to(sys.executable)
    return link


def _started(argv: list[str], name: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=cwd)
    assert process.stdout is not None
    if process.stdout.readline() != b"ready\n":
        process.kill()
        process.wait()
        raise RuntimeError(f"stand-in {name} did not start")
    return process


def start_standin(directory: Path, *, name: str = "seid", behaviour: str = "graceful") -> subprocess.Popen[bytes]:
    """Start the stand-in and return once its signal handling is in place."""
    return _started([str(_link(directory, name)), "-c", _PROGRAM, behaviour], name)


def start_node_standin(
    directory: Path, *, name: str, behaviour: str = "graceful", listen_port: int | None = None
) -> subprocess.Popen[bytes]:
    """Start `<directory>/<name> start` and return once its signals (and its listener, if any) are in place."""
    link = _link(directory, name)
    (directory / "start").write_text(_PROGRAM)
    extra = [] if listen_port is None else [str(listen_port)]
    return _started([str(link), "start", behaviour, *extra], name, cwd=directory)


_REPLAYER = """#!{python}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
name = os.path.basename(sys.argv[0])
with open(os.path.join(here, name + ".calls"), "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
with open(os.path.join(here, name + ".answers.json")) as answers:
    recording = json.load(answers).get(json.dumps(sys.argv[1:]))
if recording is None:
    sys.stderr.write("stand-in: no recording for these arguments: " + " ".join(sys.argv[1:]) + "\\n")
    sys.exit(64)
with open(recording + ".stdout", "rb") as out:
    sys.stdout.buffer.write(out.read())
sys.stdout.flush()
with open(recording + ".stderr", "rb") as err:
    sys.stderr.buffer.write(err.read())
sys.stderr.flush()
with open(recording + ".rc") as rc:
    sys.exit(int(rc.read().strip()))
"""


def install_replayer(directory: Path, name: str, answers: dict[tuple[str, ...], Path]) -> Path:
    """A program `<directory>/<name>` that replays recorded output: for an argv (without argv[0]) found in `answers`
    it writes `<recording>.stdout` and `<recording>.stderr` byte for byte and exits with `<recording>.rc`; any other
    argv exits 64. Every call's argv is appended as a JSON line to `<directory>/<name>.calls`."""
    directory.mkdir(parents=True, exist_ok=True)
    program = directory / name
    program.write_text(_REPLAYER.format(python=sys.executable))
    program.chmod(0o755)
    mapping = {json.dumps(list(argv)): str(recording) for argv, recording in answers.items()}
    (directory / f"{name}.answers.json").write_text(json.dumps(mapping))
    return program


def replayer_calls(program: Path) -> list[list[str]]:
    """The argv of every call the replayer answered (or refused), in order."""
    calls = program.parent / f"{program.name}.calls"
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []

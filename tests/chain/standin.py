"""A real stand-in process for seid: a Python interpreter started through a symlink with the wanted name, so its
`/proc/<pid>/cmdline` argv[0] ends with `/<name>` exactly as seid's does.

Behaviours: `graceful` exits on SIGTERM, `stubborn` ignores SIGTERM (only SIGKILL stops it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_PROGRAM = """
import signal, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def start_standin(directory: Path, *, name: str = "seid", behaviour: str = "graceful") -> subprocess.Popen[bytes]:
    """Start the stand-in and return once its signal handling is in place."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / name
    if not link.exists():
        link.symlink_to(sys.executable)
    process = subprocess.Popen([str(link), "-c", _PROGRAM, behaviour], stdout=subprocess.PIPE)
    assert process.stdout is not None
    if process.stdout.readline() != b"ready\n":
        process.kill()
        raise RuntimeError(f"stand-in {name} did not start")
    return process

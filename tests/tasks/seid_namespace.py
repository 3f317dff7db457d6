"""Run await-condition with `SIGTERM_SEID` inside a PID namespace of its own, next to a stand-in named `seid`.

This is the pod's shared process namespace in miniature: the namespace holds only this driver (PID 1) and the
stand-in, so the handler's real /proc scan finds exactly that `seid` and nothing else on the machine.

Run as `unshare --pid --fork --mount-proc python -m tests.tasks.seid_namespace '<json>'` with the JSON keys
`home`, `params` and `standin` (`graceful`, `stubborn` or `none`). Prints one JSON line: the handler's `result` or
`error` (message and reason), and the stand-in's `exitCode` (negative: killed by that signal).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.models import TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.chain.standin import start_standin
from tests.fixtures.common import HandlerRunner


async def main(arguments: dict[str, Any]) -> dict[str, Any]:
    standin: subprocess.Popen[bytes] | None = None
    if arguments["standin"] != "none":
        standin = start_standin(Path(tempfile.mkdtemp()) / "bin", behaviour=arguments["standin"])
    runner = HandlerRunner(AgentSettings(home=Path(arguments["home"])))
    report: dict[str, Any] = {"pidInNamespace": standin.pid if standin else None}
    try:
        report["result"] = await runner(TaskType.AWAIT_CONDITION, arguments["params"])
    except TaskError as error:
        report["error"] = {"message": error.message, "reason": error.reason}
    if standin is not None:
        if standin.poll() is None:
            standin.kill()
        report["exitCode"] = standin.wait()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))

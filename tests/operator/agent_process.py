"""Entry point of an agent run as a real subprocess by the operator tests: `python -m tests.operator.agent_process`.

The same runtime and front doors as `nodetask-agent run` (`agent.cli.run.run_agent`), with the test registry (the gate
handler) added; identity and options come from the environment exactly as in a pod.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from agent.cli.run import run_agent
from agent.models.settings import AgentSettings
from tests.operator.handlers import test_registry


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run_agent(AgentSettings.from_env(), kubeconfig=args.kubeconfig, registry=test_registry()))


if __name__ == "__main__":
    sys.exit(main())

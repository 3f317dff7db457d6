"""`python -m agent.operator run [--kubeconfig PATH]` | `python -m agent.operator crd` (no CLI layer needed)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from agent.models.settings import AgentSettings, forget_secret_variables

from .crd import render_crd_yaml
from .run import run_operator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.operator", allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run the agent (identity from POD_NAME, POD_NAMESPACE, POD_UID)", allow_abbrev=False
    )
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster ServiceAccount, else ~/.kube/config)")
    run.add_argument("--log-level", default="INFO")
    commands.add_parser("crd", help="print the NodeTask CRD", allow_abbrev=False)
    args = parser.parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(render_crd_yaml())
        return 0
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = AgentSettings.from_env()
    forget_secret_variables()
    return asyncio.run(run_operator(settings, kubeconfig=args.kubeconfig))


if __name__ == "__main__":
    sys.exit(main())

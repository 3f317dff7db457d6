"""`nodetask-agent`: the command line (run | local | crd | tasks | version)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.models.settings import AgentSettings

from . import local
from .logs import configure_logging


def _settings(args: argparse.Namespace) -> AgentSettings:
    return AgentSettings.from_env(
        home=getattr(args, "home", None),
        db_path=getattr(args, "db", None),
        http_port=getattr(args, "port", None),
    )


def _cmd_local(args: argparse.Namespace) -> int:
    return local.main(args.paths, _settings(args), keep_going=args.keep_going, retry_failed=args.retry_failed)


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from agent.operator import run_operator

    return asyncio.run(run_operator(_settings(args), kubeconfig=args.kubeconfig))


def _cmd_crd(args: argparse.Namespace) -> int:
    from agent.operator import render_crd, render_crd_yaml

    sys.stdout.write(json.dumps(render_crd(), indent=2) + "\n" if args.output == "json" else render_crd_yaml())
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"nodetask-agent {__version__}")
    return 0


def _cmd_keys_export(args: argparse.Namespace) -> int:
    """Print the operator account key armored for `seid keys import`; the passphrase is read from stdin (one line)
    or a terminal prompt, never from the command line (it would show in `ps` and shell history)."""
    import getpass

    from agent.chain.cosmos.address import ChainIdentity
    from agent.chain.cosmos.armor import armor_private_key
    from agent.chain.cosmos.keystore import keystore_path, load_account_key

    settings = _settings(args)
    key = load_account_key(keystore_path(settings.home), ChainIdentity.from_settings(settings))
    if sys.stdin.isatty():
        passphrase = getpass.getpass("Passphrase to encrypt the exported key: ")
        if getpass.getpass("Repeat the passphrase: ") != passphrase:
            print("nodetask-agent: error: the passphrases differ", file=sys.stderr)
            return 1
    else:
        passphrase = sys.stdin.readline().rstrip("\r\n")
    sys.stdout.write(armor_private_key(key.private_key, passphrase))
    print(f"exported the key of {key.address}; import it with: seid keys import <name> <file>", file=sys.stderr)
    return 0


def _cmd_tasks_types(args: argparse.Namespace) -> int:
    from agent.tasks import default_registry

    registry = default_registry()
    if args.output == "json":
        described = {
            str(task_type): {
                "summary": spec.summary,
                "params": spec.params_model.model_json_schema(by_alias=True),
            }
            for task_type in registry.types()
            if (spec := registry.get(task_type)) is not None
        }
        print(json.dumps(described, indent=2))
        return 0
    width = max(len(t) for t in registry.types())
    for task_type in registry.types():
        spec = registry.get(task_type)
        assert spec is not None
        fields = ", ".join(field.alias or name for name, field in spec.params_model.model_fields.items())
        print(f"{task_type:<{width}}  {spec.summary}")
        print(f"{'':<{width}}  params: {fields or '(none)'}")
    return 0


def _cmd_tasks_list(args: argparse.Namespace) -> int:
    from agent.store import SqliteStore

    settings = _settings(args)
    if not settings.store_path.exists():
        print(f"no store at {settings.store_path}", file=sys.stderr)
        return 1
    store = SqliteStore(settings.store_path)
    try:
        rows = [store.get(args.id)] if getattr(args, "id", None) else store.list(args.limit)
    finally:
        store.close()
    if any(row is None for row in rows):
        print(f"task {args.id} not found in {settings.store_path}", file=sys.stderr)
        return 1
    present = [row for row in rows if row is not None]
    if args.output == "json" or getattr(args, "id", None):
        payload: Any = [row.model_dump(mode="json", by_alias=True, exclude_none=True) for row in present]
        print(json.dumps(payload[0] if getattr(args, "id", None) else payload, indent=2))
        return 0
    print(f"{'ID':<36}  {'TYPE':<28}  {'PHASE':<9}  {'RUN':>3}  {'REASON':<16}  SUBMITTED")
    for row in present:
        submitted = row.submitted_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{row.id:<36}  {row.type:<28}  {row.phase.value:<9}  {row.run:>3}  {row.reason:<16}  {submitted}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodetask-agent",
        description="Runs NodeTask resources next to a Sei node (in a cluster) or from YAML files (local mode).",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default: INFO; local: WARNING)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def home_options(command: argparse.ArgumentParser, *, required: bool) -> None:
        command.add_argument(
            "--home", type=Path, required=required, help="the node's home directory (default: $SEI_HOME or /sei)"
        )
        command.add_argument("--db", type=Path, help="the SQLite store (default: <home>/nodetask-agent.db)")

    run = commands.add_parser(
        "run",
        help="run the agent in a cluster (identity from POD_NAME, POD_NAMESPACE, POD_UID)",
        description="Watch this pod's NodeTasks and run them; serves /healthz /livez /metrics /v0/... on the port.",
    )
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster ServiceAccount, else ~/.kube/config)")
    home_options(run, required=False)
    run.add_argument("--port", type=int, help="HTTP port for probes, metrics and the task API (default: 7777)")
    run.set_defaults(func=_cmd_run)

    crd = commands.add_parser("crd", help="print the NodeTask CustomResourceDefinition (generated from the models)")
    crd.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    crd.set_defaults(func=_cmd_crd)

    run_local = commands.add_parser(
        "local",
        help="run NodeTask manifests from YAML files, with no cluster",
        description=local.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_local.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    home_options(run_local, required=True)
    run_local.add_argument("--keep-going", action="store_true", help="run later tasks even after one fails")
    run_local.add_argument("--retry-failed", action="store_true", help="run tasks that failed earlier once more")
    run_local.set_defaults(func=_cmd_local, default_log_level="WARNING")

    tasks = commands.add_parser("tasks", help="describe task types, or list tasks in a store")
    tasks_commands = tasks.add_subparsers(dest="tasks_command", required=True, metavar="SUBCOMMAND")
    types = tasks_commands.add_parser("types", help="every task type with its params")
    types.add_argument("-o", "--output", choices=["text", "json"], default="text")
    types.set_defaults(func=_cmd_tasks_types)
    listing = tasks_commands.add_parser("list", help="the newest tasks in a store")
    home_options(listing, required=False)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("-o", "--output", choices=["text", "json"], default="text")
    listing.set_defaults(func=_cmd_tasks_list)
    show = tasks_commands.add_parser("show", help="one task from a store, as JSON")
    show.add_argument("id")
    home_options(show, required=False)
    show.set_defaults(func=_cmd_tasks_list, output="json", limit=1)

    keys = commands.add_parser("keys", help="the node's operator account key (made by generate-gentx)")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    export = keys_commands.add_parser(
        "export",
        help="print the key encrypted and armored for `seid keys import` (passphrase from stdin or a prompt)",
    )
    home_options(export, required=False)
    export.set_defaults(func=_cmd_keys_export)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level or getattr(args, "default_log_level", "INFO"), args.log_format)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a clear one-line message instead of a traceback for operator errors
        logging.getLogger("agent.cli").debug("command failed", exc_info=True)
        print(f"nodetask-agent: error: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())

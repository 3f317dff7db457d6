"""`nodetask-agent`: the command line (run | serve | local | crd | tasks | version), and the `seictl serve` shim."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.engine.transitions import TRANSITION_LOGGER
from agent.models import TaskError, TaskResult
from agent.models.settings import AgentSettings, SettingsError, forget_secret_variables
from agent.models.task import normalize_task_id

from . import local
from .logs import configure_logging

if TYPE_CHECKING:
    from pydantic import BaseModel

    from agent.store import SqliteStore

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a Unix filter reports when its reader goes away (`nodetask-agent tasks list | head`)."""


class UsageError(Exception):
    """A command line that cannot be acted on (exit code 2), with the message to print."""


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines (a pod's environment written down): `#` comments, blank lines and an `export ` prefix are
    allowed, one pair of matching quotes around a value is removed. A line of another form is a UsageError naming
    the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--env-file: cannot read {path}: {error}") from None
    variables: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, equals, value = text.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not name.isidentifier():
            raise UsageError(f"--env-file {path}:{number}: expected NAME=VALUE, got {line!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        variables[name] = value
    return variables


def _environment(args: argparse.Namespace) -> Mapping[str, str]:
    """The process environment, with `--env-file`'s variables over it when given."""
    env_file = getattr(args, "env_file", None)
    return os.environ if env_file is None else {**os.environ, **read_env_file(env_file)}


def _settings(args: argparse.Namespace, *, home_must_exist: bool = True) -> AgentSettings:
    settings = AgentSettings.from_env(
        _environment(args),
        home=getattr(args, "home", None),
        db_path=getattr(args, "db", None),
        http_port=getattr(args, "port", None),
    )
    forget_secret_variables()
    if home_must_exist and not settings.home.is_dir():
        # A typo in --home must not silently create a new, empty node home and store beside the real one.
        where = "--home" if getattr(args, "home", None) is not None else "SEI_HOME (or the default /sei)"
        raise UsageError(
            f"{where}: {settings.home} is not an existing directory; the node's home must exist "
            "(seid init creates it; for a new local home: mkdir -p it first)"
        )
    return settings


def _cmd_local(args: argparse.Namespace) -> int:
    if args.check:
        return local.check(args.paths, settings=AgentSettings.from_env(_environment(args)))
    if args.home is None:
        raise UsageError("local: --home is required (only --check runs without a node home)")
    return local.main(args.paths, _settings(args), keep_going=args.keep_going, retry_failed=args.retry_failed)


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from .run import run_agent

    return asyncio.run(run_agent(_settings(args), kubeconfig=args.kubeconfig))


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from agent.server.frontdoor import serve

    settings = _settings(args)
    return asyncio.run(serve(settings, host=args.host or settings.http_host))


def _cmd_crd(args: argparse.Namespace) -> int:
    from agent.operator import render_crd, render_crd_yaml

    sys.stdout.write(json.dumps(render_crd(), indent=2) + "\n" if args.output == "json" else render_crd_yaml())
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"nodetask-agent {__version__}")
    return 0


def _cmd_keys_export(args: argparse.Namespace) -> int:
    """Print the operator account key armored for `seid keys import` (the key bytes in the form the chain's keyring
    reads: `SEI_KEY_EXPORT_FORM`); the passphrase is read from stdin (one line) or a terminal prompt, never from the
    command line (it would show in `ps` and shell history)."""
    import getpass

    from agent.chain.cosmos.address import ChainIdentity
    from agent.chain.cosmos.armor import armor_private_key
    from agent.chain.cosmos.keystore import keystore_path, load_account_key

    settings = _settings(args)
    identity = ChainIdentity.from_settings(settings)
    key = load_account_key(keystore_path(settings.home), identity)
    if sys.stdin.isatty():
        passphrase = getpass.getpass("Passphrase to encrypt the exported key: ")
        if getpass.getpass("Repeat the passphrase: ") != passphrase:
            print("nodetask-agent: error: the passphrases differ", file=sys.stderr)
            return 1
    else:
        passphrase = sys.stdin.readline().rstrip("\r\n")
    sys.stdout.write(armor_private_key(key.private_key, passphrase, amino=identity.key_export_form == "amino"))
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
        print(f"{task_type:<{width}}  {spec.summary}")
        if args.output == "wide":
            rows = _param_rows(spec.params_model)
            name_width = max((len(row[0]) for row in rows), default=0)
            type_width = max((len(row[1]) for row in rows), default=0)
            for name, kind, requirement in rows:
                print(f"{'':<{width}}  {name:<{name_width}}  {kind:<{type_width}}  {requirement}")
            if not rows:
                print(f"{'':<{width}}  (no params)")
            continue
        fields = ", ".join(field.alias or name for name, field in spec.params_model.model_fields.items())
        print(f"{'':<{width}}  params: {fields or '(none)'}")
    return 0


def _param_rows(model: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(wire name, type, `required` or `default <JSON>`) for each field of a params model (`tasks types -o wide`)."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.get("$defs", {})
    rows = []
    for name, field in model.model_fields.items():
        wire = field.alias or name
        kind = _schema_type(schema["properties"].get(wire, {}), definitions)
        if field.is_required():
            requirement = "required"
        else:
            requirement = f"default {json.dumps(field.get_default(call_default_factory=True), default=str)}"
        rows.append((wire, kind, requirement))
    return rows


def _schema_type(node: dict[str, Any], definitions: dict[str, Any]) -> str:
    """A JSON Schema node in a few words: `integer`, `list of Coin`, `map of string`, `gz|lz4|zst`, `string | null`."""
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        return _schema_type(target, definitions) if "enum" in target else str(target.get("title", "object"))
    if "enum" in node:
        return "|".join(json.dumps(value) if value == "" else str(value) for value in node["enum"])
    if "discriminator" in node:
        tag = node["discriminator"]["propertyName"]
        return f"object with {tag}: {'|'.join(node['discriminator'].get('mapping', {}))}"
    for union in ("anyOf", "oneOf"):
        if union in node:
            return " | ".join(_schema_type(choice, definitions) for choice in node[union])
    kind = node.get("type")

    def inner(child: dict[str, Any]) -> str:
        text = _schema_type(child, definitions)
        return f"({text})" if " | " in text else text

    if kind == "array":
        return f"list of {inner(node.get('items', {}))}"
    if kind == "object":
        values = node.get("additionalProperties", True)
        return f"map of {inner(values)}" if isinstance(values, dict) else "object"
    if kind is None:
        return "any"
    return f"{kind} ({node['format']})" if "format" in node else str(kind)


def _name_of(row: TaskResult) -> str:
    return row.source.name if row.source is not None else "-"


def _shown(row: TaskResult) -> dict[str, Any]:
    """A task as `tasks show` prints it: the resource's name and the phase names of `kubectl get nodetasks`."""
    payload = row.model_dump(mode="json", by_alias=True, exclude_none=True)
    payload.pop("status", None)  # the store's vocabulary (`completed`); users see phases everywhere else
    return {"name": _name_of(row), "phase": row.phase.value, **payload}


def _find(store: SqliteStore, wanted: str) -> list[TaskResult]:
    """The task whose ID is `wanted`, else every task whose resource is named `wanted` (metadata.name)."""
    with contextlib.suppress(TaskError):
        row = store.get(normalize_task_id(wanted))
        if row is not None:
            return [row]
    return [row for row in store.list(SEARCH_LIMIT) if row.source is not None and row.source.name == wanted]


SEARCH_LIMIT = 100_000
"""Rows `tasks show NAME` searches (newest first); retention keeps a store far smaller."""


def _cmd_tasks_list(args: argparse.Namespace) -> int:
    from agent.runtime import open_reader

    settings = _settings(args, home_must_exist=getattr(args, "db", None) is None)  # a store named by --db needs no home
    if not settings.store_path.exists():
        print(f"no store at {settings.store_path}", file=sys.stderr)
        return 1
    store = open_reader(settings)
    try:
        wanted = getattr(args, "id", None)
        rows = _find(store, wanted) if wanted else store.list(args.limit)
    finally:
        store.close()
    if wanted:
        if not rows:
            print(f"no task with ID or name {wanted!r} in {settings.store_path}", file=sys.stderr)
            return 1
        if len(rows) > 1:
            choices = ", ".join(f"{row.source.namespace}/{_name_of(row)} {row.id}" for row in rows if row.source)
            print(f"{len(rows)} tasks are named {wanted!r}; show one by ID: {choices}", file=sys.stderr)
            return 1
        print(json.dumps(_shown(rows[0]), indent=2))
        return 0
    if args.output == "json":
        print(json.dumps([_shown(row) for row in rows], indent=2))
        return 0
    width = max([len("NAME"), *(len(_name_of(row)) for row in rows)])
    print(f"{'NAME':<{width}}  {'ID':<36}  {'TYPE':<28}  {'PHASE':<9}  {'RUN':>3}  {'REASON':<16}  SUBMITTED")
    for row in rows:
        submitted = row.submitted_at.strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{_name_of(row):<{width}}  {row.id:<36}  {row.type:<28}  {row.phase.value:<9}  {row.run:>3}  "
            f"{row.reason:<16}  {submitted}"
        )
    return 0


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a log level; choose from {', '.join(LOG_LEVELS)}")
    return value.upper()


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations: `--hom` is refused instead of being read as `--home`, so that a typo never picks
    an option and adding an option never changes what an existing abbreviation meant. Subcommand parsers are of this
    class too (`add_subparsers` makes them of the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _global_options(*, top: bool) -> _Parser:
    """--log-level and --log-format, accepted before and after the command (`nodetask-agent local ... --log-level
    DEBUG`). Below the top level they default to SUPPRESS, so a subcommand never erases a value given before it."""
    options = _Parser(add_help=False)
    default: Any = None if top else argparse.SUPPRESS
    options.add_argument(
        "--log-level",
        type=_log_level,
        default=default,
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default: INFO; local: WARNING)",
    )
    options.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=default,
        help="default: $NODETASK_LOG_FORMAT, else text",
    )
    return options


def _env_log_format() -> str:
    """`NODETASK_LOG_FORMAT` validated as the settings field (only that variable: a bad other one is reported by
    the command that reads it, with the others)."""
    variable = "NODETASK_LOG_FORMAT"
    return AgentSettings.from_env({variable: os.environ.get(variable, "")}).log_format


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nodetask-agent",
        description="Runs NodeTask resources next to a Sei node (in a cluster) or from YAML files (local mode).",
        parents=[_global_options(top=True)],
    )
    inherited = [_global_options(top=False)]
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def home_options(command: argparse.ArgumentParser, *, required_help: str = "") -> None:
        command.add_argument(
            "--home",
            type=Path,
            help=required_help or "the node's home directory, which must exist (default: $SEI_HOME, else /sei)",
        )
        command.add_argument("--db", type=Path, help="the SQLite store (default: <home>/nodetask-agent.db)")

    run = commands.add_parser(
        "run",
        help="run the agent in a cluster (identity from POD_NAME, POD_NAMESPACE, POD_UID)",
        description="Watch this pod's NodeTasks and run them; serves /healthz /livez /metrics /v0/... on the port.",
        parents=inherited,
    )
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster ServiceAccount, else ~/.kube/config)")
    home_options(run)
    run.add_argument("--port", type=int, help="HTTP port for probes, metrics and the task API (default: 7777)")
    run.set_defaults(func=_cmd_run)

    serve = commands.add_parser(
        "serve",
        help="run the agent without Kubernetes, driven over the Go sidecar's HTTP task API",
        description="Serve the Go sidecar's task API (POST/GET/DELETE /v0/tasks, /v0/healthz, ...) over the same "
        "engine and store, with no NodeTask watch. SEI_SIDECAR_AUTHN_MODE=trusted-header binds loopback only.",
        parents=inherited,
    )
    home_options(serve)
    serve.add_argument("--port", type=int, help="HTTP port (default: $NODETASK_HTTP_PORT or 7777)")
    serve.add_argument(
        "--host", help="bind address (default: $NODETASK_HTTP_HOST, else 0.0.0.0; trusted-header mode forces 127.0.0.1)"
    )
    serve.set_defaults(func=_cmd_serve)

    crd = commands.add_parser(
        "crd", help="print the NodeTask CustomResourceDefinition (generated from the models)", parents=inherited
    )
    crd.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    crd.set_defaults(func=_cmd_crd)

    run_local = commands.add_parser(
        "local",
        help="run NodeTask manifests from YAML files, with no cluster",
        description=local.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=inherited,
    )
    run_local.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    home_options(
        run_local,
        required_help="the node's home directory; required (no default), and it must already exist",
    )
    run_local.add_argument(
        "--check",
        action="store_true",
        help="only check the plan (YAML, fields, types, params and the rules that need the agent's settings, "
        "duplicates) and exit: 0 valid, 2 invalid; runs nothing and needs no --home",
    )
    run_local.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="KEY=VALUE lines read as the agent's environment (over the process's), e.g. the pod's variables for "
        "--check (SEI_GENESIS_BUCKET, SEI_CHAIN_ID...)",
    )
    run_local.add_argument("--keep-going", action="store_true", help="run later tasks even after one fails")
    run_local.add_argument("--retry-failed", action="store_true", help="run tasks that failed earlier once more")
    run_local.set_defaults(func=_cmd_local, default_log_level="WARNING")

    tasks = commands.add_parser("tasks", help="describe task types, or list tasks in a store", parents=inherited)
    tasks_commands = tasks.add_subparsers(dest="tasks_command", required=True, metavar="SUBCOMMAND")
    types = tasks_commands.add_parser("types", help="every task type with its params", parents=inherited)
    types.add_argument(
        "-o",
        "--output",
        choices=["text", "wide", "json"],
        default="text",
        help="wide: each param's type, default and whether it is required",
    )
    types.set_defaults(func=_cmd_tasks_types)
    listing = tasks_commands.add_parser("list", help="the newest tasks in a store", parents=inherited)
    home_options(listing)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("-o", "--output", choices=["text", "json"], default="text")
    listing.set_defaults(func=_cmd_tasks_list)
    show = tasks_commands.add_parser(
        "show", help="one task from a store, as JSON, by task ID or by its NodeTask's name", parents=inherited
    )
    show.add_argument("id", metavar="ID_OR_NAME")
    home_options(show)
    show.set_defaults(func=_cmd_tasks_list, output="json", limit=1)

    keys = commands.add_parser(
        "keys", help="the node's operator account key (made by generate-gentx)", parents=inherited
    )
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    export = keys_commands.add_parser(
        "export",
        help="print the key encrypted and armored for `seid keys import` (passphrase from stdin or a prompt)",
        parents=inherited,
    )
    home_options(export)
    export.set_defaults(func=_cmd_keys_export)

    version = commands.add_parser("version", help="print the version", parents=inherited)
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        log_format = args.log_format or _env_log_format()
    except SettingsError as error:
        print(f"nodetask-agent: {error}", file=sys.stderr)
        return 2
    # local prints every transition on stdout itself: the transition lines only with an explicit --log-level
    quiet = (TRANSITION_LOGGER,) if args.log_level is None and getattr(args, "default_log_level", None) else ()
    configure_logging(args.log_level or getattr(args, "default_log_level", "INFO"), log_format, quiet=quiet)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep the interpreter's final flush from complaining.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (SettingsError, UsageError) as error:  # a bad environment variable, flag or path: a usage error, named
        print(f"nodetask-agent: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a clear one-line message instead of a traceback for operator errors
        logging.getLogger("agent.cli").debug("command failed", exc_info=True)
        print(f"nodetask-agent: error: {error}", file=sys.stderr)
        return 1
    return code


def go_quote(text: str) -> str:
    """`text` as Go's `%q` (strconv.Quote) writes it: printable runes as they are, the rest escaped."""
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif char in named:
            out.append(named[char])
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def seictl_settings(
    env: Mapping[str, str] | None = None, *, home: Path | None = None, port: int | None = None
) -> AgentSettings:
    """`seictl serve`'s settings: the Go sidecar's variables over `AgentSettings` (the pod's name from `POD_NAME`,
    else `HOSTNAME`, else the host name; the port from `--port`, else `SEI_SIDECAR_PORT`, else `NODETASK_HTTP_PORT`;
    the store `<home>/sidecar.db` unless `NODETASK_DB`)."""
    import socket

    base = AgentSettings.from_env(env, home=home)
    return base.model_copy(
        update={
            "pod_name": base.pod_name or base.hostname or socket.gethostname() or "unknown",
            "http_port": port or base.sidecar_port or base.http_port,
            "db_path": base.db_path or base.home / "sidecar.db",
        }
    )


def seictl_main(argv: Sequence[str] | None = None) -> int:
    """`seictl serve`: the Go sidecar's command line, for pods whose spec runs `seictl serve` (drop-in by image).

    Reads the original's variables (fields of `AgentSettings`, validated as every other): `SEI_HOME` (default /sei),
    `SEI_SIDECAR_PORT` (default 7777), `HOSTNAME` as the pod name, `SEI_LOG_LEVEL`, and keeps its store file
    `<home>/sidecar.db` (opened and migrated in place, so tasks, readiness and transaction records carry over). Only
    `serve` exists; the original's other subcommands are not provided. A bad variable is exit 2 naming it.
    """
    import asyncio

    from agent.server.frontdoor import serve as serve_api

    parser = _Parser(prog="seictl", description="nodetask-agent's stand-in for `seictl serve`.")
    parser.add_argument("--home", type=Path, default=None, help="the node's home (default: $SEI_HOME or /sei)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the sidecar task API")
    serve.add_argument("--port", type=int, default=None, help="default: $SEI_SIDECAR_PORT or 7777")
    args = parser.parse_args(argv)
    authn_mode = os.environ.get("SEI_SIDECAR_AUTHN_MODE", "").strip().lower()
    if authn_mode not in ("", "unauthenticated", "trusted-header"):
        # The original's start-up error, byte for byte (Go's log.Fatal: local time stamp, message, exit 1), before
        # the settings model would refuse the value with its own message.
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        allowed = '(allowed: "", "unauthenticated", "trusted-header")'
        print(f"{stamp} SEI_SIDECAR_AUTHN_MODE={go_quote(authn_mode)} is not recognized {allowed}", file=sys.stderr)
        return 1
    try:
        settings = seictl_settings(home=args.home, port=args.port)
        configure_logging(settings.log_level, "json")
        settings.home.mkdir(parents=True, exist_ok=True)  # as the original's start-up does
        forget_secret_variables()
    except (SettingsError, OSError) as error:
        print(f"seictl: error: {error}", file=sys.stderr)
        return 2
    code: int = asyncio.run(serve_api(settings))
    return code


if __name__ == "__main__":
    sys.exit(main())

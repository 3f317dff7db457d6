"""The seid tier: Sei's own node (`seid`) on loopback, driven by the agent, for the sessions that can build it.

Where the binary comes from: `NODETASK_SEID_BINARY`, the path of a `seid` built outside this repository. seid cannot
be built in CI (sei-chain and several of its `sei-protocol/*` modules are not served by the Go module proxy), and
this repository carries no script or recipe that builds fetched code: the build recipe lives with the other shared
reference material (`../shared/reference/seid-build.md` from the checkout: fetch the public sources, build into a
directory of its own). So the tier, unlike the chain tier, has no `scripts/*-tools.sh`; it is collected only when the
variable names an executable and `CI` is not `true` (`tests/conftest.py`; CI cannot build seid, and the unit tier
carries seid's dialect through the recordings in `tests/fixtures/seid/`), so CI reports no always-skipped tests. Named
explicitly without a binary, its tests skip with the reason. Tests are marked `@pytest.mark.seid` (and `slow`).

The API, the chain tier's (`tests/fixtures/chain.py`: `reserve_ports`, `chain_processes`, `edit_toml`,
`wait_for_height`) plus:

- `seid_binary` (session fixture): the binary's path, after `seid version` answered.
- `seid_net` (fixture): a `SeidNet` factory of homes made by seid's own commands in the test's `tmp_path`:
  `.init(name, mode)` a stock `seid init` home with loopback ports (nothing else changed); `.validator(name)` a
  single-validator chain (keys add with the test keyring, add-genesis-account, gentx, genesis `validators` filled as
  sei-chain's `scripts/initialize_local_chain.sh` does so a lone validator leaves block sync, collect-gentxs, short
  gov periods). Every node it starts is stopped at teardown, its log attached to a failing report.
- `SeidNode.seid(*args)` runs `seid <args> --home <home>`; `.start()` / `.stop()` / `.wait_for_height(h)`;
  `.rpc_url`, `.p2p_port`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chain_real.pod import unique_binary
from tests.fixtures.chain import ChainProcess, ProcessGroup, edit_toml, reserve_ports, wait_for_height

SEID_BINARY_VARIABLE = "NODETASK_SEID_BINARY"
SEID_MARKS = [pytest.mark.seid, pytest.mark.slow]
"""`pytestmark` of every module of the tier."""
START_DEADLINE_SECONDS = 120.0
"""A fresh seid (EVM, wasm, SeiDB) on two loaded cores takes 10-40 s to its first block."""
DENOM = "usei"
VOTING_PERIOD = "20s"
PASSPHRASE = "a long passphrase"
"""Of every armored key the tier moves from an agent into a seid keyring."""
REPO = Path(__file__).resolve().parents[2]


def export_agent_key(agent_home: Path, form: str | None = None) -> str:
    """`nodetask-agent keys export` of `agent_home`'s account key, as an operator runs it (`SEI_KEY_EXPORT_FORM`
    unset means the agent's default, Sei's form)."""
    env = {key: value for key, value in os.environ.items() if key != "SEI_KEY_EXPORT_FORM"}
    if form is not None:
        env["SEI_KEY_EXPORT_FORM"] = form
    exported = subprocess.run(
        [sys.executable, "-m", "agent", "keys", "export", "--home", str(agent_home)],
        input=PASSPHRASE + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
        cwd=REPO,
    )
    return exported.stdout


def find_seid() -> Path | str:
    """The binary, or a sentence saying why the tier cannot run."""
    if os.environ.get("CI", "").lower() == "true":
        return "seid tier skipped under CI=true: seid cannot be built in CI (recorded seid output covers it there)"
    configured = os.environ.get(SEID_BINARY_VARIABLE, "")
    if not configured:
        return f"seid tier unavailable: {SEID_BINARY_VARIABLE} is not set (see docs/chain-fidelity.md)"
    path = Path(configured)
    if not os.access(path, os.X_OK):
        return f"seid tier unavailable: {SEID_BINARY_VARIABLE}={configured} is not an executable file"
    return path


@pytest.fixture(scope="session")
def seid_binary() -> Path:
    found = find_seid()
    if isinstance(found, str):
        pytest.skip(found)
    version = subprocess.run([str(found), "version"], capture_output=True, text=True, timeout=60)
    if version.returncode != 0:
        pytest.fail(f"{found} version -> exit {version.returncode}: {version.stderr.strip()}")
    return found


@dataclass
class SeidNode:
    """A seid home with its own reserved loopback ports; not running until `start()`."""

    name: str
    home: Path
    chain_id: str
    binary: Path
    processes: ProcessGroup
    ports: dict[str, int]
    host: str = "127.0.0.1"
    mode: str = "validator"
    process: ChainProcess | None = None
    key_address: str = ""
    _env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.ports['rpc']}"

    @property
    def p2p_port(self) -> int:
        return self.ports["p2p"]

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def node_id(self) -> str:
        return self.seid("tendermint", "show-node-id").strip()

    @property
    def p2p_address(self) -> str:
        return f"{self.node_id}@{self.host}:{self.p2p_port}"

    def seid(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
        """`seid <args> --home <home>`; stdout (or stderr when stdout is empty: seid prints some results there)."""
        result = subprocess.run(
            [str(self.binary), *args, "--home", str(self.home)],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"seid {' '.join(args)} -> exit {result.returncode}\n{result.stderr.strip()}")
        return result.stdout if result.stdout.strip() else result.stderr

    def edit_config(self, changes: Mapping[str, Any]) -> None:
        edit_toml(self.config_dir / "config.toml", changes)

    def edit_app(self, changes: Mapping[str, Any]) -> None:
        edit_toml(self.config_dir / "app.toml", changes)

    def edit_genesis(self, change: Callable[[dict[str, Any]], None]) -> None:
        path = self.config_dir / "genesis.json"
        genesis = json.loads(path.read_text())
        change(genesis)
        path.write_text(json.dumps(genesis, indent=2))

    def start(self, *, wait_height: int | None = 1) -> SeidNode:
        argv = [str(self.binary), "start", "--home", str(self.home)]
        if self.process is None:
            self.process = self.processes.start(self.name, argv)
        else:
            self.process.start()
        if wait_height is not None:
            self.wait_for_height(wait_height)
        return self

    def stop(self) -> int | None:
        return self.process.stop() if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def wait_for_height(self, height: int, deadline: float = START_DEADLINE_SECONDS) -> int:
        return wait_for_height(self.rpc_url, height, deadline, alive=lambda: self.running)


def bare_seid_home(binary: Path, home: Path) -> SeidNode:
    """A directory for seid commands that need no node (`seid keys ...`): nothing is initialised or started."""
    home.mkdir(parents=True, exist_ok=True)
    return SeidNode(home.name, home, "", binary, ProcessGroup(home), {})


PORT_NAMES = ("rpc", "p2p", "grpc", "grpc_web", "api", "evm_http", "evm_ws", "admin")


class SeidNet:
    """Makes seid homes under one directory (see the module docstring)."""

    def __init__(self, binary: Path, directory: Path, processes: ProcessGroup):
        """Nodes run as `<directory>/bin/seid-<random>`, a symlink to `binary`: the machine is shared, and a
        lifecycle task (anybody's) finds and signals the node by its binary name in `/proc`."""
        bin_dir = directory / "bin"
        self.binary = bin_dir / unique_binary(bin_dir, binary)
        self.directory = directory
        self.processes = processes

    def init(
        self, name: str, mode: str = "validator", *, chain_id: str = "seid-real", host: str = "127.0.0.1"
    ) -> SeidNode:
        """`seid init <name> --chain-id <id> --mode <mode>`, then only its listen addresses moved to reserved
        loopback ports (seid binds EVM, REST and gRPC on 0.0.0.0 by default) and its pprof listener off."""
        ports = dict(zip(PORT_NAMES, reserve_ports(len(PORT_NAMES), hosts=(host,)), strict=True))
        node = SeidNode(name, self.directory / name, chain_id, self.binary, self.processes, ports, host, mode)
        node.seid("init", name, "--chain-id", chain_id, "--mode", mode)
        node.edit_config(
            {
                "rpc.laddr": f"tcp://{host}:{ports['rpc']}",
                "p2p.laddr": f"tcp://{host}:{ports['p2p']}",
                "rpc.pprof-laddr": "",
                "p2p.allow-duplicate-ip": True,
            }
        )
        node.edit_app(
            {
                "grpc.address": f"{host}:{ports['grpc']}",
                "grpc-web.address": f"{host}:{ports['grpc_web']}",
                "api.address": f"tcp://{host}:{ports['api']}",
                "evm.http_port": ports["evm_http"],
                "evm.ws_port": ports["evm_ws"],
                "admin_server.admin_address": f"{host}:{ports['admin']}",
            }
        )
        return node

    def validator(
        self,
        name: str = "val",
        *,
        chain_id: str = "seid-real",
        stake: int = 10**9,
        tx_index: bool = True,
        operator_key_home: Path | None = None,
        accounts: Sequence[str] = (),
    ) -> SeidNode:
        """A single-validator chain made by seid's own commands; start it with `.start()`.

        `operator_key_home`: an agent home whose account key becomes the validator's operator key, through
        `nodetask-agent keys export` and `seid keys import` (so the agent's votes carry the validator's power);
        otherwise `seid keys add` makes one. `accounts` are funded in genesis too.
        """
        node = self.init(name, "validator", chain_id=chain_id)
        keyring = ["--keyring-backend", "test"]
        if operator_key_home is None:
            node.key_address = json.loads(node.seid("keys", "add", name, *keyring, "--output", "json"))["address"]
        else:
            armored = node.home / "operator.armor"
            armored.write_text(export_agent_key(operator_key_home))
            node.seid("keys", "import", name, str(armored), *keyring, input=PASSPHRASE + "\n")
            node.key_address = node.seid("keys", "show", name, "-a", *keyring).strip()
        node.seid("add-genesis-account", node.key_address, f"{stake * 100}{DENOM}", *keyring)
        for address in accounts:
            node.seid("add-genesis-account", address, f"{stake * 100}{DENOM}")
        node.seid("gentx", name, f"{stake}{DENOM}", "--chain-id", chain_id, *keyring)
        consensus_key = json.loads((node.config_dir / "priv_validator_key.json").read_text())["pub_key"]
        power = str(stake // 10**6)

        def fill(genesis: dict[str, Any]) -> None:
            genesis["validators"] = [{"pub_key": consensus_key, "power": power}]
            gov = genesis["app_state"]["gov"]
            gov["voting_params"]["voting_period"] = VOTING_PERIOD
            gov["voting_params"]["expedited_voting_period"] = "10s"
            gov["deposit_params"]["max_deposit_period"] = VOTING_PERIOD

        node.edit_genesis(fill)
        node.seid("collect-gentxs")
        node.edit_config({"tx-index.indexer": ["kv" if tx_index else "null"]})
        return node

    def follower(self, name: str, mode: str, *, of: SeidNode) -> SeidNode:
        """A node of `of`'s chain in `mode` (full, seed, archive): same genesis, `of` as persistent peer."""
        node = self.init(name, mode, chain_id=of.chain_id)
        shutil.copyfile(of.config_dir / "genesis.json", node.config_dir / "genesis.json")
        node.edit_config({"p2p.persistent-peers": of.p2p_address})
        return node


@pytest.fixture
def seid_net(seid_binary: Path, chain_processes: ProcessGroup, tmp_path: Path) -> SeidNet:
    directory = tmp_path / "seid"
    directory.mkdir(exist_ok=True)
    return SeidNet(seid_binary, directory, chain_processes)


def seid_agent_env(node: SeidNode, **extra: str) -> dict[str, str]:
    """The environment of a `nodetask-agent` process for `node`: Sei's identity is the agent's default."""
    return {
        **os.environ,
        "SEI_HOME": str(node.home),
        "SEI_RPC_ENDPOINT": node.rpc_url,
        "SEI_CHAIN_ID": node.chain_id,
        "SEI_BINARY": str(node.binary),
        **extra,
    }

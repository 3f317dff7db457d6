"""An idle agent loads only what it needs to watch and serve: the heavy libraries a task uses (boto3/botocore for S3
and EC2, the kubernetes package, compression codecs, secp256k1 and ed25519) are imported when a task runs, not at
start-up (docs/benchmarks.md, idle memory). Checked in a fresh interpreter, by module names, not by timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("boto3", "botocore", "kubernetes", "zstandard", "lz4", "coincurve", "cryptography")

START_UP = {
    "cli": "import agent.cli.main",
    "engine and every task handler": "import agent.engine; import agent.tasks; agent.tasks.default_registry()",
    "server and store": "import agent.server.app; import agent.store.sqlite",
    "operator": "import agent.operator.watch",
    "runtime and the run front doors": "import agent.runtime; import agent.cli.run",
}


WITHOUT_KUBERNETES = "import sys\nsys.modules['kubernetes'] = None  # as installed in the image: no kubeconfig extra\n"
"""The kubernetes package is the optional `kubeconfig` extra, installed here for the tests' kubeconfigs; kopf imports it
when present. The probes run as the image does, without it."""


@pytest.mark.parametrize("code", list(START_UP.values()), ids=list(START_UP))
def test_start_up_imports_none_of_the_heavy_libraries(code: str) -> None:
    listing = "import json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m, v in sys.modules.items() if v})))"
    probe = f"{WITHOUT_KUBERNETES}{code}\n{listing}"
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(output.strip().splitlines()[-1]))
    assert loaded.isdisjoint(HEAVY), f"imported at start-up: {sorted(loaded.intersection(HEAVY))}"


def test_the_probe_sees_a_heavy_import() -> None:
    """The check above would notice one: running an S3 client's import path does load botocore."""
    probe = (
        "from agent.io.s3 import S3Client\nS3Client(region='us-east-1', endpoint_url='http://127.0.0.1:9').client\n"
        "import sys\nprint('botocore' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert output.strip().splitlines()[-1] == "True"


def test_a_kubeconfig_without_the_kubeconfig_extra_is_refused_naming_the_extra(tmp_path: Path) -> None:
    probe = (
        f"{WITHOUT_KUBERNETES}from agent.operator.kubeapi import load_connection\n"
        f"try:\n    load_connection({str(tmp_path / 'kubeconfig')!r})\nexcept ValueError as error:\n    print(error)"
    )
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout

    assert "needs the kubernetes package: pip install 'nodetask-agent[kubeconfig]'" in output

"""Benchmark: the streamed fork rewrite (agent.chain.cosmos.fork) against a whole-document parse, by export size.

    .venv/bin/python bench/fork.py [--accounts 20000,80000,320000] [--workdir DIR]

For each size it writes a synthetic export (that many accounts and balances, ~310 bytes of JSON per account, an
app_state shaped like a simd export), then in a child process per measurement (so `ru_maxrss` is the measurement's
own peak):

- stream: `scan_export` + `write_fork` with a fork's typical edits (what assemble-genesis-fork runs)
- whole:  `json.load` + `json.dump` of the same file (the approach it replaced, without any edit)

Prints a Markdown table (MB/s of export, peak RSS) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.chain.cosmos import fork
from tests.chain.test_fork_stream import _synthetic_export


def measure(mode: str, source: Path, target: Path) -> None:
    start = time.perf_counter()
    if mode == "stream":
        facts = fork.scan_export(source, set())
        edits = fork.ForkEdits(
            replace={"chain_id": "fork-1", **fork.stripped_state_edits(facts.modules)},
            append_items={fork.ACCOUNTS: [{"address": "new"}]},
        )
        with target.open("wb") as sink:
            fork.write_fork(source, sink, edits)
    else:
        with source.open("rb") as handle:
            document = json.load(handle)
        with target.open("w") as sink:
            json.dump(document, sink)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", default="20000,80000,320000")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fork-bench-"))
    print("| export | stream MB/s | stream peak RSS | whole-parse MB/s | whole-parse peak RSS |")
    print("|---|---|---|---|---|")
    for accounts in (int(n) for n in args.accounts.split(",")):
        source = workdir / f"export-{accounts}.json"
        _synthetic_export(source, accounts)
        size = source.stat().st_size
        row = [f"{size / 1e6:.0f} MB ({accounts} accounts)"]
        for mode in ("stream", "whole"):
            output = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(source), str(workdir / "out.json")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(output.strip().splitlines()[-1])
            row += [f"{size / 1e6 / result['seconds']:.1f}", f"{result['rss'] / 2**20:.0f} MiB"]
        print("| " + " | ".join(row) + " |")
        source.unlink()


if __name__ == "__main__":
    main()

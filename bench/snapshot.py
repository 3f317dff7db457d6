"""Benchmark: snapshot-upload and snapshot-restore against the shell pipes they replace, on the same S3 endpoint.

    .venv/bin/python bench/snapshot.py [--sizes 256,1024] [--compression zst] [--repeat 2] [--workdir DIR]

For each size (MiB of snapshot data) it generates a node home with `data/snapshots/{100,200,300}` where height 200
(the one uploaded) holds that many MiB in 16 MiB chunk files, each 1 MiB block half random and half repetitive
(so compression has work to do, about 2:1), then measures on one moto server (`moto_server`, a separate process):

- upload:  the real `snapshot-upload` handler      vs  `tar -c | zstd | curl -T - <presigned PUT>`
- restore: the real `snapshot-restore` handler     vs  `curl <presigned GET> | zstd -d | tar -x` (then `sync`,
  because the handler flushes to disk before swapping the snapshot into place)

Each agent run happens in a child process so its peak RSS (`ru_maxrss`) is the pipeline's own, not moto's or the
generator's. Throughput is snapshot bytes (uncompressed) per second; best of `--repeat` runs. moto keeps objects in
memory: the default sizes need a few GB of RAM. Results are printed as a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "bench-snapshots"
REGION = "us-east-1"
CHAIN = "bench-1"
MiB = 1024 * 1024
CHUNK_FILE = 16 * MiB


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def generate_home(home: Path, size_mib: int) -> int:
    """A node home whose snapshot 200 holds `size_mib` MiB; returns its byte count."""
    snapshots = home / "data" / "snapshots"
    (snapshots / "100").mkdir(parents=True)
    (snapshots / "300").mkdir()
    chunks = snapshots / "200" / "1"
    chunks.mkdir(parents=True)
    filler = (b"sei snapshot chunk filler " * 40000)[: MiB // 2]
    remaining = size_mib * MiB
    index = 0
    while remaining:
        size = min(CHUNK_FILE, remaining)
        with open(chunks / str(index), "wb") as handle:
            written = 0
            while written < size:
                block = (os.urandom(MiB // 2) + filler)[: size - written]
                handle.write(block)
                written += len(block)
        remaining -= size
        index += 1
    (snapshots / "metadata.db").mkdir()
    (snapshots / "metadata.db" / "CURRENT").write_text("MANIFEST-000001\n")
    return size_mib * MiB


# ------------------------------------------------------------------------------------------------- child process


def archive_only(home: Path, compression: str) -> dict[str, Any]:
    """The upload's producing side alone: tar + compression + SHA-256 of snapshot 200, written nowhere."""
    import hashlib

    from agent.io.archive import Compression, tar_chunks

    hasher = hashlib.sha256()
    started = time.perf_counter()
    for chunk in tar_chunks(home / "data" / "snapshots", ["200", "metadata.db"], Compression(compression)):
        hasher.update(chunk)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "result": None}


def run_child(task: str, home: Path, endpoint: str, compression: str) -> dict[str, Any]:
    """Run one handler in this process (the child) and return its result, wall time and peak RSS."""
    if task == "archive-only":
        return archive_only(home, compression)
    from agent.models import TaskType
    from agent.models.settings import AgentSettings
    from agent.tasks import TaskContext, default_registry

    settings = AgentSettings(
        home=home, chain_id=CHAIN, snapshot_bucket=BUCKET, snapshot_region=REGION, s3_endpoint_url=endpoint
    )
    task_type = TaskType(task)
    spec = default_registry().get(task_type)
    assert spec is not None
    params = spec.params_model.model_validate({"compression": compression} if task == "snapshot-upload" else {})
    context = TaskContext(
        task_id="00000000-0000-4000-8000-000000000000",
        task_type=task_type,
        run=1,
        resumes=0,
        settings=settings,
        log=logging.LoggerAdapter(logging.getLogger("bench"), {}),
    )
    started = time.perf_counter()
    result = asyncio.run(spec.handler(params, context))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "result": result}


def agent_run(task: str, home: Path, endpoint: str, compression: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", task, "--home", str(home), "--endpoint", endpoint]
    output = subprocess.run([*command, "--compression", compression], check=True, capture_output=True, text=True)
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------------ baseline


def shell(command: str) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return time.perf_counter() - started


def compressor(compression: str) -> tuple[str, str]:
    return {
        "zst": ("zstd -3 -q -c", "zstd -d -q -c"),
        "gz": ("gzip -6 -c", "gzip -d -c"),
        "lz4": ("lz4 -q -c", "lz4 -d -q -c"),
    }[compression]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256,1024", help="snapshot sizes in MiB, comma separated")
    parser.add_argument("--compression", default="zst", choices=["zst", "gz", "lz4"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(run_child(options.child, options.home, options.endpoint, options.compression)))
        return

    import boto3

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION)
    os.environ.update(AWS_EC2_METADATA_DISABLED="true")
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="snapshot-bench-", dir="/var/tmp"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto_binary = Path(sys.executable).parent / "moto_server"
    moto = subprocess.Popen(
        [str(moto_binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    rows: list[dict[str, Any]] = []
    try:
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
        for _ in range(100):
            try:
                s3.list_buckets()
                break
            except Exception:
                time.sleep(0.1)
        s3.create_bucket(Bucket=BUCKET)
        pack, unpack = compressor(options.compression)
        for size_mib in (int(size) for size in options.sizes.split(",")):
            source = workdir / f"source-{size_mib}"
            shutil.rmtree(source, ignore_errors=True)
            data_bytes = generate_home(source, size_mib)
            snapshots = source / "data" / "snapshots"
            row: dict[str, Any] = {"size_mib": size_mib}
            best: dict[str, float] = {}
            for _ in range(options.repeat):
                (source / ".sei-sidecar-last-upload.json").unlink(missing_ok=True)
                upload = agent_run("snapshot-upload", source, endpoint, options.compression)
                best["agent_upload"] = min(best.get("agent_upload", 1e9), upload["seconds"])
                row["agent_upload_rss_mib"] = upload["rss_kib"] / 1024
                row["archive_mib"] = upload["result"]["archiveBytes"] / MiB

                produce = agent_run("archive-only", source, endpoint, options.compression)
                best["agent_archive"] = min(best.get("agent_archive", 1e9), produce["seconds"])
                seconds = shell(f"tar -C {snapshots} -cf - 200 metadata.db | {pack} | sha256sum > /dev/null")
                best["pipe_archive"] = min(best.get("pipe_archive", 1e9), seconds)

                put_url = s3.generate_presigned_url(
                    "put_object", Params={"Bucket": BUCKET, "Key": "baseline/200.tar"}, ExpiresIn=3600
                )
                seconds = shell(
                    f"tar -C {snapshots} -cf - 200 metadata.db | {pack} | curl -sS -f -o /dev/null -T - '{put_url}'"
                )
                best["pipe_upload"] = min(best.get("pipe_upload", 1e9), seconds)

                target = workdir / f"restore-{size_mib}"
                shutil.rmtree(target, ignore_errors=True)
                (target / "data").mkdir(parents=True)
                (target / "config").mkdir()
                restore = agent_run("snapshot-restore", target, endpoint, options.compression)
                best["agent_restore"] = min(best.get("agent_restore", 1e9), restore["seconds"])
                row["agent_restore_rss_mib"] = restore["rss_kib"] / 1024
                shutil.rmtree(target)

                get_url = s3.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": BUCKET, "Key": f"{CHAIN}/state-sync/200.tar.{options.compression}"},
                    ExpiresIn=3600,
                )
                piped = workdir / f"piped-{size_mib}"
                shutil.rmtree(piped, ignore_errors=True)
                piped.mkdir()
                seconds = shell(f"curl -sS -f '{get_url}' | {unpack} | tar -x -C {piped} && sync")
                best["pipe_restore"] = min(best.get("pipe_restore", 1e9), seconds)
                shutil.rmtree(piped)
            for name, seconds in best.items():
                row[f"{name}_mib_s"] = data_bytes / MiB / seconds
            row["upload_ratio"] = row["agent_upload_mib_s"] / row["pipe_upload_mib_s"]
            row["restore_ratio"] = row["agent_restore_mib_s"] / row["pipe_restore_mib_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
                s3.delete_object(Bucket=BUCKET, Key=item["Key"])
            shutil.rmtree(source)
    finally:
        moto.terminate()
        moto.wait(10)
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"| snapshot | archive ({options.compression}) | upload: agent | upload: tar-c-pipe-curl-T | ratio "
        "| archive only: agent / tar-pipe-zstd-pipe-sha256sum | restore: agent | restore: curl-pipe-tar-x | ratio "
        "| agent peak RSS upload / restore |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['size_mib']} MiB | {row['archive_mib']:.0f} MiB | {row['agent_upload_mib_s']:.0f} MiB/s "
            f"| {row['pipe_upload_mib_s']:.0f} MiB/s | {row['upload_ratio']:.2f}x "
            f"| {row['agent_archive_mib_s']:.0f} / {row['pipe_archive_mib_s']:.0f} MiB/s "
            f"| {row['agent_restore_mib_s']:.0f} MiB/s | {row['pipe_restore_mib_s']:.0f} MiB/s "
            f"| {row['restore_ratio']:.2f}x "
            f"| {row['agent_upload_rss_mib']:.0f} / {row['agent_restore_rss_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    main()

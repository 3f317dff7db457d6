"""Benchmark: snapshot-upload and snapshot-restore against the shell pipes they replace, on a real S3 server.

    .venv/bin/python bench/snapshot.py [--sizes 256,1024,4096] [--repeat 3] [--workdir DIR] [--server versitygw|moto]

For each size (MiB of snapshot data) it generates a node home with `data/snapshots/{100,200,300}` where height 200
(the one uploaded) holds that many MiB in 16 MiB chunk files, each 1 MiB block half random and half repetitive
(so zstd has work to do, about 2:1), then measures, interleaved in every round so that all figures of a round share
the machine's load, on one S3 server (versitygw v1.8.0 from `scripts/s3-tools.sh`, a separate process serving a
directory on the same disk; `--server moto` for the old baseline):

- restore: the real `snapshot-restore` handler   vs  `curl <presigned GET> | zstd -d | tar -x && sync`
- upload:  the real `snapshot-upload` handler    vs  `tar -c | zstd | rclone rcat` (rclone sizes the object itself:
           real S3 refuses an unsized `curl -T -` with 411)
- producing side: tar + zstd + SHA-256 in the agent, written nowhere  vs  `tar -c | zstd | sha256sum`
- physical limits: `zstd -d` alone on the archive (from the page cache, to /dev/null); one GET of the archive with
  curl to /dev/null; the agent's parallel ranged GETs alone (to nowhere); raw write speed of the snapshot's size
  (`dd bs=1M conv=fsync`)
- restore stages (where the time goes): parallel GET; + SHA-256; + decompression; the handler is the full pipeline

Agent runs happen in child processes so peak RSS (`ru_maxrss`) is the pipeline's own. Throughput is snapshot
(uncompressed) bytes per second except for the GET and `zstd -d` limits (archive bytes per second, marked). Each
figure is the median of `--repeat` rounds with its min-max spread; the load average is sampled before every round.
Results are printed as JSON lines and as Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import shutil
import statistics
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
ACCESS_KEY = "benchaccess"
SECRET_KEY = "benchsecret-benchsecret"
MiB = 1024 * 1024
CHUNK_FILE = 16 * MiB


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


def archive_only(home: Path, compression: str) -> None:
    """The upload's producing side alone: tar + compression + SHA-256 of snapshot 200, written nowhere."""
    import hashlib

    from agent.io.archive import Compression, tar_chunks

    hasher = hashlib.sha256()
    for chunk in tar_chunks(home / "data" / "snapshots", ["200", "metadata.db"], Compression(compression)):
        hasher.update(chunk)


def restore_stage(stage: str, endpoint: str, key: str) -> float:
    """A prefix of the restore pipeline, to see where the time goes: `get` (parallel ranged GETs to nowhere),
    `get+sha256`, `get+sha256+decompress` (zstd to nowhere)."""
    import hashlib

    from agent.io.s3 import S3Client

    client = S3Client(region=REGION, endpoint_url=endpoint)
    assert client.client is not None  # created before the clock starts: the stages measure the data path
    hasher = hashlib.sha256()
    started = time.perf_counter()
    with client.open_parallel_reader(BUCKET, key) as reader:
        if stage == "get":
            while reader.read(MiB):
                pass
        elif stage == "get+sha256":
            while data := reader.read(MiB):
                hasher.update(data)
        else:
            import zstandard

            class Hashing:
                def read(self, size: int = -1) -> bytes:
                    data = reader.read(size)
                    hasher.update(data)
                    return data

            stream = zstandard.ZstdDecompressor().stream_reader(Hashing(), read_size=MiB, read_across_frames=True)
            while stream.read(MiB):
                pass
    return time.perf_counter() - started


def run_child(task: str, home: Path, endpoint: str, compression: str, key: str) -> dict[str, Any]:
    """Run one handler (or pipeline stage) in this process (the child); return its wall time and peak RSS."""
    started = time.perf_counter()
    result: Any = None
    if task == "archive-only":
        archive_only(home, compression)
    elif task.startswith("stage:"):
        seconds = restore_stage(task.removeprefix("stage:"), endpoint, key)
        return {"seconds": seconds, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "result": None}
    else:
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
        # The agent imports boto3 when its first S3 task runs (an idle agent does not carry it); a long-running agent
        # pays that once, so it is measured apart (`import_seconds`) and not charged to every transfer.
        import_started = time.perf_counter()
        import boto3.session  # noqa: F401

        import_seconds = time.perf_counter() - import_started
        started = time.perf_counter()
        result = asyncio.run(spec.handler(params, context))
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "import_seconds": import_seconds,
            "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "result": result,
        }
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "result": result}


def agent_run(task: str, home: Path, endpoint: str, compression: str, key: str = "") -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", task, "--home", str(home), "--endpoint", endpoint, "--key", key]
    output = subprocess.run([*command, "--compression", compression], check=True, capture_output=True, text=True)
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------------ baseline


def shell(command: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, env=env)
    return time.perf_counter() - started


def compressor(compression: str) -> tuple[str, str]:
    return {
        "zst": ("zstd -3 -q -c", "zstd -d -q -c"),
        "gz": ("gzip -6 -c", "gzip -d -c"),
        "lz4": ("lz4 -q -c", "lz4 -d -q -c"),
    }[compression]


def start_server(kind: str, workdir: Path) -> tuple[str, Any]:
    """(endpoint, stop function) of the S3 server the bench runs against."""
    if kind == "moto":
        from tests.fixtures.versitygw import _free_port

        port = _free_port()
        moto = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop_moto() -> None:
            moto.terminate()
            moto.wait(10)

        return f"http://127.0.0.1:{port}", stop_moto
    from tests.fixtures.versitygw import VersityGateway, find_binary, tool_dir

    binary = find_binary()
    if binary is None:
        raise SystemExit(f"versitygw is not built in {tool_dir()}: run scripts/s3-tools.sh")
    gateway = VersityGateway(binary, workdir / "s3-root", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    return gateway.start(), gateway.stop


def median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256,1024", help="snapshot sizes in MiB, comma separated")
    parser.add_argument("--compression", default="zst", choices=["zst", "gz", "lz4"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", default="versitygw", choices=["versitygw", "moto"])
    parser.add_argument("--skip", default="", help="comma separated: upload, restore, limits, stages")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        result = run_child(options.child, options.home, options.endpoint, options.compression, options.key)
        print(json.dumps(result))
        return
    skip = set(filter(None, options.skip.split(",")))

    import boto3

    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION)
    os.environ.update(AWS_EC2_METADATA_DISABLED="true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="snapshot-bench-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    endpoint, stop_server = start_server(options.server, workdir)
    # rclone's S3 SDK cannot combine a custom CA bundle with its HTTP transport; the endpoint is plain HTTP anyway.
    rclone_env = {
        **{name: value for name, value in os.environ.items() if name != "AWS_CA_BUNDLE"},
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_CONFIG_BENCH_REGION": REGION,
        "RCLONE_CONFIG": "/dev/null",
    }
    rows: list[dict[str, Any]] = []
    try:
        from botocore.config import Config

        # SigV4 presigned URLs: a real S3 server refuses the legacy V2 form botocore presigns by default.
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint, config=Config(signature_version="s3v4"))
        for _ in range(100):
            try:
                s3.list_buckets()
                break
            except Exception:
                time.sleep(0.1)
        s3.create_bucket(Bucket=BUCKET)
        pack, unpack = compressor(options.compression)
        key = f"{CHAIN}/state-sync/200.tar.{options.compression}"
        for size_mib in (int(size) for size in options.sizes.split(",")):
            source = workdir / f"source-{size_mib}"
            shutil.rmtree(source, ignore_errors=True)
            data_bytes = generate_home(source, size_mib)
            snapshots = source / "data" / "snapshots"
            row: dict[str, Any] = {"size_mib": size_mib, "load": []}
            samples: dict[str, list[float]] = {}
            rss: dict[str, list[float]] = {"upload": [], "restore": []}

            def sample(name: str, seconds: float, samples: dict[str, list[float]] = samples) -> None:
                samples.setdefault(name, []).append(seconds)

            for _ in range(options.repeat):
                row["load"].append(round(os.getloadavg()[0], 1))
                (source / ".sei-sidecar-last-upload.json").unlink(missing_ok=True)
                upload = agent_run("snapshot-upload", source, endpoint, options.compression)
                archive_bytes = upload["result"]["archiveBytes"]
                row["archive_mib"] = archive_bytes / MiB
                if "upload" not in skip:
                    sample("agent_upload", upload["seconds"])
                    rss["upload"].append(upload["rss_kib"] / 1024)
                    sample("agent_archive", agent_run("archive-only", source, endpoint, options.compression)["seconds"])
                    sample(
                        "pipe_archive",
                        shell(f"tar -C {snapshots} -cf - 200 metadata.db | {pack} | sha256sum >/dev/null"),
                    )
                    sample(
                        "pipe_upload",
                        shell(
                            f"tar -C {snapshots} -cf - 200 metadata.db | {pack} | "
                            f"rclone rcat --s3-chunk-size 8M bench:{BUCKET}/baseline/200.tar",
                            env=rclone_env,
                        ),
                    )

                get_url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600)
                if "restore" not in skip:
                    target = workdir / f"restore-{size_mib}"
                    shutil.rmtree(target, ignore_errors=True)
                    (target / "data").mkdir(parents=True)
                    (target / "config").mkdir()
                    restore = agent_run("snapshot-restore", target, endpoint, options.compression)
                    sample("agent_restore", restore["seconds"])
                    row.setdefault("boto3_import_seconds", []).append(round(restore["import_seconds"], 2))
                    rss["restore"].append(restore["rss_kib"] / 1024)
                    shutil.rmtree(target)
                    piped = workdir / f"piped-{size_mib}"
                    shutil.rmtree(piped, ignore_errors=True)
                    piped.mkdir()
                    sample("pipe_restore", shell(f"curl -sS -f '{get_url}' | {unpack} | tar -x -C {piped} && sync"))
                    shutil.rmtree(piped)

                if "stages" not in skip:
                    for stage in ("get", "get+sha256", "get+sha256+decompress"):
                        seconds = agent_run(f"stage:{stage}", source, endpoint, options.compression, key)["seconds"]
                        sample(f"stage_{stage}", seconds)

                if "limits" not in skip:
                    sample("limit_curl_get", shell(f"curl -sS -f '{get_url}' -o /dev/null"))
                    local_archive = workdir / "archive.local"
                    shell(f"curl -sS -f '{get_url}' -o {local_archive} && cat {local_archive} >/dev/null")
                    sample("limit_zstd_d", shell(f"{unpack} {local_archive} >/dev/null"))
                    local_archive.unlink()
                    written = workdir / "dd.out"
                    sample(
                        "limit_write",
                        shell(f"dd if=/dev/zero of={written} bs=1M count={size_mib} conv=fsync 2>/dev/null"),
                    )
                    written.unlink()

            for name, values in samples.items():
                per_second = [data_bytes / MiB / seconds for seconds in values]
                if name in ("limit_curl_get", "limit_zstd_d") or (
                    name.startswith("stage_get") and "decompress" not in name
                ):
                    per_second = [archive_bytes / MiB / seconds for seconds in values]
                row[name] = median_spread(per_second)
                row[name + "_seconds"] = statistics.median(values)
            if "agent_restore" in samples:
                ratios = [p / a for a, p in zip(samples["agent_restore"], samples["pipe_restore"], strict=True)]
                row["restore_ratio"] = median_spread(ratios)
                row["restore_rss_mib"] = max(rss["restore"])
            if "agent_upload" in samples:
                ratios = [p / a for a, p in zip(samples["agent_upload"], samples["pipe_upload"], strict=True)]
                row["upload_ratio"] = median_spread(ratios)
                overhead = [u / p - 1 for u, p in zip(samples["agent_upload"], samples["agent_archive"], strict=True)]
                row["upload_network_overhead"] = median_spread(overhead)
                row["upload_rss_mib"] = max(rss["upload"])
            rows.append(row)
            print(json.dumps(row), flush=True)
            for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
                s3.delete_object(Bucket=BUCKET, Key=item["Key"])
            shutil.rmtree(source)
    finally:
        stop_server()
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_tables(rows, options.compression)


def fmt(value: tuple[float, float, float] | None, unit: str = "") -> str:
    if value is None:
        return "-"
    median, low, high = value
    if unit == "x":
        return f"{median:.2f}x ({low:.2f}-{high:.2f})"
    if unit == "%":
        return f"{median * 100:.0f} % ({low * 100:.0f}-{high * 100:.0f})"
    return f"{median:.0f} ({low:.0f}-{high:.0f})"


def print_tables(rows: list[dict[str, Any]], compression: str) -> None:
    print()
    print(
        "| snapshot | archive | load avg | restore: agent | `curl \\| zstd -d \\| tar -x && sync` | ratio "
        "| agent peak RSS |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        if "agent_restore" in row:
            print(
                f"| {row['size_mib']} MiB | {row['archive_mib']:.0f} MiB ({compression}) | {row['load']} "
                f"| {fmt(row['agent_restore'])} | {fmt(row['pipe_restore'])} | {fmt(row['restore_ratio'], 'x')} "
                f"| {row['restore_rss_mib']:.0f} MiB |"
            )
    print()
    print(
        "| snapshot | parallel GET (archive MiB/s) | + SHA-256 | + zstd -d | restore (all) "
        "| limit: curl GET (archive MiB/s) | limit: `zstd -d` (archive MiB/s) | limit: write + fsync |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['size_mib']} MiB | {fmt(row.get('stage_get'))} | {fmt(row.get('stage_get+sha256'))} "
            f"| {fmt(row.get('stage_get+sha256+decompress'))} | {fmt(row.get('agent_restore'))} "
            f"| {fmt(row.get('limit_curl_get'))} | {fmt(row.get('limit_zstd_d'))} | {fmt(row.get('limit_write'))} |"
        )
    print()
    print(
        "| snapshot | upload: agent | `tar \\| zstd \\| rclone rcat` | ratio | producing side: agent "
        "| `tar \\| zstd \\| sha256sum` | network on top of producing | agent peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        if "agent_upload" in row:
            print(
                f"| {row['size_mib']} MiB | {fmt(row['agent_upload'])} | {fmt(row['pipe_upload'])} "
                f"| {fmt(row['upload_ratio'], 'x')} | {fmt(row['agent_archive'])} | {fmt(row['pipe_archive'])} "
                f"| {fmt(row['upload_network_overhead'], '%')} | {row['upload_rss_mib']:.0f} MiB |"
            )


if __name__ == "__main__":
    main()

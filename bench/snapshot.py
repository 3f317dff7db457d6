"""Benchmark: snapshot-upload and snapshot-restore against the shell pipes they replace, on a real S3 server.

    .venv/bin/python bench/snapshot.py [--sizes 256,1024,4096] [--repeat 3] [--workdir DIR] [--server versitygw|moto]
                                       [--server-root disk,tmpfs] [--skip upload,restore,limits,stages]

For each size (MiB of snapshot data) it generates a node home with `data/snapshots/{100,200,300}` where height 200
(the one uploaded) holds that many MiB in 16 MiB chunk files, each 1 MiB block half random and half repetitive
(so zstd has work to do, about 2:1), then measures, interleaved in every round so that all figures of a round share
the machine's load, on S3 servers (versitygw v1.8.0 from `scripts/s3-tools.sh`, a separate process; by default two
of them, one serving a directory on the same disk and one a directory on tmpfs (/dev/shm), so the server's own disk
writes can be told apart from the rest; `--server-root tmpfs+https` (or `disk+https`) adds one served over TLS, with a
throwaway CA that `AWS_CA_BUNDLE` and rclone's `--ca-cert` name; uploads run on each, restore and its limits on the
first; `--server moto` for the old baseline):

- restore: the real `snapshot-restore` handler   vs  `curl <presigned GET> | zstd -d | tar -x && sync`
- upload:  the real `snapshot-upload` handler    vs  `tar -c | zstd | rclone rcat` (rclone sizes the object itself:
           real S3 refuses an unsized `curl -T -` with 411)
- producing side: tar + zstd + SHA-256 in the agent, written nowhere  vs  `tar -c | zstd | sha256sum`
- upload limits, on each server: the agent's multipart writer sending the archive already compressed in memory
  (raw upload, nothing produced while the clock runs), also with `UNSIGNED-PAYLOAD` (what the SigV4 payload hash,
  computed over plain HTTP, costs); CompleteMultipartUpload alone; where the upload's time goes (producing while
  sending, producer blocked on a part buffer, drain of the parts in flight, completion) and the CPU seconds of the
  agent's process and of the server's during each upload
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


class UploadTimeline:
    """Where an upload's time goes, recorded inside the child by wrapping the multipart writer's two blocking points
    (no change to the code measured): `produce` the time spent filling part buffers (tar + compression + SHA-256,
    i.e. producing, while parts upload), `blocked` the time the producing thread waited for a part buffer, `drain`
    from the last byte produced to the start of CompleteMultipartUpload (parts still in flight), `complete` that call
    alone (the server assembles the object)."""

    def __init__(self) -> None:
        import agent.io.s3.multipart as multipart

        self.produce = self.blocked = self.drain = self.complete = 0.0
        self._produced_at = 0.0
        self._complete_started = 0.0
        self._waits: list[tuple[float, float]] = []
        fill, wait = multipart._PartFiller.fill, multipart.wait
        timeline = self

        def timed_fill(filler: Any, buffer: bytearray) -> bytearray:
            started = time.perf_counter()
            try:
                return fill(filler, buffer)
            finally:
                timeline._produced_at = time.perf_counter()
                timeline.produce += timeline._produced_at - started

        def timed_wait(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return wait(*args, **kwargs)
            finally:
                timeline._waits.append((started, time.perf_counter() - started))

        multipart._PartFiller.fill = timed_fill  # type: ignore[method-assign]
        multipart.wait = timed_wait  # type: ignore[assignment]

    def hook(self, events: Any) -> None:
        """Time CompleteMultipartUpload on a boto3 session's events (before its clients are created)."""

        def before(**_: Any) -> None:
            self._complete_started = time.perf_counter()
            self.drain = self._complete_started - self._produced_at

        def after(**_: Any) -> None:
            self.complete = time.perf_counter() - self._complete_started

        events.register("before-call.s3.CompleteMultipartUpload", before)
        events.register("after-call.s3.CompleteMultipartUpload", after)

    def as_dict(self) -> dict[str, float]:
        # waits after the last part was filled are the drain; the ones before, the producing thread blocked
        self.blocked = sum(seconds for started, seconds in self._waits if started < self._produced_at)
        return {name: round(getattr(self, name), 3) for name in ("produce", "blocked", "drain", "complete")}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_upload(home: Path, endpoint: str, compression: str, *, signed: bool = True) -> tuple[float, float]:
    """The network side's limit: the agent's multipart writer sending an archive already compressed in memory (no
    tar, no compression, no SHA-256 while the clock runs), on a client that exists before it starts. Unless `signed`,
    parts go with `UNSIGNED-PAYLOAD` instead of their SHA-256 in the SigV4 signature (which botocore computes, and
    the server verifies, for every part over plain HTTP): what that hash costs both sides."""
    from agent.io.archive import Compression, tar_chunks
    from agent.io.s3 import S3Client
    from agent.io.s3 import client as s3_client

    archive = b"".join(tar_chunks(home / "data" / "snapshots", ["200", "metadata.db"], Compression(compression)))
    view = memoryview(archive)
    client = S3Client(region=REGION, endpoint_url=endpoint)
    if not signed:
        from botocore.config import Config

        unsigned = Config(s3={"addressing_style": "path", "payload_signing_enabled": False})
        config = client.client.meta.config.merge(unsigned)
        client._client = s3_client._SESSION.client("s3", region_name=REGION, endpoint_url=endpoint, config=config)
    assert client.client is not None
    chunks = (view[offset : offset + MiB] for offset in range(0, len(view), MiB))
    started, cpu = time.perf_counter(), cpu_seconds()
    client.upload_blocking(BUCKET, "limit/raw.tar", chunks, size_hint=len(archive) * 2)
    return time.perf_counter() - started, cpu_seconds() - cpu


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
    result: Any = None
    timeline = UploadTimeline()
    import_started = time.perf_counter()
    import boto3.session

    from agent.io.s3 import client as s3_client

    s3_client._SESSION = boto3.session.Session()  # the agent's one session, created here so the timeline can hook it
    timeline.hook(s3_client._SESSION.events)
    # A running agent loads the S3 service model into its session once, with its first S3 task; later tasks' clients
    # take milliseconds. Loaded here, before any clock starts, so that figure is not charged to every transfer.
    s3_client._SESSION.client("s3", region_name=REGION, endpoint_url=endpoint or None)
    import_seconds = time.perf_counter() - import_started
    if task in ("raw-upload", "raw-upload-unsigned"):
        seconds, cpu = raw_upload(home, endpoint, compression, signed=task == "raw-upload")
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "result": None,
            "timeline": timeline.as_dict(),
        }
    started, cpu = time.perf_counter(), cpu_seconds()
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
        # pays that once, so it is measured apart (`import_seconds`, with the service model's loading above) and
        # not charged to every transfer.
        started, cpu = time.perf_counter(), cpu_seconds()
        result = asyncio.run(spec.handler(params, context))
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds() - cpu,
            "import_seconds": import_seconds,
            "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "result": result,
            "timeline": timeline.as_dict(),
        }
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu,
        "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "result": result,
    }


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


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process used so far (0 when unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


TMPFS = Path("/dev/shm")


SERVER_ROOTS = ("disk", "tmpfs", "disk+https", "tmpfs+https")


def server_root(kind: str, workdir: Path) -> Path:
    """Where the server keeps its objects: `disk` (the workdir's file system) or `tmpfs` (/dev/shm: no disk writes,
    so versitygw's write-every-part-then-concatenate costs memory copies only); `+https`: served over TLS."""
    if kind.startswith("tmpfs"):
        return Path(tempfile.mkdtemp(prefix="snapshot-bench-s3-", dir=TMPFS))
    return workdir / f"s3-root-{kind}"


def server_tls(kind: str, workdir: Path) -> tuple[Path, Path] | None:
    """A certificate for a `+https` server, from a throwaway CA that `AWS_CA_BUNDLE` names for every client."""
    if not kind.endswith("+https"):
        return None
    from tests.fixtures.kube import Pki

    pki = Pki(workdir / "pki") if (workdir / "pki" / "ca.crt").exists() else Pki.create(workdir / "pki")
    os.environ["AWS_CA_BUNDLE"] = str(pki.ca_cert)
    return pki.issue("versitygw", server=True)


def start_server(
    kind: str, workdir: Path, root: Path | None = None, tls: tuple[Path, Path] | None = None
) -> tuple[str, Any, Any]:
    """(endpoint, stop function, process id or None) of the S3 server the bench runs against."""
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

        return f"http://127.0.0.1:{port}", stop_moto, moto.pid
    from tests.fixtures.versitygw import VersityGateway, find_binary, tool_dir

    binary = find_binary()
    if binary is None:
        raise SystemExit(f"versitygw is not built in {tool_dir()}: run scripts/s3-tools.sh")
    root = root or workdir / "s3-root"
    gateway = VersityGateway(
        binary, root, access_key=ACCESS_KEY, secret_key=SECRET_KEY, log=workdir / f"versitygw-{root.name}.log", tls=tls
    )
    endpoint = gateway.start()

    def stop_gateway() -> None:
        gateway.stop()
        shutil.rmtree(root, ignore_errors=True)

    return endpoint, stop_gateway, gateway.pid


def median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256,1024", help="snapshot sizes in MiB, comma separated")
    parser.add_argument("--compression", default="zst", choices=["zst", "gz", "lz4"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", default="versitygw", choices=["versitygw", "moto"])
    parser.add_argument(
        "--server-root",
        default="disk,tmpfs",
        help="versitygw's root directory, comma separated, one server each: disk (the workdir) and/or tmpfs "
        "(/dev/shm), each also as +https (served over TLS); uploads run on every one, restore and the limits on "
        "the first",
    )
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
    roots = ["memory"] if options.server == "moto" else [kind for kind in options.server_root.split(",") if kind]
    if not roots or set(roots) - {*SERVER_ROOTS, "memory"}:
        raise SystemExit(f"--server-root: expected some of {', '.join(SERVER_ROOTS)}, got {options.server_root!r}")

    import boto3

    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION)
    os.environ.update(AWS_EC2_METADATA_DISABLED="true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="snapshot-bench-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    servers: dict[str, tuple[str, Any, int | None]] = {}
    clients: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    try:
        from botocore.config import Config

        for kind in roots:
            tls = server_tls(kind, workdir)
            servers[kind] = start_server(options.server, workdir, server_root(kind, workdir), tls)
            # SigV4 presigned URLs: a real S3 server refuses the legacy V2 form botocore presigns by default.
            client = boto3.client(
                "s3", region_name=REGION, endpoint_url=servers[kind][0], config=Config(signature_version="s3v4")
            )
            for _ in range(100):
                try:
                    client.list_buckets()
                    break
                except Exception:
                    time.sleep(0.1)
            client.create_bucket(Bucket=BUCKET)
            clients[kind] = client
        endpoint, s3 = servers[roots[0]][0], clients[roots[0]]
        pack, unpack = compressor(options.compression)
        key = f"{CHAIN}/state-sync/200.tar.{options.compression}"
        for size_mib in (int(size) for size in options.sizes.split(",")):
            source = workdir / f"source-{size_mib}"
            shutil.rmtree(source, ignore_errors=True)
            data_bytes = generate_home(source, size_mib)
            snapshots = source / "data" / "snapshots"
            row: dict[str, Any] = {"size_mib": size_mib, "load": [], "roots": roots}
            samples: dict[str, list[float]] = {}
            rss: dict[str, list[float]] = {"upload": [], "restore": []}

            def sample(name: str, seconds: float, samples: dict[str, list[float]] = samples) -> None:
                samples.setdefault(name, []).append(seconds)

            for _ in range(options.repeat):
                row["load"].append(round(os.getloadavg()[0], 1))
                for kind in roots:
                    root_endpoint, _, server_pid = servers[kind]
                    (source / ".sei-sidecar-last-upload.json").unlink(missing_ok=True)
                    server_cpu = process_cpu_seconds(server_pid)
                    upload = agent_run("snapshot-upload", source, root_endpoint, options.compression)
                    server_cpu = process_cpu_seconds(server_pid) - server_cpu
                    archive_bytes = upload["result"]["archiveBytes"]
                    row["archive_mib"] = archive_bytes / MiB
                    if "upload" in skip:
                        continue
                    sample(f"{kind}/agent_upload", upload["seconds"])
                    sample(f"{kind}/agent_upload_cpu", upload["cpu_seconds"])
                    sample(f"{kind}/agent_upload_server_cpu", server_cpu)
                    for stage, seconds in upload["timeline"].items():
                        sample(f"{kind}/agent_upload_{stage}", seconds)
                    rss["upload"].append(upload["rss_kib"] / 1024)
                    server_cpu = process_cpu_seconds(server_pid)
                    raw = agent_run("raw-upload", source, root_endpoint, options.compression)
                    sample(f"{kind}/raw_upload_server_cpu", process_cpu_seconds(server_pid) - server_cpu)
                    sample(f"{kind}/raw_upload", raw["seconds"])
                    sample(f"{kind}/raw_upload_cpu", raw["cpu_seconds"])
                    sample(f"{kind}/raw_upload_complete", raw["timeline"]["complete"])
                    server_cpu = process_cpu_seconds(server_pid)
                    raw = agent_run("raw-upload-unsigned", source, root_endpoint, options.compression)
                    sample(f"{kind}/raw_unsigned_server_cpu", process_cpu_seconds(server_pid) - server_cpu)
                    sample(f"{kind}/raw_unsigned", raw["seconds"])
                    sample(f"{kind}/raw_unsigned_cpu", raw["cpu_seconds"])
                    sample(
                        f"{kind}/pipe_upload",
                        shell(
                            f"tar -C {snapshots} -cf - 200 metadata.db | {pack} | "
                            f"rclone {rclone_tls(root_endpoint)}rcat --s3-chunk-size 8M "
                            f"bench:{BUCKET}/baseline/200.tar",
                            env=rclone_environment(root_endpoint),
                        ),
                    )
                if "upload" not in skip:
                    archive = agent_run("archive-only", source, endpoint, options.compression)
                    sample("agent_archive", archive["seconds"])
                    sample("agent_archive_cpu", archive["cpu_seconds"])
                    sample(
                        "pipe_archive",
                        shell(f"tar -C {snapshots} -cf - 200 metadata.db | {pack} | sha256sum >/dev/null"),
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

            summarise(row, samples, rss, data_bytes, archive_bytes)
            rows.append(row)
            print(json.dumps(row), flush=True)
            for client in clients.values():
                for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
                    client.delete_object(Bucket=BUCKET, Key=item["Key"])
            shutil.rmtree(source)
    finally:
        for _, stop_server, _ in servers.values():
            stop_server()
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_tables(rows, options.compression)


def rclone_tls(endpoint: str) -> str:
    """rclone's flag for the bench's CA on an HTTPS endpoint (it ignores `AWS_CA_BUNDLE`, see below)."""
    return f"--ca-cert {os.environ['AWS_CA_BUNDLE']} " if endpoint.startswith("https:") else ""


def rclone_environment(endpoint: str) -> dict[str, str]:
    """rclone's configuration for `bench:` on `endpoint`, in its environment variables."""
    # rclone's S3 SDK cannot combine a custom CA bundle with its HTTP transport; the endpoint is plain HTTP anyway.
    return {
        **{name: value for name, value in os.environ.items() if name != "AWS_CA_BUNDLE"},
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_CONFIG_BENCH_REGION": REGION,
        "RCLONE_CONFIG": "/dev/null",
    }


SECONDS_ONLY = ("_cpu", "_produce", "_blocked", "_drain", "_complete")
"""Samples kept in seconds (CPU seconds and the upload timeline), not turned into throughput."""


def summarise(
    row: dict[str, Any],
    samples: dict[str, list[float]],
    rss: dict[str, list[float]],
    data_bytes: int,
    archive_bytes: int,
) -> None:
    """Medians with spreads of every sample and the same-round ratios, into `row`."""
    for name, values in samples.items():
        row[name + "_seconds"] = median_spread(values)
        if name.endswith(SECONDS_ONLY):
            continue
        per_second = [data_bytes / MiB / seconds for seconds in values]
        if name in ("limit_curl_get", "limit_zstd_d") or (name.startswith("stage_get") and "decompress" not in name):
            per_second = [archive_bytes / MiB / seconds for seconds in values]
        row[name] = median_spread(per_second)
    if "agent_restore" in samples:
        ratios = [p / a for a, p in zip(samples["agent_restore"], samples["pipe_restore"], strict=True)]
        row["restore_ratio"] = median_spread(ratios)
        row["restore_rss_mib"] = max(rss["restore"])
    for kind in row["roots"]:
        agent = samples.get(f"{kind}/agent_upload")
        if not agent:
            continue
        producing, raw = samples["agent_archive"], samples[f"{kind}/raw_upload"]
        row[f"{kind}/upload_ratio"] = median_spread(
            [p / a for a, p in zip(agent, samples[f"{kind}/pipe_upload"], strict=True)]
        )
        # the goal: the upload takes less than 1.3x its producing side alone (same round)
        overheads = [u / p - 1 for u, p in zip(agent, producing, strict=True)]
        row[f"{kind}/upload_network_overhead"] = median_spread(overheads)
        # the physical limit of the same measure: sending the archive with nothing to produce
        row[f"{kind}/raw_network_overhead"] = median_spread([r / p - 1 for r, p in zip(raw, producing, strict=True)])
        # what the agent adds on top of that limit by producing while it sends
        row[f"{kind}/upload_over_raw"] = median_spread([u / r - 1 for u, r in zip(agent, raw, strict=True)])
    if rss["upload"]:
        row["upload_rss_mib"] = max(rss["upload"])


def fmt(value: tuple[float, float, float] | None, unit: str = "") -> str:
    if value is None:
        return "-"
    median, low, high = value
    if unit == "x":
        return f"{median:.2f}x ({low:.2f}-{high:.2f})"
    if unit == "s":
        return f"{median:.2f} ({low:.2f}-{high:.2f})"
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
    for kind in rows[0]["roots"] if rows else []:
        print_upload_tables(rows, kind)


def print_upload_tables(rows: list[dict[str, Any]], kind: str) -> None:
    uploads = [row for row in rows if f"{kind}/agent_upload" in row]
    if not uploads:
        return
    print()
    print(f"Upload, server root on {kind}:")
    print()
    print(
        "| snapshot | load avg | agent | `tar \\| zstd \\| rclone rcat` | ratio | producing side: agent "
        "| `tar \\| zstd \\| sha256sum` | raw upload (no producing) | agent upload on top of producing "
        "| raw upload on top of producing | agent on top of raw | agent peak RSS |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in uploads:
        print(
            f"| {row['size_mib']} MiB | {row['load']} | {fmt(row[f'{kind}/agent_upload'])} "
            f"| {fmt(row[f'{kind}/pipe_upload'])} | {fmt(row[f'{kind}/upload_ratio'], 'x')} "
            f"| {fmt(row['agent_archive'])} | {fmt(row['pipe_archive'])} | {fmt(row[f'{kind}/raw_upload'])} "
            f"| {fmt(row[f'{kind}/upload_network_overhead'], '%')} | {fmt(row[f'{kind}/raw_network_overhead'], '%')} "
            f"| {fmt(row[f'{kind}/upload_over_raw'], '%')} | {row['upload_rss_mib']:.0f} MiB |"
        )
    print()
    print(
        "| snapshot | producing alone (s) | agent upload (s) | of which: producing while sending | producer blocked "
        "| drain (parts in flight) | CompleteMultipartUpload | raw upload (s) | raw: CompleteMultipartUpload "
        "| CPU s: producing alone | CPU s: agent upload, agent / server | CPU s: raw upload, agent / server "
        "| raw upload, unsigned payload (s) | CPU s: raw unsigned, agent / server |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in uploads:

        def sec(name: str, row: dict[str, Any] = row) -> str:
            return fmt(row[name + "_seconds"], "s")

        print(
            f"| {row['size_mib']} MiB | {sec('agent_archive')} | {sec(f'{kind}/agent_upload')} "
            f"| {sec(f'{kind}/agent_upload_produce')} | {sec(f'{kind}/agent_upload_blocked')} "
            f"| {sec(f'{kind}/agent_upload_drain')} | {sec(f'{kind}/agent_upload_complete')} "
            f"| {sec(f'{kind}/raw_upload')} | {sec(f'{kind}/raw_upload_complete')} | {sec('agent_archive_cpu')} "
            f"| {sec(f'{kind}/agent_upload_cpu')} / {sec(f'{kind}/agent_upload_server_cpu')} "
            f"| {sec(f'{kind}/raw_upload_cpu')} / {sec(f'{kind}/raw_upload_server_cpu')} "
            f"| {sec(f'{kind}/raw_unsigned')} "
            f"| {sec(f'{kind}/raw_unsigned_cpu')} / {sec(f'{kind}/raw_unsigned_server_cpu')} |"
        )


if __name__ == "__main__":
    main()

"""Operator benchmarks on a real kube-apiserver + etcd (the test tier's, started here), agents as real processes.

1. Latency, one agent: NodeTask created -> its status shows `Running`, observed through a watch, next to the API
   server's own round trip (create -> the watch delivers the ADDED event). The task is a real `await-condition` on a
   CometBFT fake, with a height the chain never reaches, so it stays Running until the bench deletes it.
2. Throughput: 1000 NodeTasks (`mark-ready`) spread over 50 agents (50 processes, one per pod, 20 tasks each),
   created through the API as fast as 16 concurrent clients manage: wall time from the first create until every
   status says Succeeded, and CPU seconds per agent process for that period. Run with the server-side field selector
   (the default) and with client-side filtering (`NODETASK_SELECTOR=none`), where every agent sees every event.

    .venv/bin/python bench/operator.py [--latency-samples 200] [--agents 50] [--tasks 1000] [--skip-filtered]

Needs the binaries of `scripts/kube-tools.sh`. Prints Markdown tables (the ones in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.operator.kubeapi import Connection, KubeApi, load_connection, nodetasks_path
from tests.fixtures.cometbft import FakeCometBFT
from tests.fixtures.kube import KubeCluster, KubeNamespace, install_crd, require_tools
from tests.operator.agents import AgentFactory, AgentPod, ProcessAgent
from tests.operator.kit import nodetask

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The agents run with the production intervals, not the tests' short ones.
PRODUCTION_INTERVALS = {
    "NODETASK_PROGRESS_SECONDS": "5",
    "NODETASK_HEARTBEAT_SECONDS": "30",
    "NODETASK_RESYNC_SECONDS": "60",
    "NODETASK_HTTP_HOST": "127.0.0.1",
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Watch:
    """Watches the namespace's NodeTasks and calls `on_event(type, object, monotonic time)` for each event.

    Survives a cut stream (an API server under load may end it): it lists again, reports every listed object as
    `LISTED`, and watches on from the list's resource version.
    """

    def __init__(self, connection: Connection, namespace: str, on_event: Callable[[str, dict[str, Any], float], None]):
        self.connection, self.namespace, self.on_event = connection, namespace, on_event
        self.ready = asyncio.Event()
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        headers = {"Authorization": self.connection.authorization() or "", "Accept": "application/json"}
        connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context())
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        url = self.connection.server + nodetasks_path(self.namespace)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while True:
                try:
                    async with session.get(url, headers=headers) as listed:
                        listed.raise_for_status()
                        snapshot = await listed.json()
                    now = time.monotonic()
                    for item in snapshot.get("items", []):
                        self.on_event("LISTED", item, now)
                    params = {"watch": "true", "resourceVersion": snapshot["metadata"]["resourceVersion"]}
                    async with session.get(url, params=params, headers=headers) as response:
                        response.raise_for_status()
                        self.ready.set()
                        async for line in response.content:
                            event = json.loads(line) if line.strip() else None
                            if event is None:
                                continue
                            if event["type"] == "ERROR":
                                raise RuntimeError(f"watch error: {event['object'].get('message')}")
                            self.on_event(event["type"], event["object"], time.monotonic())
                except (aiohttp.ClientError, RuntimeError, TimeoutError) as error:
                    print(f"watch restarts after: {error!r}", file=sys.stderr)
                self.reconnects += 1
                await asyncio.sleep(0.2)

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 30)
        await asyncio.sleep(0.2)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def create(api: KubeApi, namespace: str, manifest: dict[str, Any]) -> None:
    await api.request("POST", nodetasks_path(namespace), body=manifest)


async def delete(api: KubeApi, namespace: str, name: str) -> None:
    await api.request("DELETE", nodetasks_path(namespace, name))


# -------------------------------------------------------------------------------------------------- latency


async def latency(cluster: KubeCluster, ns: KubeNamespace, pod: AgentPod, samples: int) -> dict[str, list[float]]:
    connection = load_connection(str(cluster.kubeconfig))
    seen: dict[tuple[str, str], float] = {}

    def record(kind: str, obj: dict[str, Any], at: float) -> None:
        name = obj["metadata"]["name"]
        if kind == "ADDED":
            seen.setdefault((name, "added"), at)
        if (obj.get("status") or {}).get("phase") == "Running":
            seen.setdefault((name, "running"), at)

    results: dict[str, list[float]] = {
        "watch round trip (create -> ADDED)": [],
        "agent (create -> status Running)": [],
        "floor: bare client watches and patches Running (create -> status Running)": [],
    }
    bare = subprocess.Popen(
        [sys.executable, __file__, "--bare-agent", str(cluster.kubeconfig), ns.name, BARE_POD],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    try:
        async with KubeApi(connection) as api, Watch(connection, ns.name, record):
            await _measure_latency(api, ns, pod, samples, seen, results)
    finally:
        bare.terminate()
        bare.wait(10)
    return results


BARE_POD = "bare-0"


async def _measure_latency(
    api: KubeApi,
    ns: KubeNamespace,
    pod: AgentPod,
    samples: int,
    seen: dict[tuple[str, str], float],
    results: dict[str, list[float]],
) -> None:
    async def running_after(name: str, manifest: dict[str, Any]) -> float:
        started = time.monotonic()
        await create(api, ns.name, manifest)
        deadline = started + 30
        while (name, "running") not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.0005)
        if (name, "running") not in seen:
            raise RuntimeError(f"{name} never reported Running")
        return seen[(name, "running")] - started

    # The bare client is ready once it answers a first object (not measured).
    await running_after("bare-warm-up", nodetask("bare-warm-up", BARE_POD, "mark-ready"))
    for index in range(samples):
        # baseline: an object no agent serves
        name = f"probe-{index}"
        started = time.monotonic()
        await create(api, ns.name, nodetask(name, "no-such-pod", "mark-ready"))
        while (name, "added") not in seen:
            await asyncio.sleep(0.0005)
        results["watch round trip (create -> ADDED)"].append(seen[(name, "added")] - started)

        name = f"task-{index}"
        params = {"condition": "height", "targetHeight": 10**9, "pollIntervalSeconds": 5}
        manifest = nodetask(name, pod.name, "await-condition", params)
        results["agent (create -> status Running)"].append(await running_after(name, manifest))
        await delete(api, ns.name, name)

        name = f"bare-{index}"
        manifest = nodetask(name, BARE_POD, "await-condition", params)
        results["floor: bare client watches and patches Running (create -> status Running)"].append(
            await running_after(name, manifest)
        )


async def bare_agent(kubeconfig: str, namespace: str, pod: str) -> None:
    """The floor of Create -> Running for any agent, run as its own process: watch the namespace's NodeTasks and, when
    one addressed to `pod` is ADDED, merge-patch `status.phase: Running` at once (with the resourceVersion precondition
    the agent uses). No store, no engine, no kopf: two API round trips and nothing else."""
    connection = load_connection(kubeconfig)
    async with KubeApi(connection) as api:
        patches: set[asyncio.Task[Any]] = set()

        def on_event(kind: str, obj: dict[str, Any], at: float) -> None:
            meta = obj["metadata"]
            new = kind == "ADDED" or (kind == "LISTED" and not obj.get("status"))  # LISTED: created before it watched
            if new and (obj.get("spec") or {}).get("targetPod") == pod:
                status = {"phase": "Running", "run": 1}
                patch = api.patch_status(namespace, meta["name"], status, resource_version=meta["resourceVersion"])
                task = asyncio.create_task(patch)
                patches.add(task)
                task.add_done_callback(done)

        def done(task: asyncio.Task[Any]) -> None:
            patches.discard(task)
            if not task.cancelled() and task.exception() is not None:
                print(f"bare agent: status patch failed: {task.exception()!r}", file=sys.stderr)

        async with Watch(connection, namespace, on_event):
            await asyncio.Event().wait()  # until terminated


# ----------------------------------------------------------------------------------------------- throughput


async def throughput(
    cluster: KubeCluster, ns: KubeNamespace, agents: list[ProcessAgent], tasks: int
) -> dict[str, float]:
    connection = load_connection(str(cluster.kubeconfig))
    succeeded: dict[str, float] = {}
    done = asyncio.Event()

    def record(kind: str, obj: dict[str, Any], at: float) -> None:
        if kind != "DELETED" and (obj.get("status") or {}).get("phase") == "Succeeded":
            succeeded.setdefault(obj["metadata"]["name"], at)
            if len(succeeded) == tasks:
                done.set()

    pids = [agent.process.pid for agent in agents if agent.process is not None]
    manifests = [nodetask(f"t-{n:04d}", agents[n % len(agents)].pod.name, "mark-ready") for n in range(tasks)]
    async with KubeApi(connection) as api, Watch(connection, ns.name, record):
        cpu_before = {pid: cpu_seconds(pid) for pid in pids}
        started = time.monotonic()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for manifest in manifests:
            queue.put_nowait(manifest)

        async def creator() -> None:
            while not queue.empty():
                await create(api, ns.name, queue.get_nowait())

        await asyncio.gather(*(creator() for _ in range(16)))
        created = time.monotonic() - started
        await asyncio.wait_for(done.wait(), 900)
        wall = max(succeeded.values()) - started
        cpu = [cpu_seconds(pid) - cpu_before[pid] for pid in pids]
    throttled = sum(patch_errors(agent, "429") for agent in agents)
    writes = sum(agent_metric(agent, "nodetask_status_patches_total") for agent in agents)
    return {
        "status writes per task (mean)": writes / tasks,
        "create all (s)": created,
        "wall to all Succeeded (s)": wall,
        "CPU per agent mean (s)": statistics.mean(cpu),
        "CPU per agent max (s)": max(cpu),
        "CPU all agents (s)": sum(cpu),
        "status patches refused 429, retried": throttled,
    }


def agent_metric(agent: ProcessAgent, name: str) -> float:
    """An unlabelled counter or gauge from the agent's /metrics."""
    _, text = agent.pod.http("/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return 0.0


def patch_errors(agent: ProcessAgent, cause: str) -> float:
    """The agent's `nodetask_status_patch_errors_total{cause=...}` from its /metrics."""
    _, text = agent.pod.http("/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nodetask_status_patch_errors_total" and sample.labels.get("cause") == cause:
                return float(sample.value)
    return 0.0


# ------------------------------------------------------------------------------------------- memory, restart


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, MiB (VmRSS, VmHWM)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, amount, _ = line.split()
            values[key] = int(amount) / 1024
    return values["VmRSS:"], values["VmHWM:"]


class InClusterAgent(ProcessAgent):
    """`nodetask-agent run` as in a pod: no kubeconfig, credentials from a ServiceAccount directory (the
    bound token of the pod's kubeconfig, the cluster CA) and KUBERNETES_SERVICE_HOST/PORT, like a kubelet gives."""

    def start(self, *, wait: bool = True) -> ProcessAgent:
        document = yaml.safe_load(self.pod.kubeconfig.read_text())
        directory = self.pod.home.parent / "serviceaccount"
        directory.mkdir(exist_ok=True)
        (directory / "token").write_text(document["users"][0]["user"]["token"])
        shutil.copy(self.pod.ns.cluster.pki.ca_cert, directory / "ca.crt")
        launcher = (
            "import sys, agent.operator.kubeapi as kubeapi\n"
            f"kubeapi.SERVICE_ACCOUNT_DIR = {str(directory)!r}\n"
            "from agent.cli.main import main\n"
            "sys.exit(main(['run']))\n"
        )
        env = {
            **os.environ,
            **self.pod.env(),
            "PYTHONUNBUFFERED": "1",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.pod.ns.cluster.api_port),
        }
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-c", launcher],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            deadline = time.monotonic() + 120
            while not self.pod.serving():
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"agent {self.pod.name} did not start:\n{self.tail()}")
                time.sleep(0.1)
        return self


async def wait_phases(cluster: KubeCluster, ns: KubeNamespace, names: set[str], phase: str, timeout: float) -> float:
    """Seconds until every object in `names` has `phase` (observed through a watch)."""
    connection = load_connection(str(cluster.kubeconfig))
    seen: set[str] = set()
    done = asyncio.Event()

    def record(kind: str, obj: dict[str, Any], at: float) -> None:
        if (obj.get("status") or {}).get("phase") == phase and obj["metadata"]["name"] in names:
            seen.add(obj["metadata"]["name"])
            if seen >= names:
                done.set()

    started = time.monotonic()
    async with Watch(connection, ns.name, record):
        await asyncio.wait_for(done.wait(), timeout)
    return time.monotonic() - started


async def create_all(cluster: KubeCluster, ns: KubeNamespace, manifests: list[dict[str, Any]]) -> None:
    connection = load_connection(str(cluster.kubeconfig))
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for manifest in manifests:
        queue.put_nowait(manifest)
    async with KubeApi(connection) as api:

        async def creator() -> None:
            while not queue.empty():
                await create(api, ns.name, queue.get_nowait())

        await asyncio.gather(*(creator() for _ in range(16)))


def idle_memory(cluster: KubeCluster, ns: KubeNamespace, factory: AgentFactory, idle: float, tasks: int) -> list[Any]:
    """RSS of one agent process: in-cluster credentials (as in a pod) and, for comparison, a kubeconfig (which loads
    the kubernetes library to read it). Sampled when serving, after `idle` seconds, and after `tasks` tasks."""
    rows = []
    for label, kind in (("in-cluster ServiceAccount (as in a pod)", InClusterAgent), ("kubeconfig", ProcessAgent)):
        pod = factory.pod(f"idle-{len(rows)}")
        pod.extra_env.update(PRODUCTION_INTERVALS)
        agent = kind(pod, shipped=True)
        factory.started.append(agent)
        agent.start()
        assert agent.process is not None
        pid = agent.process.pid
        serving = rss_mib(pid)
        time.sleep(idle)
        idle_rss = rss_mib(pid)
        names = {f"{pod.name}-t-{n:04d}" for n in range(tasks)}
        asyncio.run(create_all(cluster, ns, [nodetask(name, pod.name, "mark-ready") for name in sorted(names)]))
        asyncio.run(wait_phases(cluster, ns, names, "Succeeded", 600))
        time.sleep(5)
        after = rss_mib(pid)
        writes = agent_metric(agent, "nodetask_status_patches_total")
        rows.append((label, serving, idle_rss, after, writes / tasks))
        agent.stop()
    return rows


def restart(
    cluster: KubeCluster, ns: KubeNamespace, factory: AgentFactory, chain_url: str, tasks: int, concurrency: int
) -> list[Any]:
    """`tasks` unfinished tasks (await-condition on a height the chain never reaches) in one agent's store; the
    agent is killed (SIGKILL) and started again. Measures, from the new process's start, when it serves and when
    every status says it resumed the task (`status.resumes` 1)."""
    pod = factory.pod("restart-0")
    pod.extra_env.update({**PRODUCTION_INTERVALS, "SEI_RPC_ENDPOINT": chain_url})
    if concurrency:
        pod.extra_env["NODETASK_STATUS_CONCURRENCY"] = str(concurrency)
    agent = InClusterAgent(pod, shipped=True)
    factory.started.append(agent)
    agent.start()
    names = {f"r-{n:04d}" for n in range(tasks)}
    params = {"condition": "height", "targetHeight": 10**9, "pollIntervalSeconds": 60}
    asyncio.run(
        create_all(cluster, ns, [nodetask(name, pod.name, "await-condition", params) for name in sorted(names)])
    )
    asyncio.run(wait_phases(cluster, ns, names, "Running", 600))
    time.sleep(6)  # let the store settle (progress interval)
    agent.kill()
    connection = load_connection(str(cluster.kubeconfig))
    resumed: dict[str, float] = {}
    done = asyncio.Event()

    def record(kind: str, obj: dict[str, Any], at: float) -> None:
        status = obj.get("status") or {}
        if obj["metadata"]["name"] in names and int(status.get("resumes") or 0) >= 1:
            resumed.setdefault(obj["metadata"]["name"], at)
            if len(resumed) == len(names):
                done.set()

    async def measure() -> tuple[float, float]:
        async with Watch(connection, ns.name, record):
            started = time.monotonic()
            agent.start(wait=False)
            while not pod.serving():
                await asyncio.sleep(0.02)
            serving = time.monotonic() - started
            await asyncio.wait_for(done.wait(), 600)
            return serving, max(resumed.values()) - started

    serving, all_resumed = asyncio.run(measure())
    # Read at once: 5 s after its resumed status, each task's first progress report (height seen) is written too.
    writes = agent_metric(agent, "nodetask_status_patches_total") / tasks
    skipped = agent_metric(agent, "nodetask_watch_events_skipped_total") / tasks
    agent.stop()
    floor = asyncio.run(bare_status_round(cluster, ns, names, concurrency or 8))
    return [(tasks, serving, all_resumed, floor, writes, skipped)]


async def bare_status_round(cluster: KubeCluster, ns: KubeNamespace, names: set[str], concurrency: int) -> float:
    """The floor for reporting a restart, measured in the same run: a bare client that lists the NodeTasks and
    merge-patches each one's status (its current status with `resumes` + 1, so the same size as the agent's, with the
    same resourceVersion precondition), `concurrency` patches in flight, until the bench's watch has seen them all.
    No store, no handlers, no kopf: what the API server on this machine needs for the statuses alone."""
    connection = load_connection(str(cluster.kubeconfig))
    target: dict[str, int] = {}
    seen: dict[str, float] = {}
    done = asyncio.Event()

    def record(kind: str, obj: dict[str, Any], at: float) -> None:
        name = obj["metadata"]["name"]
        if name in target and int((obj.get("status") or {}).get("resumes") or 0) >= target[name]:
            seen.setdefault(name, at)
            if len(seen) == len(target):
                done.set()

    async with KubeApi(connection) as api, Watch(connection, ns.name, record):
        started = time.monotonic()
        items = [item for item in await api.list_nodetasks(ns.name) if item["metadata"]["name"] in names]
        for item in items:
            target[item["metadata"]["name"]] = int((item.get("status") or {}).get("resumes") or 0) + 1
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)

        async def patcher() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                meta = item["metadata"]
                status = {**(item.get("status") or {}), "resumes": target[meta["name"]]}
                await api.patch_status(ns.name, meta["name"], status, resource_version=meta["resourceVersion"])

        await asyncio.gather(*(patcher() for _ in range(concurrency)))
        await asyncio.wait_for(done.wait(), 600)
        return max(seen.values()) - started


def start_agents(factory: AgentFactory, count: int, extra_env: dict[str, str]) -> list[ProcessAgent]:
    agents = []
    for index in range(count):
        pod = factory.pod(f"node-{index}")
        pod.extra_env.update(extra_env)
        agents.append(ProcessAgent(pod, shipped=True).start(wait=False))
        factory.started.append(agents[-1])
    for agent in agents:
        deadline = time.monotonic() + 180
        while not agent.pod.serving():
            if time.monotonic() > deadline or (agent.process and agent.process.poll() is not None):
                raise RuntimeError(f"agent {agent.pod.name} did not start:\n{agent.tail()}")
            time.sleep(0.2)
    return agents


def namespace_for(cluster: KubeCluster, workdir: Path, name: str) -> KubeNamespace:
    cluster.kubectl("create", "namespace", name)
    ns = KubeNamespace(cluster, name, workdir / name)
    ns.tmp.mkdir(parents=True)
    return ns


class ChainProcess:
    """The CometBFT fake in a process of its own (`--fake-chain`): serving the agents' RPC polls from a thread of the
    bench's process would take the GIL from the bench's watch, which times everything."""

    def __enter__(self) -> ChainProcess:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--fake-chain"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # the fake logs every client that hangs up
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()
        if not self.url:
            raise RuntimeError("the fake chain did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def serve_fake_chain() -> None:
    with FakeCometBFT() as chain:
        print(chain.url, flush=True)
        sys.stdin.read()  # until the bench closes it or terminates this process


def main() -> None:
    if sys.argv[1:2] == ["--bare-agent"]:
        asyncio.run(bare_agent(*sys.argv[2:5]))
        return
    if sys.argv[1:2] == ["--fake-chain"]:
        serve_fake_chain()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--skip-filtered", action="store_true", help="skip the client-side filtering run")
    parser.add_argument("--only", default="", help="comma separated: latency, throughput, memory, restart")
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--memory-tasks", type=int, default=500)
    parser.add_argument("--restart-tasks", type=int, default=1000)
    parser.add_argument("--restart-status-concurrency", type=int, default=0, help="NODETASK_STATUS_CONCURRENCY")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(","))) or {"latency", "throughput", "memory", "restart"}

    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    cluster = KubeCluster(require_tools(), workdir / "kube")
    cluster.start()
    try:
        install_crd(cluster)
        print(f"control plane ready in {cluster.startup_seconds:.1f}s", file=sys.stderr)

        print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
        if "memory" in only:
            ns = namespace_for(cluster, workdir, "bench-memory")
            factory = AgentFactory(ns, ns.tmp)
            try:
                memory = idle_memory(cluster, ns, factory, args.idle_seconds, args.memory_tasks)
            finally:
                factory.stop_all()
            print(f"\n#### Agent memory (RSS), idle {args.idle_seconds:.0f} s then {args.memory_tasks} tasks\n")
            print(
                "| credentials | serving (MiB) | idle (MiB) | after tasks (MiB) | peak (MiB) | status writes per task |"
            )
            print("|---|---:|---:|---:|---:|---:|")
            for label, serving, idle_rss, after, writes in memory:
                print(
                    f"| {label} | {serving[0]:.1f} | {idle_rss[0]:.1f} | {after[0]:.1f} | {after[1]:.1f} "
                    f"| {writes:.2f} |"
                )
        if "restart" in only:
            ns = namespace_for(cluster, workdir, "bench-restart")
            factory = AgentFactory(ns, ns.tmp)
            try:
                with ChainProcess() as chain:
                    restarted = restart(
                        cluster, ns, factory, chain.url, args.restart_tasks, args.restart_status_concurrency
                    )
            finally:
                factory.stop_all()
            print("\n#### Restart with unfinished tasks (SIGKILL, start again)\n")
            print(
                "| unfinished tasks | start -> serving (s) | start -> every status resumed (s) "
                "| floor: bare client lists and patches every status (s) | status writes per task "
                "| watch events skipped per task |"
            )
            print("|---:|---:|---:|---:|---:|---:|")
            for count, serving, all_resumed, floor, writes, skipped in restarted:
                print(f"| {count} | {serving:.2f} | {all_resumed:.2f} | {floor:.2f} | {writes:.2f} | {skipped:.2f} |")
        if not only & {"latency", "throughput"}:
            return

        namespace = "bench-latency"
        cluster.kubectl("create", "namespace", namespace)
        ns = KubeNamespace(cluster, namespace, workdir / namespace)
        ns.tmp.mkdir(parents=True)
        factory = AgentFactory(ns, ns.tmp)
        try:
            with ChainProcess() as chain:
                pod = factory.pod("node-0")
                pod.extra_env.update({**PRODUCTION_INTERVALS, "SEI_RPC_ENDPOINT": chain.url})
                factory.started.append(ProcessAgent(pod, shipped=True).start())
                lat = asyncio.run(latency(cluster, ns, pod, args.latency_samples))
        finally:
            factory.stop_all()

        print(f"\n#### Create -> Running ({args.latency_samples} samples, one agent)\n")
        print("| measurement | p50 (ms) | p99 (ms) | max (ms) |")
        print("|---|---:|---:|---:|")
        for label, values in lat.items():
            p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
            print(f"| {label} | {p50:.1f} | {p99:.1f} | {max(values) * 1000:.1f} |")
        if "throughput" not in only:
            return

        runs = [("server-side field selector", {})]
        if not args.skip_filtered:
            runs.append(("client-side filter (NODETASK_SELECTOR=none)", {"NODETASK_SELECTOR": "none"}))
        rows = []
        for label, env in runs:
            namespace = "bench-" + ("filtered" if env else "selected")
            cluster.kubectl("create", "namespace", namespace)
            ns = KubeNamespace(cluster, namespace, workdir / namespace)
            ns.tmp.mkdir(parents=True)
            factory = AgentFactory(ns, ns.tmp)
            try:
                agents = start_agents(factory, args.agents, {**PRODUCTION_INTERVALS, **env})
                rows.append((label, asyncio.run(throughput(cluster, ns, agents, args.tasks))))
            finally:
                factory.stop_all()

        print(f"\n#### {args.tasks} NodeTasks over {args.agents} agents to Succeeded\n")
        keys = list(rows[0][1])
        print("| watch | " + " | ".join(keys) + " |")
        print("|---|" + "---:|" * len(keys))
        for label, values in rows:
            print(
                f"| {label} | "
                + " | ".join(f"{values[key]:.1f}" if key.endswith(")") else f"{values[key]:.0f}" for key in keys)
                + " |"
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()

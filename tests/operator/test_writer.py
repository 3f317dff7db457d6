"""The status writer and the Event recorder against the real API server (and a fault proxy in front of it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.models import ResourceRef
from agent.operator.kubeapi import ApiError, KubeApi, load_connection
from agent.operator.writer import EventRecorder, StatusWriter
from agent.runtime.metrics import AgentMetrics
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.kube import KubeCluster, KubeNamespace, redirect_kubeconfig
from tests.fixtures.waiting import wait_until
from tests.operator.kit import nodetask, status_of

pytestmark = pytest.mark.kube


class Writing:
    def __init__(self, ns: KubeNamespace, api: KubeApi, writer: StatusWriter, metrics: AgentMetrics) -> None:
        self.ns, self.api, self.writer, self.metrics = ns, api, writer, metrics

    def ref(self, name: str) -> ResourceRef:
        meta = self.ns.get("nodetask", name)["metadata"]
        return ResourceRef(namespace=self.ns.name, name=name, uid=meta["uid"], generation=meta["generation"])

    def counter(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels or None) or 0.0


async def start_writer(ns: KubeNamespace, kubeconfig: Path, **options: Any) -> AsyncIterator[Writing]:
    metrics = AgentMetrics()
    api = await KubeApi(load_connection(str(kubeconfig))).open()
    writer = StatusWriter(api, metrics, **options)
    worker = asyncio.create_task(writer.run())
    try:
        yield Writing(ns, api, writer, metrics)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await api.close()


@pytest.fixture
async def writing(nodetask_crd: KubeCluster, kube_namespace: KubeNamespace) -> AsyncIterator[Writing]:
    async for writing in start_writer(kube_namespace, nodetask_crd.kubeconfig, progress_interval=60.0):
        yield writing


def running(run: int = 1, **extra: Any) -> dict[str, Any]:
    return {"phase": "Running", "run": run, **extra}


async def test_a_burst_of_progress_becomes_one_patch_with_the_newest_values(writing: Writing) -> None:
    writing.ns.apply(nodetask("busy", "node-0", "mark-ready"))
    ref = writing.ref("busy")

    writing.writer.update(ref, running(), urgent=True)
    for step in range(50):
        writing.writer.update(ref, {"progress": {"current": step}}, urgent=False)
    assert await writing.writer.flush(within=10)

    assert writing.counter("nodetask_status_patches_total") == 1
    assert status_of(writing.ns, "busy") == {"phase": "Running", "run": 1, "progress": {"current": 49}}


async def test_a_task_that_finishes_at_once_costs_one_patch_not_one_per_phase(writing: Writing) -> None:
    writing.ns.apply(nodetask("quick", "node-0", "mark-ready"))
    ref = writing.ref("quick")

    # the engine's order for a task that finishes at once, a loop turn apart (its listener runs between steps)
    for status in ({"phase": "Pending", "run": 1}, running(), {"phase": "Succeeded", "run": 1}):
        writing.writer.update(ref, status, urgent=True)
        await asyncio.sleep(0)
    assert await writing.writer.flush(within=10)

    assert writing.counter("nodetask_status_patches_total") == 1
    assert status_of(writing.ns, "quick") == {"phase": "Succeeded", "run": 1}


async def test_progress_is_throttled_but_a_transition_goes_out_at_once(writing: Writing) -> None:
    writing.ns.apply(nodetask("throttled", "node-0", "mark-ready"))
    ref = writing.ref("throttled")
    writing.writer.update(ref, running(), urgent=True)
    assert await writing.writer.flush(within=10)

    writing.writer.update(ref, {"progress": {"current": 1}}, urgent=False)
    assert not await writing.writer.flush(within=1)  # held back: the interval (60 s) has not passed
    writing.writer.update(ref, {"phase": "Succeeded", "run": 1}, urgent=True)
    assert await writing.writer.flush(within=10)

    assert status_of(writing.ns, "throttled") == {"phase": "Succeeded", "run": 1, "progress": {"current": 1}}
    assert writing.counter("nodetask_status_patches_total") == 2


async def test_a_late_non_terminal_status_never_reopens_a_finished_run(writing: Writing) -> None:
    writing.ns.apply(nodetask("finished", "node-0", "mark-ready"))
    ref = writing.ref("finished")
    writing.writer.update(ref, {"phase": "Succeeded", "run": 1}, urgent=True)
    assert await writing.writer.flush(within=10)

    writing.writer.update(ref, running(1, heartbeatAt="2026-01-01T00:00:00Z"), urgent=True)  # stale heartbeat
    writing.writer.update(ref, running(2), urgent=True)  # a new run is not stale
    assert await writing.writer.flush(within=10)

    assert status_of(writing.ns, "finished") == {"phase": "Running", "run": 2}


@pytest.mark.parametrize(
    ("exists", "status", "cause"),
    [(False, running(), "404"), (True, {"phase": "Exploded"}, "422")],
    ids=["object-gone", "schema-refuses"],
)
async def test_unrecoverable_patches_are_dropped_not_retried(
    writing: Writing, exists: bool, status: dict[str, Any], cause: str
) -> None:
    if exists:
        writing.ns.apply(nodetask("target", "node-0", "mark-ready"))
    ref = writing.ref("target") if exists else ResourceRef(namespace=writing.ns.name, name="target", uid="u")

    writing.writer.update(ref, status, urgent=True)

    assert await writing.writer.flush(within=10)
    await asyncio.sleep(1)
    assert writing.counter("nodetask_status_patch_errors_total", cause=cause) == 1
    assert writing.writer.backlog == 0


async def test_patches_are_retried_until_the_api_answers_again(
    nodetask_crd: KubeCluster, kube_namespace: KubeNamespace, fault_proxy_factory: type[FaultProxy], tmp_path: Path
) -> None:
    proxy = fault_proxy_factory("127.0.0.1", nodetask_crd.api_port).start()
    kubeconfig = redirect_kubeconfig(nodetask_crd.kubeconfig, tmp_path / "proxied", f"https://{proxy.address}")
    kube_namespace.apply(nodetask("patient", "node-0", "mark-ready"))
    async for writing in start_writer(kube_namespace, kubeconfig):
        ref = writing.ref("patient")
        proxy.refuse = True
        writing.writer.update(ref, running(), urgent=True)
        assert not await writing.writer.flush(within=2)
        assert writing.counter("nodetask_status_patch_errors_total", cause="connection") >= 1
        writing.writer.update(ref, {"phase": "Succeeded", "run": 1}, urgent=True)  # coalesced with the pending one

        proxy.refuse = False
        assert await writing.writer.flush(within=30)

        assert status_of(kube_namespace, "patient") == {"phase": "Succeeded", "run": 1}
        assert writing.counter("nodetask_status_patches_total") == 1


async def test_event_recorder_posts_events_about_the_nodetask(writing: Writing) -> None:
    writing.ns.apply(nodetask("noted", "node-0", "mark-ready"))
    ref = writing.ref("noted")
    recorder = EventRecorder(writing.api, writing.metrics, pod="node-0")
    worker = asyncio.create_task(recorder.run())
    try:
        recorder.record(ref, "Started", "run 1 started")
        recorder.record(ref, "Failed", "TaskFailed: boom", warning=True)
        assert await recorder.flush(within=10)
    finally:
        worker.cancel()

    events = writing.ns.cluster.get_json("events", namespace=writing.ns.name)["items"]
    seen = {
        (e["reason"], e["type"], e["message"], e["involvedObject"]["uid"], e["source"]["component"]) for e in events
    }
    assert seen == {
        ("Started", "Normal", "run 1 started", ref.uid, "nodetask-agent"),
        ("Failed", "Warning", "TaskFailed: boom", ref.uid, "nodetask-agent"),
    }


async def test_list_with_the_field_selector_returns_only_the_pods_tasks(writing: Writing) -> None:
    writing.ns.apply(nodetask("mine", "node-0", "mark-ready"), nodetask("theirs", "node-1", "mark-ready"))
    items = await writing.api.list_nodetasks(writing.ns.name, field_selector="spec.targetPod=node-0")
    assert [item["metadata"]["name"] for item in items] == ["mine"]
    with pytest.raises(ApiError) as refused:
        await writing.api.list_nodetasks(writing.ns.name, field_selector="spec.type=mark-ready")
    assert refused.value.status == 400 and not refused.value.retryable


# ------------------------------------------------------------------- observed resourceVersions (no GET before a patch)


class RecordingApi(KubeApi):
    """The real client, recording each call's method and the last part of its path (`status` for a patch)."""

    calls: list[tuple[str, str]]

    async def request(self, method: str, path: str, **options: Any) -> Any:
        self.calls.append((method, path.rsplit("/", 1)[-1]))
        return await super().request(method, path, **options)


@pytest.fixture
async def recording(nodetask_crd: KubeCluster, kube_namespace: KubeNamespace) -> AsyncIterator[Writing]:
    metrics = AgentMetrics()
    api = RecordingApi(load_connection(str(nodetask_crd.kubeconfig)))
    api.calls = []
    await api.open()
    writer = StatusWriter(api, metrics, progress_interval=60.0)
    worker = asyncio.create_task(writer.run())
    try:
        yield Writing(kube_namespace, api, writer, metrics)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await api.close()


def calls(writing: Writing) -> list[tuple[str, str]]:
    assert isinstance(writing.api, RecordingApi)
    return writing.api.calls


def observed(writing: Writing, name: str) -> tuple[ResourceRef, str]:
    """The object as the agent's watch would deliver it: its ref and resourceVersion."""
    meta = writing.ns.get("nodetask", name)["metadata"]
    ref = ResourceRef(namespace=writing.ns.name, name=name, uid=meta["uid"], generation=meta["generation"])
    return ref, meta["resourceVersion"]


async def observed_then_running(writing: Writing, name: str) -> tuple[ResourceRef, str, str]:
    """A new NodeTask observed as the watch delivers it, then its status written Running: the ref, the version
    observed and the version the patch was answered with."""
    writing.ns.apply(nodetask(name, "node-0", "mark-ready"))
    ref, created = observed(writing, name)
    writing.writer.observe(ref, created)
    writing.writer.update(ref, running(), urgent=True)
    assert await writing.writer.flush(within=10)
    return ref, created, observed(writing, name)[1]


@pytest.mark.parametrize("seen", [True, False], ids=["observed", "never-observed"])
async def test_an_observed_object_is_patched_without_a_get(recording: Writing, seen: bool) -> None:
    recording.ns.apply(nodetask("seen", "node-0", "mark-ready"))
    ref, version = observed(recording, "seen")
    if seen:
        recording.writer.observe(ref, version)

    recording.writer.update(ref, running(), urgent=True)
    assert await recording.writer.flush(within=10)

    assert status_of(recording.ns, "seen") == running()
    assert calls(recording) == ([] if seen else [("GET", "seen")]) + [("PATCH", "status")]


async def test_an_observed_version_never_replaces_a_newer_one_the_writer_holds(recording: Writing) -> None:
    ref, version, _ = await observed_then_running(recording, "echo")

    recording.writer.observe(ref, version)  # the watch delivers the body from before the writer's own patch, late
    recording.writer.update(ref, {"phase": "Succeeded", "run": 1}, urgent=True)
    assert await recording.writer.flush(within=10)

    assert status_of(recording.ns, "echo") == {"phase": "Succeeded", "run": 1}
    assert calls(recording) == [("PATCH", "status"), ("PATCH", "status")]  # no conflict, no GET


async def test_a_stale_observed_version_costs_a_conflict_and_a_read_never_a_lost_status(recording: Writing) -> None:
    recording.ns.apply(nodetask("moved", "node-0", "mark-ready"))
    ref, version = observed(recording, "moved")
    recording.writer.observe(ref, version)
    recording.ns.kubectl("label", "nodetask", "moved", "changed=yes")  # someone changes the object meanwhile

    recording.writer.update(ref, running(), urgent=True)
    assert await recording.writer.flush(within=10)

    assert status_of(recording.ns, "moved") == running()
    assert calls(recording) == [("PATCH", "status"), ("GET", "moved"), ("PATCH", "status")]
    assert recording.counter("nodetask_status_patch_errors_total", cause="409") == 0  # routine, not an error


async def test_a_status_observed_for_a_deleted_object_never_lands_on_its_successor(recording: Writing) -> None:
    ns = recording.ns
    ns.apply(nodetask("reborn", "node-0", "mark-ready"))
    ref, version = observed(recording, "reborn")
    recording.writer.observe(ref, version)
    ns.kubectl("delete", "nodetask", "reborn", "--wait=true")
    ns.apply(nodetask("reborn", "node-0", "mark-ready"))

    recording.writer.update(ref, {"phase": "Succeeded", "run": 1}, urgent=True)
    assert await recording.writer.flush(within=15)

    assert status_of(ns, "reborn") == {}
    assert calls(recording) == [("PATCH", "status"), ("GET", "reborn")]  # 409, then the UID shows another object
    assert recording.counter("nodetask_status_patches_total") == 0


async def test_held_statuses_wait_for_their_object_to_be_observed(recording: Writing) -> None:
    recording.ns.apply(nodetask("held", "node-0", "mark-ready"), nodetask("unlisted", "node-0", "mark-ready"))
    held, version = observed(recording, "held")
    unlisted, _ = observed(recording, "unlisted")
    recording.writer.hold_unobserved()
    recording.writer.update(held, running(), urgent=True)
    recording.writer.update(unlisted, running(), urgent=True)
    assert not await recording.writer.flush(within=0.5)
    assert calls(recording) == []  # nothing is read one by one while the list is coming

    recording.writer.observe(held, version)
    await wait_until(lambda: recording.writer.backlog <= 1, what="the observed status written")
    recording.writer.release_unobserved()  # what the list did not bring is read, then written
    assert await recording.writer.flush(within=10)

    assert status_of(recording.ns, "held") == status_of(recording.ns, "unlisted") == running()
    assert calls(recording) == [("PATCH", "status"), ("GET", "unlisted"), ("PATCH", "status")]


async def test_pending_includes_the_status_in_flight(recording: Writing) -> None:
    recording.ns.apply(nodetask("flying", "node-0", "mark-ready"))
    ref, version = observed(recording, "flying")
    recording.writer.observe(ref, version)
    recording.writer.update(ref, running(), urgent=True)
    await wait_until(
        lambda: recording.writer._entries[(ref.namespace, ref.name, ref.uid)].in_flight,
        what="the patch in flight",
        interval=0,
    )
    assert recording.writer.pending(ref) == running()  # the agent does not queue the same status again
    assert await recording.writer.flush(within=10)
    assert recording.writer.pending(ref) is None


async def test_only_the_version_its_last_patch_was_answered_with_is_its_own_echo(recording: Writing) -> None:
    ref, created, patched = await observed_then_running(recording, "mirror")
    assert patched != created
    assert recording.writer.is_own_echo(ref, patched)
    assert not recording.writer.is_own_echo(ref, created)  # observed, never written: the body from before the patch

    recording.writer.update(ref, {"phase": "Succeeded", "run": 1}, urgent=True)
    assert not recording.writer.is_own_echo(ref, patched)  # a newer status is queued: the echo is out of date
    assert await recording.writer.flush(within=10)
    _, finished = observed(recording, "mirror")
    assert recording.writer.is_own_echo(ref, finished) and not recording.writer.is_own_echo(ref, patched)

    recording.ns.kubectl("label", "nodetask", "mirror", "changed=yes")  # someone else's change: a new version
    _, relabelled = observed(recording, "mirror")
    assert not recording.writer.is_own_echo(ref, relabelled)


@pytest.mark.parametrize("objects", [2, 5])
async def test_statuses_beyond_the_concurrency_limit_are_all_written(
    nodetask_crd: KubeCluster, kube_namespace: KubeNamespace, objects: int
) -> None:
    names = [f"queued-{n}" for n in range(objects)]
    kube_namespace.apply(*(nodetask(name, "node-0", "mark-ready") for name in names))
    async for writing in start_writer(kube_namespace, nodetask_crd.kubeconfig, progress_interval=60.0, concurrency=1):
        for name in names:
            writing.writer.update(writing.ref(name), running(), urgent=True)
        assert await writing.writer.flush(within=20)  # each finished patch frees the one slot for the next
        assert [status_of(kube_namespace, name) for name in names] == [running()] * objects
        assert writing.counter("nodetask_status_patches_total") == objects


async def test_after_a_dropped_status_no_version_counts_as_its_own_echo(recording: Writing) -> None:
    ref, _, patched = await observed_then_running(recording, "dropped")
    assert recording.writer.is_own_echo(ref, patched)

    recording.writer.update(ref, {"phase": "Exploded"}, urgent=True)  # refused by the schema (422): dropped
    assert await recording.writer.flush(within=10)
    assert recording.counter("nodetask_status_patch_errors_total", cause="422") == 1
    # The object is still at the version of the last patch that landed, but it no longer says what the agent
    # wanted: its watch event (a re-list after a cut watch) must be reconciled, which puts the status right.
    assert not recording.writer.is_own_echo(ref, patched)

"""kill -9 of a real agent process (`nodetask-agent local`) at several points of long-running task types, then a
restart: the outcome must be the one an uninterrupted run gives, with nothing half-written or left behind.

S3 goes through `HttpFaultProxy` with a slow body, so a restore or an upload is reliably mid-transfer when killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.io.files import TEMP_SUFFIX
from tests.fixtures.httpfaults import HttpFaultProxy
from tests.fixtures.kube import REPO_ROOT
from tests.fixtures.s3 import REGION, as_extracted, make_snapshots, tree_fingerprint
from tests.fixtures.waiting import poll_until

CHAIN = "test-chain"
ARCHIVE = f"{CHAIN}/state-sync/200.tar.zst"


def manifest(path: Path, name: str, task_type: str, params: dict[str, Any]) -> Path:
    document = {
        "apiVersion": "sei.io/v1alpha1",
        "kind": "NodeTask",
        "metadata": {"name": name},
        "spec": {"targetPod": "sei-node-0", "type": task_type, "params": params},
    }
    path.write_text(json.dumps(document))
    return path


def local(home: Path, task: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", "local", str(task), "--home", str(home)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "SEI_CHAIN_ID": CHAIN, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def kill_when(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    what: str,
    timeout: float = 60,
    allow_exit: bool = False,
) -> None:
    """SIGKILL `process` once `ready()`; it must still be running then, unless `allow_exit` (a clean exit counts)."""
    try:
        poll_until(
            ready,
            what=what,
            timeout=timeout,
            alive=None if allow_exit else lambda: process.poll() is None,
            ended=lambda: process.communicate()[0].decode(),
            interval=0.02,
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)


def finish(process: subprocess.Popen[bytes]) -> str:
    output, _ = process.communicate(timeout=120)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    return text


def leftovers(home: Path) -> list[Path]:
    return [path for path in home.rglob("*") if path.name.endswith(TEMP_SUFFIX) or path.name.endswith(".tmp")]


def s3_env(proxy: HttpFaultProxy, bucket: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL_S3": proxy.url, "SEI_SNAPSHOT_BUCKET": bucket, "SEI_SNAPSHOT_REGION": REGION}


def archive_requested(proxy: HttpFaultProxy) -> bool:
    return any(method == "GET" and path.split("?")[0].endswith(ARCHIVE) for method, path in proxy.requests)


def archive_put(proxy: HttpFaultProxy) -> bool:
    return any(method in ("PUT", "POST") and ".tar.zst" in path for method, path in proxy.requests)


@pytest.fixture
def source_home(tmp_path: Path) -> Path:
    home = tmp_path / "source"
    snapshots = make_snapshots(home, [100, 200, 300])
    (snapshots / "200" / "random.bin").write_bytes(os.urandom(2 << 20))
    return home


def listing_requested(proxy: HttpFaultProxy) -> bool:
    return any("list-type" in path for _, path in proxy.requests)


def late_in_download(proxy: HttpFaultProxy) -> bool:
    if not archive_requested(proxy):
        return False
    time.sleep(1.5)  # of the slowed body's ~2 s
    return True


KILL_POINTS: dict[str, Callable[[HttpFaultProxy], bool]] = {
    "before-the-download": listing_requested,
    "mid-download": archive_requested,
    "late-download": late_in_download,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
@pytest.mark.slow
def test_snapshot_restore_killed_then_restarted_restores_the_same_tree(
    tmp_path: Path,
    source_home: Path,
    s3_endpoint: str,
    s3_bucket: str,
    s3_http_faults: HttpFaultProxy,
    point: str,
) -> None:
    upload = manifest(tmp_path / "upload.json", "upload", "snapshot-upload", {})
    direct = {"AWS_ENDPOINT_URL_S3": s3_endpoint, "SEI_SNAPSHOT_BUCKET": s3_bucket, "SEI_SNAPSHOT_REGION": REGION}
    finish(local(source_home, upload, direct))
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "priv_validator_state.json").write_text('{"height":"7"}')
    restore = manifest(tmp_path / "restore.json", "restore", "snapshot-restore", {})
    s3_http_faults.slow_body(1 << 20, method="GET", path=ARCHIVE + "$", times=1)  # about 2 s for the archive

    kill_when(
        local(home, restore, s3_env(s3_http_faults, s3_bucket)), lambda: KILL_POINTS[point](s3_http_faults), point
    )
    assert not (home / ".sei-sidecar-snapshot-done").exists()
    finish(local(home, restore, s3_env(s3_http_faults, s3_bucket)))

    expected = as_extracted(
        {
            path: value
            for path, value in tree_fingerprint(source_home / "data" / "snapshots").items()
            if path.split("/")[0] in ("200", "metadata.db")
        }
    )
    assert tree_fingerprint(home / "data" / "snapshots") == expected
    assert (home / "data" / "priv_validator_state.json").read_text() == '{"height":"7"}'
    assert (home / ".sei-sidecar-snapshot-done").exists()
    assert leftovers(home) == []


@pytest.mark.slow
def test_snapshot_upload_killed_mid_upload_then_restarted_uploads_a_consistent_archive(
    tmp_path: Path, source_home: Path, s3_bucket: str, s3_admin: Any, s3_http_faults: HttpFaultProxy
) -> None:
    upload = manifest(tmp_path / "upload.json", "upload", "snapshot-upload", {})
    env = s3_env(s3_http_faults, s3_bucket)
    kill_when(local(source_home, upload, env), lambda: archive_put(s3_http_faults), "the archive upload")
    finish(local(source_home, upload, env))

    listed = {item["Key"] for item in s3_admin.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {ARCHIVE, ARCHIVE + ".sha256", f"{CHAIN}/state-sync/latest.txt"} <= listed

    archive = s3_admin.get_object(Bucket=s3_bucket, Key=ARCHIVE)["Body"].read()
    checksum = s3_admin.get_object(Bucket=s3_bucket, Key=ARCHIVE + ".sha256")["Body"].read().decode()
    assert checksum.split()[0] == hashlib.sha256(archive).hexdigest()
    assert leftovers(source_home) == []


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.6, 0.9])
def test_generate_identity_killed_at_any_moment_then_restarted_yields_one_consistent_identity(
    tmp_path: Path, delay: float
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    task = manifest(tmp_path / "identity.json", "identity", "generate-identity", {"chainId": CHAIN, "moniker": "n0"})
    started = time.monotonic()
    first = local(home, task, {})
    # A late kill point may come after the run already finished (key generation takes milliseconds): then the kill
    # finds nothing to kill, and the restart must still report the one identity.
    kill_when(first, lambda: time.monotonic() - started >= delay or first.poll() == 0, f"{delay}s", allow_exit=True)
    output = finish(local(home, task, {}))

    node_key = json.loads((home / "config" / "node_key.json").read_text())
    validator_key = json.loads((home / "config" / "priv_validator_key.json").read_text())
    assert node_key["priv_key"]["type"] == "tendermint/PrivKeyEd25519"
    assert validator_key["address"] and validator_key["pub_key"]["value"]
    assert validator_key["priv_key"]["value"] not in output  # the restart reports, never prints, the key
    assert leftovers(home) == []

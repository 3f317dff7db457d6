"""configure-genesis from moto (through boto3) and from a real HTTPS server on loopback."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.models import ParamsInvalid, TaskError, TaskType
from agent.models.settings import AgentSettings
from tests.fixtures.common import HandlerRunner
from tests.fixtures.kube import Pki
from tests.fixtures.s3 import S3FaultProxy

# The S3 tests run on moto and on versitygw, a real S3 server whose stricter behaviour is what users get.
pytestmark = pytest.mark.s3_backends

GENESIS = json.dumps({"chain_id": "test-chain", "initial_height": "1", "app_state": {"bank": {}}}, indent=2).encode()
DIGEST = hashlib.sha256(GENESIS).hexdigest()
OLD_GENESIS = b'{"chain_id": "old"}'


@pytest.fixture
def old_genesis(home: Path) -> Path:
    path = home / "config" / "genesis.json"
    path.write_bytes(OLD_GENESIS)
    return path


def config_listing(home: Path) -> list[str]:
    return sorted(path.name for path in (home / "config").iterdir())


async def test_genesis_from_s3_is_written_and_marked_done(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, old_genesis: Path
) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="test-chain/genesis.json", Body=GENESIS)

    result = await s3_run_handler(TaskType.CONFIGURE_GENESIS, {})

    assert old_genesis.read_bytes() == GENESIS
    assert result == {
        "source": f"s3://{s3_bucket}/test-chain/genesis.json",
        "sha256": DIGEST,
        "bytes": len(GENESIS),
        "verified": False,
    }
    assert (s3_settings.home / ".sei-sidecar-genesis-done").exists()
    assert config_listing(s3_settings.home) == ["genesis.json"]


@pytest.mark.parametrize("pin_name", ["expectedSha256", "expectedGenesisHash"])
async def test_a_matching_pin_verifies(
    s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, old_genesis: Path, pin_name: str
) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="test-chain/genesis.json", Body=GENESIS)
    result = await s3_run_handler(TaskType.CONFIGURE_GENESIS, {pin_name: DIGEST.upper()})
    assert result is not None and result["verified"] is True
    assert old_genesis.read_bytes() == GENESIS


async def test_a_pin_mismatch_keeps_the_old_genesis_and_names_both_digests(
    s3_run_handler: HandlerRunner, s3_settings: AgentSettings, s3_admin: Any, s3_bucket: str, old_genesis: Path
) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="test-chain/genesis.json", Body=GENESIS)
    pin = "ab" * 32

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.CONFIGURE_GENESIS, {"expectedSha256": pin})

    assert caught.value.reason == "ChecksumMismatch"
    assert pin in caught.value.message and DIGEST in caught.value.message
    assert old_genesis.read_bytes() == OLD_GENESIS
    assert config_listing(s3_settings.home) == ["genesis.json"]  # no temp file left behind
    assert not (s3_settings.home / ".sei-sidecar-genesis-done").exists()


@pytest.mark.slow
async def test_missing_genesis_is_retryable_because_the_ceremony_may_not_have_uploaded_it(
    s3_run_handler: HandlerRunner, s3_bucket: str, old_genesis: Path
) -> None:
    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.CONFIGURE_GENESIS, {})
    assert caught.value.reason == "S3NotFound"
    assert caught.value.retryable
    assert f"s3://{s3_bucket}/test-chain/genesis.json" in caught.value.message
    assert old_genesis.read_bytes() == OLD_GENESIS


@pytest.mark.slow
async def test_a_download_that_keeps_breaking_keeps_the_old_genesis(
    s3_run_handler: HandlerRunner,
    s3_settings: AgentSettings,
    s3_admin: Any,
    s3_bucket: str,
    s3_faults: S3FaultProxy,
    old_genesis: Path,
) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="test-chain/genesis.json", Body=GENESIS * 50)
    s3_faults.truncate("GET", "genesis.json", after=100, times=1000)
    s3_run_handler.settings = s3_settings.model_copy(update={"s3_endpoint_url": s3_faults.url})

    with pytest.raises(TaskError) as caught:
        await s3_run_handler(TaskType.CONFIGURE_GENESIS, {})

    assert caught.value.reason == "S3Unavailable"
    assert old_genesis.read_bytes() == OLD_GENESIS
    assert config_listing(s3_settings.home) == ["genesis.json"]


async def test_rerun_after_success_does_not_download_again(
    s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str, old_genesis: Path
) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="test-chain/genesis.json", Body=GENESIS)
    await s3_run_handler(TaskType.CONFIGURE_GENESIS, {})
    s3_admin.put_object(Bucket=s3_bucket, Key="test-chain/genesis.json", Body=b'{"changed": true}')

    result = await s3_run_handler(TaskType.CONFIGURE_GENESIS, {})

    assert result == {"skipped": True, "reason": "genesis already configured (marker present)"}
    assert old_genesis.read_bytes() == GENESIS


# --------------------------------------------------------------------------------------------------- https source


class GenesisSite:
    """An HTTPS server on 127.0.0.1 with a certificate from a throwaway CA; `routes` maps path -> (status, headers,
    body)."""

    def __init__(self, directory: Path):
        pki = Pki.create(directory)
        cert, key = pki.issue("genesis-site", server=True)
        self.ca = pki.ca_cert
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, headers, body = site.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join()


@pytest.fixture
def genesis_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GenesisSite]:
    site = GenesisSite(tmp_path / "pki")
    monkeypatch.setenv("SSL_CERT_FILE", str(site.ca))  # how an operator trusts a private CA
    yield site
    site.close()


async def test_genesis_from_an_https_url_is_verified_and_written(
    run_handler: HandlerRunner, genesis_site: GenesisSite, old_genesis: Path
) -> None:
    genesis_site.routes["/g.json"] = (200, {}, GENESIS)
    genesis_site.routes["/moved"] = (302, {"Location": f"{genesis_site.url}/g.json"}, b"")

    result = await run_handler(
        TaskType.CONFIGURE_GENESIS, {"url": f"{genesis_site.url}/moved", "expectedSha256": DIGEST}
    )

    assert result == {"source": f"{genesis_site.url}/moved", "sha256": DIGEST, "bytes": len(GENESIS), "verified": True}
    assert old_genesis.read_bytes() == GENESIS


@pytest.mark.parametrize(
    ("route", "reason", "text"),
    [
        ((404, {}, b"nope"), "DownloadFailed", "HTTP 404"),
        ((302, {"Location": "http://127.0.0.1:9/g.json"}, b""), "DownloadFailed", "non-https"),
        ((200, {}, b"<html>maintenance</html>"), "GenesisInvalid", "does not start with a JSON object"),
        ((200, {}, b""), "GenesisInvalid", "is empty"),
    ],
)
async def test_bad_https_answers_fail_and_keep_the_old_genesis(
    run_handler: HandlerRunner,
    genesis_site: GenesisSite,
    old_genesis: Path,
    route: tuple[int, dict[str, str], bytes],
    reason: str,
    text: str,
) -> None:
    genesis_site.routes["/g.json"] = route
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.CONFIGURE_GENESIS, {"url": f"{genesis_site.url}/g.json"})
    assert caught.value.reason == reason
    assert text in caught.value.message
    assert old_genesis.read_bytes() == OLD_GENESIS


async def test_an_untrusted_certificate_is_refused(
    run_handler: HandlerRunner, genesis_site: GenesisSite, monkeypatch: pytest.MonkeyPatch, old_genesis: Path
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    genesis_site.routes["/g.json"] = (200, {}, GENESIS)
    with pytest.raises(TaskError) as caught:
        await run_handler(TaskType.CONFIGURE_GENESIS, {"url": f"{genesis_site.url}/g.json"})
    assert caught.value.reason == "DownloadFailed"
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert old_genesis.read_bytes() == OLD_GENESIS


# ----------------------------------------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"url": "http://example.com/genesis.json"}, "params.url"),
        ({"url": "https://user:secret@example.com/g.json"}, "credentials"),
        ({"url": "https://example.com/g.json", "bucket": "some-bucket"}, "either url or bucket"),
        ({"expectedSha256": "a" * 64, "expectedGenesisHash": "b" * 64}, "differ"),
        ({"expectedSha256": "xyz"}, "params.expectedSha256"),
        ({"chainId": "has space"}, "params.chainId"),
    ],
)
async def test_bad_params_are_refused_naming_the_problem(
    run_handler: HandlerRunner, params: dict[str, Any], text: str
) -> None:
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.CONFIGURE_GENESIS, params)
    assert text in caught.value.message
    assert "secret" not in caught.value.message


async def test_seed_embedded_chains_say_the_genesis_is_not_vendored(run_handler: HandlerRunner) -> None:
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.CONFIGURE_GENESIS, {"chainId": "pacific-1"})
    assert "not vendored" in caught.value.message
    assert "params.url" in caught.value.message


async def test_no_bucket_anywhere_names_the_variable(run_handler: HandlerRunner) -> None:
    with pytest.raises(ParamsInvalid, match="SEI_GENESIS_BUCKET"):
        await run_handler(TaskType.CONFIGURE_GENESIS, {})

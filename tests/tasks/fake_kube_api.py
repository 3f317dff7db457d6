"""A tiny stand-in for the Kubernetes API's pod list, over real HTTPS on loopback, for discover-peers tests.

It serves `GET /api/v1/namespaces/<ns>/pods?labelSelector=...` (equality selectors `k=v,k2=v2`, paginated with
`limit` / `continue`) from the pods a test adds, checks the bearer token, and writes a ServiceAccount directory
(token, ca.crt, namespace) as Kubernetes mounts it. Everything else is 404. The full apiserver tier is elsewhere;
this only has to speak the one request the handler makes.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class FakeKubeApi:
    def __init__(self, directory: Path, *, namespace: str = "sei", token: str = "test-token"):
        directory.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.pods: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.page_size = 500
        self.status_override: int | None = None
        cert_file, key_file = _self_signed(directory)
        self.service_account = directory / "serviceaccount"
        self.service_account.mkdir()
        (self.service_account / "token").write_text(token)
        (self.service_account / "namespace").write_text(namespace)
        (self.service_account / "ca.crt").write_bytes(cert_file.read_bytes())
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = fake._respond(self.path, self.headers.get("Authorization", ""))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def add_pod(self, name: str, ip: str, labels: dict[str, str], *, namespace: str = "sei", phase: str = "Running"):
        self.pods.append(
            {
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "status": {"phase": phase, "podIP": ip if phase == "Running" else ""},
            }
        )

    def _respond(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        self.requests.append(path)
        if authorization != f"Bearer {self.token}":
            return 401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}
        if self.status_override:
            return self.status_override, {"kind": "Status", "reason": "Forbidden", "code": self.status_override}
        parts = urlsplit(path)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 5 or segments[:3] != ["api", "v1", "namespaces"] or segments[4] != "pods":
            return 404, {"kind": "Status", "code": 404}
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        wanted = dict(item.split("=", 1) for item in query.get("labelSelector", "").split(",") if item)
        matching = [
            pod
            for pod in self.pods
            if pod["metadata"]["namespace"] == segments[3]
            and all(pod["metadata"]["labels"].get(key) == value for key, value in wanted.items())
        ]
        start = int(query.get("continue", "0"))
        page = matching[start : start + self.page_size]
        more = start + self.page_size < len(matching)
        metadata = {"continue": str(start + self.page_size)} if more else {}
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

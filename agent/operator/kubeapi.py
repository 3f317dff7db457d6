"""Credentials and a small asyncio client for the few Kubernetes calls the agent makes itself.

kopf watches NodeTasks; everything the agent *writes* (status patches, Events) and its start-up list go through
`KubeApi`, an aiohttp client with short per-request timeouts whose errors are classified for the retry logic
(`ApiError.retryable`). Both use one set of credentials (`load_connection`): a kubeconfig when one is given, the
pod's ServiceAccount when running in a cluster, else the default kubeconfig. The bearer token is re-read at least every
minute (`InClusterConfiguration`, or the kubernetes library's refresh hook for a kubeconfig), so a projected, rotating
ServiceAccount token keeps working. The kubernetes package reads a kubeconfig and nothing else; it is the optional
`kubeconfig` extra (`pip install 'nodetask-agent[kubeconfig]'`), absent from the image, where a pod's credentials are
read directly. Without it kopf takes its "no kubernetes client" branch too (it would import the package only to
recognise its model objects in helpers the agent never calls).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import kopf

from agent.models import TaskError
from agent.models.resource import API_GROUP, API_VERSION, PLURAL
from agent.models.settings import AgentSettings

if TYPE_CHECKING:
    from kubernetes import client as k8s_client  # type: ignore[import-untyped]

_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

READ_THROTTLE_BUDGET_SECONDS = 10.0
"""How long a read answered 429 is tried again, after the server's Retry-After (capped at 1 s a round), as client-go
does. A busy server's priority-and-fairness limits answer 429, and so does a resource whose watch cache is still
(re)initialising after its CRD changed ("storage is (re)initializing"): both mean "not processed, come back". Writes
are not retried here: their callers (the status writer, the Event recorder) have their own backoff and metrics."""


def _retry_after(header: str | None) -> float:
    """Seconds to wait before asking again: the server's Retry-After (seconds form), between 0.1 and 1 s."""
    try:
        seconds = float(header) if header else 0.5
    except ValueError:
        seconds = 0.5
    return min(1.0, max(0.1, seconds))


class ApiError(Exception):
    """A Kubernetes API call failed. `status` is the HTTP status (0 when no response arrived: connection refused or
    reset, DNS, TLS, timeout); `retryable` says whether the same call may succeed later."""

    def __init__(self, status: int, message: str, *, cause: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.cause = cause or (str(status) if status else "connection")

    @property
    def retryable(self) -> bool:
        # 0: no answer (outage, reset, timeout); 403 too: RBAC being rolled out or a token being rotated.
        return self.status == 0 or self.status == 403 or self.status in _RETRYABLE_STATUS

    @property
    def gone(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: a resourceVersion precondition failed (the object changed, or is another object of the same name)."""
        return self.status == 409


@dataclass
class Connection:
    """Where the API server is and how to authenticate, as loaded by the kubernetes library."""

    configuration: k8s_client.Configuration | InClusterConfiguration
    namespace: str | None = None

    @property
    def server(self) -> str:
        return str(self.configuration.host).rstrip("/")

    def authorization(self) -> str | None:
        # The refresh hook (in-cluster) re-reads the projected token file when it is due.
        value = self.configuration.get_api_key_with_prefix("BearerToken") or self.configuration.get_api_key_with_prefix(
            "authorization"
        )
        return str(value) if value else None

    def ssl_context(self) -> ssl.SSLContext | bool:
        cfg = self.configuration
        if not cfg.verify_ssl:
            return False
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if cfg.cert_file and cfg.key_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        return context

    def kopf_login(self) -> kopf.ConnectionInfo:
        """The same credentials in kopf's terms (for a `@kopf.on.login` handler)."""
        cfg = self.configuration
        header = self.authorization()
        scheme, token = header.split(" ", 1) if header and " " in header else (None, header)
        return kopf.ConnectionInfo(
            server=self.server,
            ca_path=cfg.ssl_ca_cert or None,
            insecure=not cfg.verify_ssl,
            scheme=scheme,
            token=token,
            certificate_path=cfg.cert_file or None,
            private_key_path=cfg.key_file or None,
            default_namespace=self.namespace,
        )


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_REREAD_SECONDS = 60.0


class InClusterConfiguration:
    """The pod's ServiceAccount credentials, read as client-go and the kubernetes library read them, without loading
    that library (its client package costs an idle agent about 55 MiB and 1,300 modules for what are three files and
    two environment variables): the API server from `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT`, its CA
    from `ca.crt`, and the bearer token from the projected `token` file, re-read at least every minute because the
    kubelet rotates it. Offers the attributes of a kubernetes `Configuration` that `Connection` uses."""

    verify_ssl = True
    cert_file: str | None = None
    key_file: str | None = None

    def __init__(self, directory: str = SERVICE_ACCOUNT_DIR, *, host: str, port: int | None):
        if not host or not port:
            raise ValueError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must both be set in a pod")
        self.host = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        self.ssl_ca_cert = str(Path(directory) / "ca.crt")
        if not Path(self.ssl_ca_cert).is_file():
            raise ValueError(f"the ServiceAccount CA {self.ssl_ca_cert} does not exist (is the token volume mounted?)")
        self._token_file = Path(directory) / "token"
        self._token = ""
        self._read_at = 0.0
        self.get_api_key_with_prefix("authorization")  # fail now, at start-up, when the token is unreadable

    def get_api_key_with_prefix(self, identifier: str, alias: str | None = None) -> str | None:
        if identifier != "authorization":
            return None
        now = time.monotonic()
        if not self._token or now - self._read_at >= TOKEN_REREAD_SECONDS:
            try:
                token = self._token_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                if not self._token:
                    raise ValueError(f"cannot read the ServiceAccount token {self._token_file}: {error}") from error
                token = self._token  # keep the last good token through a transient read error
            if not token:
                raise ValueError(f"the ServiceAccount token {self._token_file} is empty")
            self._token, self._read_at = token, now
        return f"Bearer {self._token}"


def load_connection(
    kubeconfig: str | None = None,
    *,
    namespace: str | None = None,
    service_account_dir: str | None = None,
    settings: AgentSettings | None = None,
) -> Connection:
    """Credentials from `kubeconfig`, else the in-cluster ServiceAccount (when `settings` name the in-cluster API
    server: `KUBERNETES_SERVICE_HOST`/`_PORT`), else the default kubeconfig.

    In a pod (no kubeconfig) the ServiceAccount is read directly (`InClusterConfiguration`); a kubeconfig is loaded by
    the kubernetes library, imported only then, into a private `Configuration`, never the library's global default,
    so several agents (tests, benchmarks) can live in one process.
    """
    if not kubeconfig and settings is not None and settings.kubernetes_service_host:
        in_cluster = InClusterConfiguration(
            service_account_dir or SERVICE_ACCOUNT_DIR,
            host=settings.kubernetes_service_host,
            port=settings.kubernetes_service_port,
        )
        return Connection(in_cluster, namespace)
    try:
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config
    except ImportError as error:
        where = f"the kubeconfig {kubeconfig}" if kubeconfig else "the default kubeconfig (no KUBERNETES_SERVICE_HOST)"
        raise ValueError(
            f"reading {where} needs the kubernetes package: pip install 'nodetask-agent[kubeconfig]' "
            "(in a pod the ServiceAccount is read without it)"
        ) from error

    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=kubeconfig or None, client_configuration=configuration)
    return Connection(configuration, namespace)


def nodetasks_path(namespace: str, name: str | None = None, *, subresource: str | None = None) -> str:
    path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
    if name is not None:
        path += f"/{quote(name)}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


class KubeApi:
    """The agent's own API calls (list, status patch, Event create); open with `async with` or `open()`/`close()`."""

    def __init__(
        self, connection: Connection, *, timeout: aiohttp.ClientTimeout = _REQUEST_TIMEOUT, connections: int = 16
    ):
        """`connections`: kept-alive connections to the API server, the bound on requests in flight (the status
        writer's concurrency plus the Event posters and the occasional list need to fit)."""
        self.connection = connection
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> KubeApi:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context(), limit=self.connections)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, trust_env=False)
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeApi:
        return await self.open()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One call; returns the decoded JSON answer or raises `ApiError`. Retries only a GET answered 429, within
        `READ_THROTTLE_BUDGET_SECONDS`; every other failure is the caller's to retry."""
        if self._session is None:
            await self.open()
        assert self._session is not None
        headers = {"Accept": "application/json"}
        authorization = self.connection.authorization()
        if authorization:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        url = self.connection.server + path
        give_up = time.monotonic() + READ_THROTTLE_BUDGET_SECONDS
        while True:
            try:
                async with self._session.request(method, url, data=data, params=params, headers=headers) as response:
                    text = await response.text()
                    if response.status == 429 and method == "GET" and time.monotonic() < give_up:
                        await asyncio.sleep(_retry_after(response.headers.get("Retry-After")))
                        continue
                    if response.status >= 400:
                        raise ApiError(response.status, f"{method} {path}: {response.status} {_status_message(text)}")
                    return json.loads(text) if text else None
            except TimeoutError as error:
                raise ApiError(0, f"{method} {path}: timed out", cause="timeout") from error
            except aiohttp.ClientError as error:
                raise ApiError(0, f"{method} {path}: {type(error).__name__}: {error}", cause="connection") from error

    async def list_nodetasks(self, namespace: str, *, field_selector: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, str] = {}
        if field_selector:
            params["fieldSelector"] = field_selector
        answer = await self.request("GET", nodetasks_path(namespace), params=params)
        items: list[dict[str, Any]] = answer.get("items", [])
        return items

    async def get_nodetask(self, namespace: str, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", nodetasks_path(namespace, name))
        return answer

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """JSON merge patch of `status` on the status subresource (`None` values delete keys).

        With `resource_version`, the patch carries `metadata.resourceVersion` as a precondition: if the object changed
        since (or was deleted and re-created under the same name), the API server refuses with 409
        (`ApiError.conflict`). A `metadata.uid` in the patch would not do: on a custom resource's status subresource
        the server silently replaces the patched metadata with the stored one (tested on the real kube-apiserver)."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        answer: dict[str, Any] = await self.request(
            "PATCH",
            nodetasks_path(namespace, name, subresource="status"),
            body=body,
            content_type="application/merge-patch+json",
        )
        return answer

    async def delete_nodetask(self, namespace: str, name: str, uid: str) -> bool:
        """Delete one NodeTask, only if it is still the object with `uid` (a precondition: a new object of the same
        name is never deleted by mistake). False when it is already gone or was replaced."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            await self.request("DELETE", nodetasks_path(namespace, name), body=body)
        except ApiError as error:
            if error.status in (404, 409):
                return False
            raise
        return True

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Every pod in `namespace` matching `label_selector`, following `continue` (tasks' `KubeReader`)."""
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods"
        params = {"labelSelector": label_selector, "limit": "500"}
        pods: list[dict[str, Any]] = []
        while True:
            try:
                page = await self.request("GET", path, params=params)
            except ApiError as error:
                raise TaskError(
                    f"listing pods with labelSelector {label_selector!r} in namespace {namespace!r}: {error}",
                    hint="the agent's Role needs list on pods" if error.status == 403 else "",
                    retryable=error.retryable,
                ) from None
            pods += page.get("items") or []
            following = (page.get("metadata") or {}).get("continue")
            if not following:
                return pods
            params["continue"] = following

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        await self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body=event)


def _status_message(text: str) -> str:
    """The `message` of a Kubernetes Status answer, else the (shortened) raw text."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(decoded, dict) and decoded.get("message"):
        return str(decoded["message"])
    return text[:300]

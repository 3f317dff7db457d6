"""The Go sidecar's HTTP task API (`sei-protocol/seictl`, openapi 0.8.0), served by the same engine and store.

Opt-in (`NODETASK_SEICTL_API=true`, or the `seictl serve` entry point): a fleet whose controller speaks the original's
HTTP API switches by changing the sidecar image, and moves to NodeTask resources at its own pace. The contract, in our
own words, is `docs/api/seictl-compat.yaml`; `docs/migrating-from-seictl.md` lists every mapping and difference.

Routes (only mounted when the mode is on; without it the mutating routes do not exist at all):

| route | answer |
|---|---|
| `GET /v0/healthz`, `GET /v0/startupz` | 200 / 503, empty body: the readiness gate |
| `GET /v0/livez` | 200 / 503, empty body (the store answers); `?verbose=1` adds `{"error": ...}` on 503 |
| `GET /v0/metrics` | Prometheus text (the agent's registry) |
| `GET /v0/status` | `{"status": "Initializing" or "Ready", "running": N, "authn": mode}` |
| `GET /v0/node-id` | `{"nodeId": "<hex>"}` from `config/node_key.json`; 500 `{"error"}` with the original's texts |
| `POST /v0/tasks` | 201 `{"id"}` (new, deduplicated, re-run failed); 409 NodeTask's ID; 429 at the cap; 400 otherwise |
| `GET /v0/tasks` | the newest 100 tasks, the original's `TaskResult` array, streamed; 503 + `Retry-After` when busy |
| `GET /v0/tasks/{id}` | one `TaskResult`; 404 `{"error": "task not found"}` |
| `DELETE /v0/tasks/{id}` | 204; 404; 409 for a task that belongs to a NodeTask; 503 + `Retry-After` on a store error |

Decisions where the original is loose or we are stricter (each documented in the migration guide):

- The body is bounded (`MAX_BODY_BYTES`), unknown top-level fields are refused, and params are validated against the
  type's model *before* anything is stored: a bad value is a 400 naming the field, so a task that cannot run is
  never accepted.
- A failed task's ID re-submitted runs again with `run + 1` (within its own deadline), as in the original; running,
  completed and cancelled IDs are no-ops that answer 201 with the ID. An ID that belongs to a NodeTask is refused with
  409 naming it, as DELETE does: the resource drives its task.
- Bounded work: at most `NODETASK_MAX_TASKS` tasks queued or running (429 with `Retry-After` beyond it), listings at
  most `HEAVY_CONCURRENCY` at once and one page of rows each, bodies read under the connection's deadline
  (`limits.ConnectionGuard`). A disk budget spent (`DiskBudgetExceeded`: the home's free space below
  `NODETASK_MIN_FREE_BYTES`, or the agent's files above `NODETASK_STORE_BUDGET_BYTES`) answers 507 Insufficient
  Storage with `Retry-After`: the volume, not the client's rate, is the problem, so an operator sees it apart from a
  429, while a client that retries still may.
- Task statuses map onto the original's three: running (and a retry waiting for its backoff) -> `running`,
  succeeded -> `completed`, failed and cancelled -> `failed`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from agent.chain.keys import node_id_from_file, node_key_path
from agent.engine import Engine, EngineClosed
from agent.models import DiskBudgetExceeded, Task, TaskOwned, TaskResult, TaskStatus, TooManyTasks, normalize_task_id
from agent.models.errors import TaskError
from agent.models.limits import json_bounds_problem
from agent.models.redaction import redact, redact_text
from agent.models.settings import AgentSettings
from agent.store import StoreError

from .limits import HEAVY_CONCURRENCY, LISTING_MAX_BYTES, MAX_REQUEST_BODY, request_body
from .rows import servable

MAX_BODY_BYTES = MAX_REQUEST_BODY
"""Largest accepted `POST /v0/tasks` body: the connection guard's bound (`limits.MAX_REQUEST_BODY`, 1 MiB)."""
LIST_LIMIT = 100
"""`GET /v0/tasks` answers the newest this many, as the original does."""
LIST_PAGE = 10
"""Rows a listing holds in memory at once (a row's params and result may each be 64 KiB of JSON)."""
LIST_DEADLINE = 30.0
"""Seconds a listing may take, writing included: a client that does not read cannot hold a listing slot."""
RETRY_AFTER_SECONDS = 1
_REQUEST_FIELDS = frozenset({"id", "type", "params"})

_STATUS = {
    TaskStatus.RUNNING: "running",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "failed",
}

ParamsMapper = Callable[[dict[str, Any], AgentSettings], dict[str, Any]]


def _drop(*keys: str) -> ParamsMapper:
    def mapper(params: dict[str, Any], settings: AgentSettings) -> dict[str, Any]:
        return {key: value for key, value in params.items() if key not in keys}

    return mapper


def _snapshot_upload_loop(params: dict[str, Any], settings: AgentSettings) -> dict[str, Any]:
    mapped = dict(params)
    mapped.setdefault("intervalSeconds", settings.snapshot_upload_interval_seconds)
    return mapped


# The original's type -> (our type, how its params become ours). Types not listed map to themselves unchanged.
TYPE_MAPPINGS: dict[str, tuple[str, ParamsMapper | None]] = {
    # The original derives every peer's host from `<node>-0.<node>.<namespace>.svc`; ours publishes the host each
    # validator advertises in its own gentx memo, so `namespace` has nothing to say.
    "assemble-and-upload-genesis": ("assemble-and-upload-genesis", _drop("namespace")),
    # The original's snapshot-upload is an endless loop every SEI_SNAPSHOT_UPLOAD_INTERVAL (168 h by default); ours
    # loops when given `intervalSeconds` and uploads once without it. (`snapshot-upload-once` is a type of ours too.)
    "snapshot-upload": ("snapshot-upload", _snapshot_upload_loop),
}


class RequestRefused(Exception):
    """A `POST /v0/tasks` the original would also refuse with 400; `message` is its error body."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_task_request(body: bytes, settings: AgentSettings, engine: Engine) -> Task:
    """The engine task for a `POST /v0/tasks` body, or `RequestRefused` with the original's message."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestRefused("invalid request body") from None
    if not isinstance(request, dict):
        raise RequestRefused("invalid request body: expected a JSON object")
    unknown = sorted(set(request) - _REQUEST_FIELDS)
    if unknown:
        raise RequestRefused(f"invalid request body: unknown field {unknown[0]!r} (allowed: id, type, params)")
    task_type = request.get("type")
    if task_type is None or task_type == "":
        raise RequestRefused("type is required")
    if not isinstance(task_type, str):
        raise RequestRefused("invalid request body: type must be a string")
    params = request.get("params")
    if params is not None and not isinstance(params, dict):
        raise RequestRefused("invalid request body: params must be a JSON object")
    task_id = request.get("id")
    if task_id is not None and not isinstance(task_id, str):
        raise RequestRefused(f"task ID must be a valid UUID: {json.dumps(task_id)}")
    if task_id:
        try:
            task_id = normalize_task_id(task_id)
        except TaskError:
            raise RequestRefused(f"task ID must be a valid UUID: {json.dumps(task_id)}") from None
    if params is not None and (problem := json_bounds_problem(params)) is not None:
        raise RequestRefused(f"invalid params for {task_type}: {problem}")
    our_type, mapper = TYPE_MAPPINGS.get(task_type, (task_type, None))
    mapped = mapper(dict(params or {}), settings) if mapper else params
    task = Task(id=task_id or None, type=our_type, params=mapped or None)
    try:
        engine.check(task)
    except TaskError as error:
        if error.reason == "UnsupportedType":
            raise RequestRefused(f"unknown task type: {task_type}") from None
        raise RequestRefused(f"invalid params for {task_type}: {error.message}") from None
    return task


def task_result(row: TaskResult) -> dict[str, Any]:
    """A row in the original's `TaskResult` shape: id, type, status, run, params?, result?, error?, timestamps."""
    row = servable(row)
    body: dict[str, Any] = {"id": row.id, "type": row.type, "status": _STATUS[row.status], "run": row.run}
    if row.params:
        body["params"] = _sorted_keys(redact(row.params))  # a Go map: its keys come out sorted
    if row.result is not None:
        body["result"] = redact(row.result)
    if row.status is TaskStatus.CANCELLED:
        body["error"] = redact_text(f"Cancelled: {row.error or 'cancelled on request'}")
    elif row.status is TaskStatus.FAILED:
        message = f"{row.reason}: {row.error}" if row.reason else row.error
        body["error"] = redact_text(f"{message} [hint: {row.hint}]" if row.hint else message)
    dumped = row.model_dump(mode="json", by_alias=True, include={"submitted_at", "completed_at"})
    body["submittedAt"] = go_time(dumped["submittedAt"])
    if dumped.get("completedAt"):
        body["completedAt"] = go_time(dumped["completedAt"])
    return body


def go_time(text: str) -> str:
    """A UTC timestamp as Go's `time.Time` marshals it (RFC 3339 with the fraction's trailing zeros dropped)."""
    stamp, dot, fraction = text.removesuffix("Z").partition(".")
    fraction = fraction.rstrip("0")
    return f"{stamp}.{fraction}Z" if dot and fraction else f"{stamp}Z"


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(body: Any) -> str:
    """JSON as Go's `json.NewEncoder(w).Encode` writes it, so bodies are byte-identical to the original's: compact,
    UTF-8 (no `\\uXXXX` for non-ASCII), `<`, `>`, `&`, U+2028 and U+2029 escaped, and a trailing newline."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return "".join(_GO_ESCAPES.get(char, char) for char in text) + "\n"


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Bytes, so the header is exactly the original's `application/json` (a text body would add a charset).
    return web.Response(body=go_json(body).encode(), status=status, content_type="application/json", headers=headers)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


class SeictlApi:
    """The original's routes over one engine; `add_routes` mounts them on an aiohttp router."""

    def __init__(
        self,
        engine: Engine,
        settings: AgentSettings,
        metrics_body: Callable[[], tuple[bytes, str]],
        *,
        heavy: asyncio.Semaphore | None = None,
        authn_mode: str = "unset",
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics_body = metrics_body
        self.heavy = heavy or asyncio.Semaphore(HEAVY_CONCURRENCY)
        self.authn_mode = authn_mode

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v0/healthz", self.healthz)
        router.add_get("/v0/startupz", self.healthz)
        router.add_get("/v0/livez", self.livez)
        router.add_get("/v0/metrics", self.metrics)
        router.add_get("/v0/node-id", self.node_id)
        router.add_get("/v0/status", self.status)
        router.add_post("/v0/tasks", self.submit)
        router.add_get("/v0/tasks", self.list_tasks)
        router.add_get("/v0/tasks/{task_id}", self.get_task)
        router.add_delete("/v0/tasks/{task_id}", self.delete_task)

    async def healthz(self, request: web.Request) -> web.Response:
        # As the agent's own /healthz: a store that cannot be written makes the pod unready whatever the gate says.
        ready = self.engine.store_health().ok and self.engine.healthz()
        return web.Response(status=200 if ready else 503)

    async def livez(self, request: web.Request) -> web.Response:
        if self.engine.livez():
            return web.Response(status=200)
        if request.query.get("verbose") in ("1", "true"):
            return _error(503, "store unavailable: a trivial query on the task store failed")
        return web.Response(status=503)

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics_body()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def status(self, request: web.Request) -> web.Response:
        # {"status": "Initializing" | "Ready", "running": N, "authn": "unset" | "unauthenticated" | "trusted-header"}
        return _json({**self.engine.status(), "authn": self.authn_mode})

    async def node_id(self, request: web.Request) -> web.Response:
        # The original's three answers, word for word; the key's validation is ours (the ID comes from the key bytes).
        path = node_key_path(self.settings.home)
        try:
            document = json.loads(path.read_bytes())
        except OSError:
            return _error(500, "node_key.json not found — generate-identity may not have run yet")
        except ValueError:
            return _error(500, "failed to parse node_key.json")
        try:
            if not isinstance(document, dict):
                raise ValueError("not an object")
            node_id = node_id_from_file(path)
        except (OSError, ValueError, TaskError):
            return _error(500, "invalid Ed25519 key in node_key.json")
        return _json({"nodeId": node_id})

    async def submit(self, request: web.Request) -> web.Response:
        body = request_body(request)  # read by the connection guard, under the connection's deadline
        if body is None:
            return _error(400, f"invalid request body: larger than {MAX_BODY_BYTES} bytes")
        try:
            task = parse_task_request(body, self.settings, self.engine)
            task_id = await self.engine.submit(task, retry=True)
        except RequestRefused as refused:
            return _error(400, refused.message)
        except TaskOwned as error:  # as DELETE: the NodeTask owns the task, its deadline and its retries
            return _error(409, f"{error.reason}: {error.message}")
        except TooManyTasks as error:
            return _error(429, f"{error.reason}: {error.message}", {"Retry-After": str(RETRY_AFTER_SECONDS)})
        except DiskBudgetExceeded as error:
            return _error(507, f"{error.reason}: {error.message}", {"Retry-After": str(RETRY_AFTER_SECONDS)})
        except TaskError as error:  # TaskIdConflict: the ID names other work (another type or other params)
            return _error(400, f"{error.reason}: {error.message}")
        except (StoreError, EngineClosed) as error:
            return _error(400, f"persist task: {error}")
        return _json({"id": task_id}, 201)

    async def list_tasks(self, request: web.Request) -> web.StreamResponse:
        """The newest `LIST_LIMIT` tasks as the original's array, streamed `LIST_PAGE` rows at a time: at most
        `HEAVY_CONCURRENCY` listings at once (shared with the agent's own), each holding one page in memory, at most
        `LISTING_MAX_BYTES` long and finishing within `LIST_DEADLINE` seconds (a client that does not read its answer
        loses the connection)."""
        if self.heavy.locked():
            message = f"at most {HEAVY_CONCURRENCY} task listings at once; try again shortly"
            return _error(503, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        async with self.heavy:
            first = await self.engine.recent(min(LIST_PAGE, LIST_LIMIT))  # before the answer starts: errors are 503s
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            try:
                async with asyncio.timeout(LIST_DEADLINE):
                    await response.prepare(request)
                    await self._stream(response, first)
            except (TimeoutError, StoreError):
                if request.transport is not None:
                    request.transport.close()  # mid-answer: only closing the connection can say it failed
                return response
            await response.write_eof()
        return response

    async def _stream(self, response: web.StreamResponse, page: list[TaskResult]) -> None:
        sent = size = 0
        separator = b"["
        while page:
            for row in page:
                piece = separator + go_json(task_result(row)).rstrip("\n").encode()
                if sent and size + len(piece) > LISTING_MAX_BYTES:
                    page = []  # the answer is full: the newest rows that fit
                    break
                await response.write(piece)
                separator = b","
                size += len(piece)
                sent += 1
            if not page or len(page) < LIST_PAGE or sent >= LIST_LIMIT:
                break
            page = await self.engine.recent(min(LIST_PAGE, LIST_LIMIT - sent), after=page[-1])
        await response.write(b"[]\n" if separator == b"[" else b"]\n")

    def _task_id(self, request: web.Request) -> str | None:
        try:
            return normalize_task_id(request.match_info["task_id"])
        except TaskError:
            return None

    async def get_task(self, request: web.Request) -> web.Response:
        task_id = self._task_id(request)
        row = await self.engine.get(task_id) if task_id else None
        if row is None:
            return _error(404, "task not found")
        return _json(task_result(row))

    async def delete_task(self, request: web.Request) -> web.Response:
        task_id = self._task_id(request)
        row = await self.engine.get(task_id) if task_id else None
        if task_id is None or row is None:
            return _error(404, "task not found")
        if row.source is not None:
            return _error(
                409,
                f"task {task_id} belongs to NodeTask {row.source.namespace}/{row.source.name}: "
                "delete the NodeTask instead",
            )
        try:
            deleted = await self.engine.remove(task_id)
        except Exception:  # the store refused the delete; the task is already stopped and stays recoverable
            return _error(503, "failed to delete task; retry", {"Retry-After": "1"})
        if not deleted:
            return _error(404, "task not found")
        return web.Response(status=204)

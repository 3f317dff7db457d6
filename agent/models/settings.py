"""Agent settings: where the node's home is, who the agent is, the defaults tasks fall back on, and the agent
process's tunables. One pydantic-settings model reads every environment variable the agent uses.

- `AgentSettings.from_env()` reads the process environment (or a given mapping); keyword overrides (the CLI's flags)
  win over the environment. Every field is validated, and an invalid value raises `SettingsError` naming the
  variable, the value and the reason (`NODETASK_RETENTION_HOURS='-5': must be greater than 0`).
- `AgentSettings(home=..., ...)` builds settings from its arguments alone, never from the environment, so that tests
  and embedders get exactly what they pass.
- An empty variable counts as unset (a manifest's `value: ""` means the default); values are stripped.

Each field's `validation_alias` is its variable; `AgentSettings.variables()` lists them all, and the README's
Configuration table is checked against that list (`tests/models/test_settings.py`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from . import spending

_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("nodetask_settings_environment", default=None)
"""The environment `from_env` reads; None (the default) for plain construction, which reads no environment."""
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BECH32_PREFIX = re.compile(r"[a-z0-9]{1,83}")
_DENOM = re.compile(r"[a-zA-Z][a-zA-Z0-9/:._-]{2,127}")
_SECRETS = frozenset({"SEI_KEYRING_PASSPHRASE", "keyring_passphrase"})
"""Settings whose value an error message must never quote."""


class SettingsError(ValueError):
    """An environment variable (or flag) has a value the agent cannot use; the message names each one."""


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (os.environ, or a test's or pod spec's env)."""

    def __init__(self, settings_cls: type[BaseSettings], environment: Mapping[str, str]):
        self._environment = environment
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name: value for name, value in self._environment.items() if value.strip()}


class AgentSettings(BaseSettings):
    """Every setting of the agent, each read from the environment variable named in its `validation_alias`."""

    model_config = SettingsConfigDict(
        frozen=True, populate_by_name=True, extra="ignore", case_sensitive=True, str_strip_whitespace=True
    )

    home: Path = Field(default=Path("/sei"), validation_alias=AliasChoices("SEI_HOME", "home"))
    """The node's home directory (`SEI_HOME`), shared with seid: `config/`, `data/`, markers."""
    db_path: Path | None = Field(default=None, validation_alias=AliasChoices("NODETASK_DB", "db_path"))
    """The SQLite store (`NODETASK_DB`); default `<home>/nodetask-agent.db`. Must be on block storage, not NFS."""
    http_port: int = Field(
        default=7777, validation_alias=AliasChoices("NODETASK_HTTP_PORT", "http_port"), ge=1, le=65535
    )
    """Probes, metrics and the read-only task API (`NODETASK_HTTP_PORT`)."""
    pod_name: str = Field(default="", validation_alias=AliasChoices("POD_NAME", "pod_name"))
    pod_namespace: str = Field(default="", validation_alias=AliasChoices("POD_NAMESPACE", "pod_namespace"))
    pod_uid: str = Field(default="", validation_alias=AliasChoices("POD_UID", "pod_uid"))
    kubernetes_service_host: str = Field(
        default="", validation_alias=AliasChoices("KUBERNETES_SERVICE_HOST", "kubernetes_service_host")
    )
    """The in-cluster API server's address, set by the kubelet (`KUBERNETES_SERVICE_HOST`); with it and no
    `--kubeconfig`, `run` uses the pod's ServiceAccount."""
    kubernetes_service_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("KUBERNETES_SERVICE_PORT", "kubernetes_service_port"),
    )
    """The in-cluster API server's port, set by the kubelet (`KUBERNETES_SERVICE_PORT`)."""
    chain_id: str = Field(default="", validation_alias=AliasChoices("SEI_CHAIN_ID", "chain_id"))
    """Default chain ID for tasks that need one and are not given it in params (`SEI_CHAIN_ID`)."""
    genesis_bucket: str = Field(default="", validation_alias=AliasChoices("SEI_GENESIS_BUCKET", "genesis_bucket"))
    genesis_region: str = Field(default="", validation_alias=AliasChoices("SEI_GENESIS_REGION", "genesis_region"))
    snapshot_bucket: str = Field(default="", validation_alias=AliasChoices("SEI_SNAPSHOT_BUCKET", "snapshot_bucket"))
    snapshot_region: str = Field(default="", validation_alias=AliasChoices("SEI_SNAPSHOT_REGION", "snapshot_region"))
    s3_endpoint_url: str = Field(
        default="", validation_alias=AliasChoices("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "s3_endpoint_url")
    )
    """S3-compatible endpoint (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`); empty means AWS."""
    s3_retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        default="standard", validation_alias=AliasChoices("AWS_RETRY_MODE", "s3_retry_mode")
    )
    """botocore's retry mode for S3 (`AWS_RETRY_MODE`); `adaptive` adds client-side rate limiting."""
    s3_max_attempts: int = Field(
        default=8, ge=1, le=100, validation_alias=AliasChoices("AWS_MAX_ATTEMPTS", "s3_max_attempts")
    )
    """Attempts per S3 request, the first included (`AWS_MAX_ATTEMPTS`)."""
    rpc_endpoint: str = Field(
        default="http://localhost:26657", validation_alias=AliasChoices("SEI_RPC_ENDPOINT", "rpc_endpoint")
    )
    """The local node's CometBFT RPC (`SEI_RPC_ENDPOINT`)."""
    admin_address: str = Field(default="", validation_alias=AliasChoices("SEI_ADMIN_ADDRESS", "admin_address"))
    """seid's admin gRPC address when it is neither loopback nor an address of the pod (`SEI_ADMIN_ADDRESS`,
    `host:port`): config-reload dials app.toml's `admin_address` only if it is one of those or exactly this."""
    seid_binary: str = Field(default="seid", validation_alias=AliasChoices("SEI_BINARY", "seid_binary"))
    """The node binary (`SEI_BINARY`): what export-state runs, and the name stop-seid, restart-seid and reset-data look
    for in /proc (`<name> start`; a path counts by its last component). `simd` in the real chain tier's tests."""
    seidb_binary: str = Field(default="seidb", validation_alias=AliasChoices("SEI_SEIDB_BINARY", "seidb_binary"))
    """Sei's `seidb` tool (`SEI_SEIDB_BINARY`, a path or a name on PATH): what evm-logical-digest runs."""
    retention: timedelta = Field(
        default=timedelta(days=30), validation_alias=AliasChoices("NODETASK_RETENTION_HOURS", "retention")
    )
    """Terminal store rows older than this are pruned (`NODETASK_RETENTION_HOURS`, in hours, > 0)."""
    retention_count: int = Field(
        default=5000, ge=1, validation_alias=AliasChoices("NODETASK_RETENTION_COUNT", "retention_count")
    )
    """At most this many terminal store rows are kept, the newest; older ones are pruned whatever their age
    (`NODETASK_RETENTION_COUNT`). With the 64 KiB bounds on params and results this bounds the store's size."""
    max_tasks: int = Field(default=1024, ge=1, validation_alias=AliasChoices("NODETASK_MAX_TASKS", "max_tasks"))
    """At most this many tasks queued or running at once, from every front door together (`NODETASK_MAX_TASKS`);
    a new task beyond it is refused (HTTP 429, a NodeTask Failed `TooManyTasks`). Readiness tasks are never refused."""
    min_free_bytes: int = Field(
        default=1 << 30, ge=0, validation_alias=AliasChoices("NODETASK_MIN_FREE_BYTES", "min_free_bytes")
    )
    """A new task is refused (`DiskBudgetExceeded`, HTTP 507) while the home's filesystem has less free space than
    this (`NODETASK_MIN_FREE_BYTES`, bytes; 0: no floor). A fixed 1 GiB rather than a percentage: seid shares the
    volume and needs headroom in bytes (a compaction, a few hours of blocks), and 5% of a multi-TiB node volume would
    refuse work far from any danger. Readiness tasks are never refused."""
    store_budget_bytes: int = Field(
        default=1 << 30, ge=0, validation_alias=AliasChoices("NODETASK_STORE_BUDGET_BYTES", "store_budget_bytes")
    )
    """A new task is refused (`DiskBudgetExceeded`, HTTP 507) while the agent's own files in the home (the store, its
    WAL, `nodetask-tx/` records) take more than this (`NODETASK_STORE_BUDGET_BYTES`, bytes; 0: no budget), and
    retention runs at once. 1 GiB: above what the other bounds allow (`NODETASK_RETENTION_COUNT` rows of at most
    128 KiB, plus `NODETASK_MAX_TASKS` running ones), so it trips only when those are raised or defeated."""

    # --- the Go sidecar's HTTP task API (agent.server.seictl, docs/migrating-from-seictl.md) ------------------------
    seictl_api: bool = Field(default=False, validation_alias=AliasChoices("NODETASK_SEICTL_API", "seictl_api"))
    """Serve the Go sidecar's HTTP task API too (`NODETASK_SEICTL_API`; always on under `serve` / `seictl serve`)."""
    authn_mode: Literal["unset", "unauthenticated", "trusted-header"] = Field(
        default="unset", validation_alias=AliasChoices("SEI_SIDECAR_AUTHN_MODE", "authn_mode")
    )
    """`SEI_SIDECAR_AUTHN_MODE`, read as the Go sidecar reads it (trimmed, any case): `trusted-header` binds loopback
    and requires exactly one non-empty `X-Remote-User` on every path but the probes and metrics; unset (`"unset"`
    here) binds loopback too whenever the task API is served, so it is never open by accident; only the explicit
    `unauthenticated` serves it on every interface without authentication (a WARNING at start, docs/reliability.md)."""
    snapshot_upload_interval_seconds: int = Field(
        default=168 * 3600,
        gt=0,
        validation_alias=AliasChoices("SEI_SNAPSHOT_UPLOAD_INTERVAL", "snapshot_upload_interval_seconds"),
    )
    """Loop period of the Go sidecar's `snapshot-upload` submitted over HTTP (`SEI_SNAPSHOT_UPLOAD_INTERVAL`, a Go
    duration such as `168h`; whole seconds when given as a number)."""
    keyring_backend: Literal["", "test", "file"] = Field(
        default="", validation_alias=AliasChoices("SEI_KEYRING_BACKEND", "keyring_backend")
    )
    """The operator's Cosmos keyring that gov tasks sign from by `keyName` (`SEI_KEYRING_BACKEND`: `test` or `file`;
    unset: only the agent's own `validator` key). Read-only; `agent.chain.keyring` documents the format."""
    keyring_dir: Path | None = Field(default=None, validation_alias=AliasChoices("SEI_KEYRING_DIR", "keyring_dir"))
    """The keyring's root (`SEI_KEYRING_DIR`, default `<home>/keyring-file`); keys are in `keyring-<backend>/`."""
    keyring_passphrase: SecretStr = Field(
        default=SecretStr(""),
        validate_default=True,
        validation_alias=AliasChoices("SEI_KEYRING_PASSPHRASE", "keyring_passphrase"),
    )
    """The `file` keyring's passphrase (`SEI_KEYRING_PASSPHRASE`, required for `file`). Kept only in memory: the
    serve entry points remove it from the process environment once read, and it is never logged or stored."""
    sidecar_port: int | None = Field(
        default=None, ge=1, le=65535, validation_alias=AliasChoices("SEI_SIDECAR_PORT", "sidecar_port")
    )
    """`seictl serve`'s port (`SEI_SIDECAR_PORT`), as the Go sidecar reads it; unset: `NODETASK_HTTP_PORT`."""
    hostname: str = Field(default="", validation_alias=AliasChoices("HOSTNAME", "hostname"))
    """`seictl serve`'s pod name when `POD_NAME` is unset (`HOSTNAME`, which Kubernetes sets to the pod's name)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", validation_alias=AliasChoices("SEI_LOG_LEVEL", "log_level")
    )
    """`seictl serve`'s log level (`SEI_LOG_LEVEL`, any case); `nodetask-agent` takes `--log-level`."""
    log_format: Literal["text", "json"] = Field(
        default="text", validation_alias=AliasChoices("NODETASK_LOG_FORMAT", "log_format")
    )
    """`nodetask-agent`'s log format (`NODETASK_LOG_FORMAT`: `text` or `json`, any case) when `--log-format` is not
    given (the flag wins); JSON lines carry the task's fields (ID, type, run, reason, NodeTask namespace and name)."""

    # --- chain identity: what the agent writes into keys, gentxs and genesis. Sei's by default; stock Cosmos SDK
    # `simd` is `cosmos` / `stake` (coin type 118 and secp256k1 account keys are the same on both).
    bech32_prefix: str = Field(default="sei", validation_alias=AliasChoices("SEI_BECH32_PREFIX", "bech32_prefix"))
    """Account address prefix (`SEI_BECH32_PREFIX`); the SDK derives `<p>pub`, `<p>valoper`, `<p>valcons`..."""
    bech32_validator_prefix: str = Field(
        default="", validation_alias=AliasChoices("SEI_BECH32_VALIDATOR_PREFIX", "bech32_validator_prefix")
    )
    """Operator address prefix (`SEI_BECH32_VALIDATOR_PREFIX`); empty means `<bech32_prefix>valoper`."""
    bech32_consensus_prefix: str = Field(
        default="", validation_alias=AliasChoices("SEI_BECH32_CONSENSUS_PREFIX", "bech32_consensus_prefix")
    )
    """Consensus address prefix (`SEI_BECH32_CONSENSUS_PREFIX`); empty means `<bech32_prefix>valcons`."""
    bond_denom: str = Field(default="usei", validation_alias=AliasChoices("SEI_BOND_DENOM", "bond_denom"))
    """Staking denom when genesis has no `staking.params.bond_denom` (`SEI_BOND_DENOM`); genesis's wins."""
    coin_type: int = Field(default=118, ge=0, lt=2**31, validation_alias=AliasChoices("SEI_COIN_TYPE", "coin_type"))
    """BIP44 coin type of new account keys, `m/44'/<coin_type>'/0'/0/0` (`SEI_COIN_TYPE`)."""
    gentx_account_numbers: Literal["zero", "initial-height"] = Field(
        default="zero", validation_alias=AliasChoices("SEI_GENTX_ACCOUNT_NUMBERS", "gentx_account_numbers")
    )
    """Account number genesis transactions are signed with (`SEI_GENTX_ACCOUNT_NUMBERS`): `zero` always (Sei's node
    treats genesis by context), or `initial-height` (stock Cosmos SDK: 0 when the chain starts at height 1, the
    account's own number when genesis's `initial_height` is above 1, as in a fork)."""
    key_export_form: Literal["raw", "amino"] = Field(
        default="raw", validation_alias=AliasChoices("SEI_KEY_EXPORT_FORM", "key_export_form")
    )
    """What `nodetask-agent keys export` encrypts, as the chain's `keys import` reads it (`SEI_KEY_EXPORT_FORM`): `raw`
    (Sei's keyring: the 32 key bytes) or `amino` (stock Cosmos SDK: amino `PrivKeySecp256k1`, 37 bytes)."""

    # --- the agent process (agent.runtime and its front doors) -------------------------------------------------------
    http_host: str = Field(default="0.0.0.0", validation_alias=AliasChoices("NODETASK_HTTP_HOST", "http_host"))
    """Address the HTTP server binds; the kubelet probes the pod IP (`NODETASK_HTTP_HOST`)."""
    progress_interval: float = Field(
        default=5.0, gt=0, validation_alias=AliasChoices("NODETASK_PROGRESS_SECONDS", "progress_interval")
    )
    """At most one progress patch per task this often; transitions are immediate (`NODETASK_PROGRESS_SECONDS`)."""
    heartbeat_interval: float = Field(
        default=30.0, gt=0, validation_alias=AliasChoices("NODETASK_HEARTBEAT_SECONDS", "heartbeat_interval")
    )
    """`status.heartbeatAt` renewal while Running (`NODETASK_HEARTBEAT_SECONDS`)."""
    resync_interval: float = Field(
        default=60.0, gt=0, validation_alias=AliasChoices("NODETASK_RESYNC_SECONDS", "resync_interval")
    )
    """Full list-and-reconcile, catching anything a watch gap missed (`NODETASK_RESYNC_SECONDS`)."""
    shutdown_grace: float = Field(
        default=10.0, ge=0, validation_alias=AliasChoices("NODETASK_SHUTDOWN_GRACE_SECONDS", "shutdown_grace")
    )
    """How long cancelled handlers get to stop on shutdown (`NODETASK_SHUTDOWN_GRACE_SECONDS`)."""
    status_concurrency: int = Field(
        default=8, ge=1, le=256, validation_alias=AliasChoices("NODETASK_STATUS_CONCURRENCY", "status_concurrency")
    )
    """Status patches in flight at once, one per object at most (`NODETASK_STATUS_CONCURRENCY`)."""
    selector: Literal["auto", "none"] = Field(
        default="auto", validation_alias=AliasChoices("NODETASK_SELECTOR", "selector")
    )
    """auto: a field selector on spec.targetPod if the server supports it; none: filter here (`NODETASK_SELECTOR`)."""
    max_gas: int = Field(default=1_000_000, ge=1, validation_alias=AliasChoices("NODETASK_MAX_GAS", "max_gas"))
    """The largest gas limit a signed transaction may ask for (`NODETASK_MAX_GAS`); see `agent.models.spending`."""
    max_gas_price: str = Field(
        default="0.1usei", validation_alias=AliasChoices("NODETASK_MAX_GAS_PRICE", "max_gas_price")
    )
    """Per-denom fee ceilings as gas prices, `0.1usei,0.01stake` (`NODETASK_MAX_GAS_PRICE`): a fee in a denom not
    listed is refused."""
    max_deposit: str = Field(
        default="3500000000usei", validation_alias=AliasChoices("NODETASK_MAX_DEPOSIT", "max_deposit")
    )
    """Per-denom ceilings of a proposal's initial deposit, `3500000000usei` (`NODETASK_MAX_DEPOSIT`)."""

    @field_validator("bech32_prefix", "bech32_validator_prefix", "bech32_consensus_prefix")
    @classmethod
    def _bech32_prefix(cls, value: str, info: ValidationInfo) -> str:
        if value and not _BECH32_PREFIX.fullmatch(value):
            raise ValueError(f"{value!r} is not a Bech32 prefix (1-83 of a-z and 0-9)")
        if info.field_name == "bech32_prefix" and not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("bond_denom")
    @classmethod
    def _denom(cls, value: str) -> str:
        if not _DENOM.fullmatch(value):
            raise ValueError(f"{value!r} is not a denom (a letter, then 2-127 of a-z A-Z 0-9 /:._-)")
        return value

    @field_validator("max_gas_price")
    @classmethod
    def _gas_prices(cls, value: str) -> str:
        spending.parse_prices(value)
        return value

    @field_validator("max_deposit")
    @classmethod
    def _deposit(cls, value: str) -> str:
        spending.parse_amounts(value)
        return value

    @property
    def spending_limits(self) -> spending.SpendingLimits:
        """The fee and deposit ceilings of signed transactions, parsed."""
        return spending.SpendingLimits(
            max_gas=self.max_gas,
            max_gas_price=spending.parse_prices(self.max_gas_price),
            max_deposit=spending.parse_amounts(self.max_deposit),
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        # The Go sidecar's spelling `warn` is Python's WARNING.
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("authn_mode", mode="before")
    @classmethod
    def _authn_mode(cls, value: Any) -> Any:
        mode = str(value).strip().lower()
        if mode not in ("", "unset", "unauthenticated", "trusted-header"):  # "unset": the value as dumped
            raise ValueError('is not recognized (allowed: "", "unauthenticated", "trusted-header")')
        return mode or "unset"

    @field_validator("keyring_backend", mode="before")
    @classmethod
    def _keyring_backend(cls, value: Any) -> Any:
        backend = str(value).strip()
        if backend == "os":
            raise ValueError(
                "the os backend (the host's secret service) is not supported by the agent; use test or file"
            )
        if backend not in ("", "test", "file"):
            raise ValueError(f"unsupported SEI_KEYRING_BACKEND {json.dumps(backend)} (allowed: test|file)")
        return backend

    @field_validator("keyring_passphrase")
    @classmethod
    def _passphrase_for_file(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("keyring_backend") == "file" and not value.get_secret_value():
            raise ValueError("SEI_KEYRING_PASSPHRASE required when SEI_KEYRING_BACKEND=file")
        return value

    @field_validator("snapshot_upload_interval_seconds", mode="before")
    @classmethod
    def _go_duration(cls, value: Any) -> Any:
        if not isinstance(value, str) or value.strip().isdigit():
            return value
        text = value.strip()
        if _GO_DURATION.sub("", text) != "" or not text:
            raise ValueError("is not a Go duration such as '168h' or '1h30m'")
        seconds = sum(float(number) * _GO_UNIT_SECONDS[unit] for number, unit in _GO_DURATION.findall(text))
        if seconds < 1:
            raise ValueError("must be at least one second")
        return int(seconds)

    @field_validator("retention", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> Any:
        """A number (or a string of one) is hours, as `NODETASK_RETENTION_HOURS` gives it; a timedelta is as is."""
        if isinstance(value, timedelta):
            return value
        try:
            return timedelta(hours=float(value))
        except (TypeError, ValueError):
            raise ValueError("must be a number of hours, such as 720") from None

    @field_validator("retention")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        # Zero or negative would make every finished task "expired" at once, and local mode would run tasks that had
        # already succeeded again.
        if value <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environment = _ENVIRONMENT.get()
        if environment is None:
            return (init_settings,)
        return (init_settings, _MappingEnvSource(settings_cls, environment))

    @property
    def store_path(self) -> Path:
        return self.db_path or self.home / "nodetask-agent.db"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> AgentSettings:
        """Settings from `env` (default: the process environment); non-None `overrides` (flags) win.

        Raises `SettingsError` naming every invalid variable with its value and the reason.
        """
        given = {name: value for name, value in overrides.items() if value is not None}
        environment = os.environ if env is None else env
        token = _ENVIRONMENT.set(environment)
        try:
            return cls(**given)  # type: ignore[arg-type]  # flags by field name; pydantic validates them
        except ValidationError as error:
            raise SettingsError(_describe(error, environment)) from None
        finally:
            _ENVIRONMENT.reset(token)

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable the agent reads, in field order."""
        names = []
        for field in cls.model_fields.values():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names += [choice for choice in alias.choices if isinstance(choice, str) and choice.isupper()]
        return names


def forget_secret_variables(environment: dict[str, str] | None = None) -> None:
    """Remove secret variables (`SEI_KEYRING_PASSPHRASE`) from the environment once settings hold them, so child
    processes do not inherit them. For the process environment the value's bytes are also overwritten with NULs
    first: unsetting alone leaves the string in the initial environment block, which `/proc/<pid>/environ` shows."""
    if environment is not None:
        for name in _SECRETS:
            environment.pop(name, None)
        return
    for name in _SECRETS:
        if name in os.environ:
            _wipe_c_environment_value(name)
            del os.environ[name]


def _wipe_c_environment_value(name: str) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_void_p
        address = libc.getenv(name.encode())
        if address:
            ctypes.memset(address, 0, len(ctypes.string_at(address)))
    except (OSError, AttributeError):  # no C library to reach: unsetting is all there is
        pass


def _describe(error: ValidationError, environment: Mapping[str, str]) -> str:
    """`VARIABLE='value': reason` per problem; a flag's problem is named by its field."""
    problems = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        value = "[redacted]" if name in _SECRETS else environment.get(name, problem.get("input"))
        message = str(problem["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}={value!r}: {message}")
    return "invalid settings: " + "; ".join(problems)

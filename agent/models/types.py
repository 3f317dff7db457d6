"""Enumerations shared by every layer: task types, store statuses, resource phases and stable reasons."""

from __future__ import annotations

from enum import StrEnum


class TaskType(StrEnum):
    """Every task type the agent knows. The value is the wire name used in `spec.type`."""

    SNAPSHOT_RESTORE = "snapshot-restore"
    DISCOVER_PEERS = "discover-peers"
    CONFIG_PATCH = "config-patch"
    CONFIG_APPLY = "config-apply"
    CONFIG_VALIDATE = "config-validate"
    CONFIG_RELOAD = "config-reload"
    MARK_READY = "mark-ready"
    MARK_NOT_READY = "mark-not-ready"
    CONFIGURE_GENESIS = "configure-genesis"
    CONFIGURE_STATE_SYNC = "configure-state-sync"
    SNAPSHOT_UPLOAD = "snapshot-upload"
    SNAPSHOT_UPLOAD_ONCE = "snapshot-upload-once"
    RESULT_EXPORT = "result-export"
    AWAIT_CONDITION = "await-condition"
    GENERATE_IDENTITY = "generate-identity"
    GENERATE_GENTX = "generate-gentx"
    UPLOAD_GENESIS_ARTIFACTS = "upload-genesis-artifacts"
    ASSEMBLE_AND_UPLOAD_GENESIS = "assemble-and-upload-genesis"
    SET_GENESIS_PEERS = "set-genesis-peers"
    ASSEMBLE_GENESIS_FORK = "assemble-genesis-fork"
    EXPORT_STATE = "export-state"
    GOV_VOTE = "gov-vote"
    GOV_SOFTWARE_UPGRADE = "gov-software-upgrade"
    GOV_PARAM_CHANGE = "gov-param-change"
    STOP_SEID = "stop-seid"
    RESTART_SEID = "restart-seid"
    RESET_DATA = "reset-data"
    EVM_LOGICAL_DIGEST = "evm-logical-digest"

    @classmethod
    def parse(cls, value: str) -> TaskType | None:
        """The member for `value`, or None when the agent does not know that type."""
        try:
            return cls(value)
        except ValueError:
            return None


class TaskStatus(StrEnum):
    """Status of a task row in the store (the Go sidecar's values, which its database holds, plus `cancelled`)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self is not TaskStatus.RUNNING


class Phase(StrEnum):
    """`status.phase` of a NodeTask resource."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @classmethod
    def of(cls, status: TaskStatus) -> Phase:
        return {
            TaskStatus.RUNNING: cls.RUNNING,
            TaskStatus.COMPLETED: cls.SUCCEEDED,
            TaskStatus.FAILED: cls.FAILED,
            TaskStatus.CANCELLED: cls.CANCELLED,
        }[status]


class Reason(StrEnum):
    """Stable reasons written to `status.error.reason` and the store's `reason` column.

    Handlers may use other, task-specific reasons (for example `WitnessMismatch` or `ChecksumMismatch`); these are the
    ones the engine itself produces and that every consumer can rely on.
    """

    SUCCEEDED = "Succeeded"
    TASK_FAILED = "TaskFailed"
    PARAMS_INVALID = "ParamsInvalid"
    INVALID_TASK_ID = "InvalidTaskID"
    UNSUPPORTED_TYPE = "UnsupportedType"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    CANCELLED = "Cancelled"
    HANDLER_CRASHED = "HandlerCrashed"
    AGENT_RESTARTED = "AgentRestarted"
    SUPERSEDED = "Superseded"
    TASK_ID_CONFLICT = "TaskIdConflict"
    RESULT_TOO_LARGE = "ResultTooLarge"
    AGENT_KILLED = "AgentKilled"
    """The task was running each time the agent process died, `KILL_LIMIT` times in a row (likely OOM)."""
    POD_REPLACED = "PodReplaced"
    """The task is pinned (`targetPodUID`) to an earlier incarnation of this pod; a new pod does not resume it."""
    TOO_MANY_TASKS = "TooManyTasks"
    """The agent already has `NODETASK_MAX_TASKS` tasks queued or running; the new one was refused, nothing stored."""
    DISK_BUDGET_EXCEEDED = "DiskBudgetExceeded"
    """The home's volume has less free space than `NODETASK_MIN_FREE_BYTES`, or the agent's own files there (store,
    WAL, tx records) exceed `NODETASK_STORE_BUDGET_BYTES`; the new task was refused, nothing stored (retryable)."""
    TASK_OWNED = "TaskOwnedByNodeTask"
    """A task ID that belongs to a NodeTask (or a local manifest) submitted through another front door (HTTP)."""

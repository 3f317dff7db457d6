"""What every params model shares: the base `TaskParams` (`base`) and field types several families use (`addresses`,
`coins`, `s3`). Each family's own params models live beside its handlers in `agent/tasks/<family>.py`."""

from .base import WIRE_CONTEXT, ChainId, TaskParams, check_chain_id, format_validation_error

__all__ = ["WIRE_CONTEXT", "ChainId", "TaskParams", "check_chain_id", "format_validation_error"]

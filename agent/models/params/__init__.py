"""Params models, one module per task family. Every model derives from `TaskParams`."""

from .base import WIRE_CONTEXT, ChainId, TaskParams, check_chain_id, format_validation_error

__all__ = ["WIRE_CONTEXT", "ChainId", "TaskParams", "check_chain_id", "format_validation_error"]

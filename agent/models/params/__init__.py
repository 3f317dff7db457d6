"""Params models, one module per task family. Every model derives from `TaskParams`."""

from .base import TaskParams, format_validation_error

__all__ = ["TaskParams", "format_validation_error"]

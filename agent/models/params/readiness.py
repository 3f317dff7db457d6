"""Params of the readiness gate tasks (none)."""

from .base import TaskParams


class MarkReadyParams(TaskParams):
    """`mark-ready` takes no params."""


class MarkNotReadyParams(TaskParams):
    """`mark-not-ready` takes no params."""

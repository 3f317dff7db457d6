"""Fixtures of the operator tests (agents with their own pods, tokens and homes)."""

from tests.operator.agents import agents

__all__ = ["agents"]

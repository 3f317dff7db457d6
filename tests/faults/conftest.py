"""Fixtures of the fault suite: the operator tier's agents (own pods, tokens and homes) are reused as they are."""

from tests.operator.agents import agents

__all__ = ["agents"]

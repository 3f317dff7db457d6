"""The agent process: the store, the engine and the metrics, owned once, below the front doors that drive them."""

from .metrics import AgentMetrics

__all__ = ["AgentMetrics"]

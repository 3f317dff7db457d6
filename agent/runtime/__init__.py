"""The agent process (`AgentRuntime`): the home and store, the engine, the metrics, the background loops, signals
and the stop, owned once, below the front doors that drive them (agent.operator's NodeTask watch, agent.server's HTTP
API, agent.cli's local plan). docs/design.md section 2."""

from .metrics import AgentMetrics
from .process import SHUTDOWN_ORDER, STOPPED, AgentRuntime, FrontDoor, HomeInUse, open_reader, unless_stopped

__all__ = [
    "SHUTDOWN_ORDER",
    "STOPPED",
    "AgentMetrics",
    "AgentRuntime",
    "FrontDoor",
    "HomeInUse",
    "open_reader",
    "unless_stopped",
]

"""The agent's small HTTP server: probes, Prometheus metrics and read-only task views (docs/design.md section 7)."""

from agent.models.redaction import redact
from agent.runtime.metrics import AgentMetrics

from .app import AgentServer, create_app, public_task

__all__ = ["AgentMetrics", "AgentServer", "create_app", "public_task", "redact"]

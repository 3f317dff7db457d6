"""The front-door sets of `nodetask-agent run`: the agent runtime with the HTTP API and the NodeTask watch.

`serve` / `seictl serve` plug the HTTP API alone (`agent.server.frontdoor`), `local` the local plan
(`agent.cli.local`); this is the one set that needs both front-door packages, which stay independent of each other.
"""

from __future__ import annotations

import asyncio

from agent.models.settings import AgentSettings
from agent.operator import NodeTaskWatch
from agent.runtime import AgentRuntime
from agent.server.frontdoor import HttpApi
from agent.tasks import HandlerRegistry


def agent_runtime(
    settings: AgentSettings,
    *,
    kubeconfig: str | None = None,
    registry: HandlerRegistry | None = None,
    stop: asyncio.Event | None = None,
) -> AgentRuntime:
    """The `run` process: HTTP first (probes answer during start-up, and it closes after everything that writes),
    then the watch (the main door). `registry` defaults to every shipped handler."""
    doors = [HttpApi(host=settings.http_host, seictl=settings.seictl_api), NodeTaskWatch(kubeconfig=kubeconfig)]
    return AgentRuntime(settings, doors, registry=registry, stop=stop)


async def run_agent(
    settings: AgentSettings,
    *,
    kubeconfig: str | None = None,
    registry: HandlerRegistry | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the agent until `stop` is set or SIGTERM/SIGINT arrives; the process exit code.
    Async: `asyncio.run(run_agent(settings, kubeconfig=...))`."""
    return await agent_runtime(settings, kubeconfig=kubeconfig, registry=registry, stop=stop).run()

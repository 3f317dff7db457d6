"""Everything that knows Kubernetes: the NodeTask watch (a front door of the agent runtime), its status writer and
Events, and the CRD rendering.

`NodeTaskWatch` is what `nodetask-agent run` plugs into the runtime beside the HTTP API (`agent.cli.run`);
`render_crd()` returns the NodeTask CRD (`nodetask-agent crd`).
"""

from .crd import render_crd, render_crd_yaml
from .watch import NodeTaskWatch

__all__ = ["NodeTaskWatch", "render_crd", "render_crd_yaml"]

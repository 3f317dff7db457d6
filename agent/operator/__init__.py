"""Everything that knows Kubernetes: the kopf agent, its status writer and Events, and the CRD rendering.

`run_operator(settings, *, kubeconfig=None)` is the async entry point of `nodetask-agent run`; `render_crd()` returns
the NodeTask CRD (`nodetask-agent crd`). `python -m agent.operator run|crd` runs either without the CLI.
"""

from .crd import render_crd, render_crd_yaml
from .run import OperatorOptions, run_operator

__all__ = ["OperatorOptions", "render_crd", "render_crd_yaml", "run_operator"]

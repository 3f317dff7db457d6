"""Imports kopf without the kubernetes client library.

kopf imports `kubernetes.client` if it is installed, only to recognise that library's model objects in helpers the
agent never calls (`kopf.adopt`, `kopf.label` on `V1Pod` objects). That import alone is about 55 MiB of an idle
agent's memory and 1,300 modules. While kopf is first imported, the kubernetes package is hidden from it, so kopf
takes its "not installed" branch; afterwards it imports normally (a kubeconfig is read with it, see `kubeapi`). If
kopf or the kubernetes package is already loaded (a test process, an embedding application), nothing is hidden.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType


class _HideKubernetes(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "kubernetes" or fullname.startswith("kubernetes."):
            raise ModuleNotFoundError(f"{fullname} is hidden while kopf is imported", name=fullname)
        return None


if "kopf" not in sys.modules and "kubernetes" not in sys.modules:
    _finder = _HideKubernetes()
    sys.meta_path.insert(0, _finder)
    try:
        import kopf
    finally:
        sys.meta_path.remove(_finder)

import kopf  # noqa: E402

__all__ = ["kopf"]

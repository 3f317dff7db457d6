"""Task handlers, one module per task family. Each family module exposes `HANDLERS: list[HandlerSpec]`."""

from __future__ import annotations

import importlib
import pkgutil

from .base import HandlerRegistry, HandlerSpec, KubeReader, Precheck, TaskContext, handler

__all__ = ["HandlerRegistry", "HandlerSpec", "KubeReader", "Precheck", "TaskContext", "default_registry", "handler"]

_NOT_FAMILIES = {"base", "prechecks"}


def default_registry() -> HandlerRegistry:
    """Every handler of every family module in this package (modules are found, not listed, so adding a family is
    adding a module), each with the precheck its family attached (`@handler(..., precheck=...)`)."""
    registry = HandlerRegistry()
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_") or module_info.name in _NOT_FAMILIES:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for spec in getattr(module, "HANDLERS", []):
            registry.add(spec)
    return registry

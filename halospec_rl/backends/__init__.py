"""Backends by name: ``make_backend("simulated", preset="gpu-7b")``.

Heavy backends (embedded: torch; http: httpx) are imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from halospec_rl.backends.base import DOMAINS, Backend, Prompt, RequestResult, check_draft_length

_REGISTRY: dict[str, str] = {
    "simulated": "halospec_rl.backends.simulated:SimulatedBackend",
    "embedded": "halospec_rl.backends.embedded:EmbeddedBackend",
    "http": "halospec_rl.backends.http:HttpBackend",
    "replay": "halospec_rl.backends.replay:ReplayBackend",
}
BACKEND_NAMES = tuple(_REGISTRY)


def make_backend(name: str, **kwargs: Any) -> Backend:
    """Build a backend by registry name; ValueError names an unknown one and lists the known."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(BACKEND_NAMES)}")
    module_name, cls_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**kwargs)


__all__ = [
    "BACKEND_NAMES",
    "DOMAINS",
    "Backend",
    "Prompt",
    "RequestResult",
    "check_draft_length",
    "make_backend",
]

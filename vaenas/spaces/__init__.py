"""Search spaces (DESIGN §3): one module per space, one shared protocol (base.SearchSpace)."""

from __future__ import annotations

import importlib

from vaenas.spaces.base import DecodeConstraints, SearchSpace

# name -> (module, class); imported on first use so that `import vaenas.spaces` stays cheap.
_REGISTRY = {
    "nasbench101": ("vaenas.spaces.nasbench101", "NASBench101Space"),
    "nasbench201": ("vaenas.spaces.nasbench201", "NASBench201Space"),
    "nasnet": ("vaenas.spaces.nasnet", "NASNetSpace"),
    "shufflenet": ("vaenas.spaces.shufflenet", "ShuffleNetSpace"),
}

SPACE_NAMES = tuple(_REGISTRY)


def get_space(name: str, **options) -> SearchSpace:
    """The search space called `name` (one of SPACE_NAMES), built with `options`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown search space {name!r}: choose one of {', '.join(SPACE_NAMES)}")
    module_name, class_name = _REGISTRY[name]
    return getattr(importlib.import_module(module_name), class_name)(**options)


__all__ = ["DecodeConstraints", "SearchSpace", "SPACE_NAMES", "get_space"]

"""Weight-sharing supernets (DESIGN §2, §4): one per search space, all with the G-group forward.

`get_supernet(space, **options)` builds the supernet of a space; `recalibrate` and
`evaluate_architectures` (vaenas.supernet.evaluation) score architectures on it;
`load_found_network(run_dir)` rebuilds the network a search exported (vaenas.supernet.found).
"""

from __future__ import annotations

import importlib
from typing import Any

from vaenas.spaces.base import SearchSpace
from vaenas.supernet.base import (
    SegmentedBatchNorm2d,
    SegmentedSequential,
    Supernet,
    TakesSegments,
    clear_group_statistics,
    recalibrate,
)
from vaenas.supernet.found import FoundNetworkError, load_found_network, network_description

# space name -> (module, class); imported on first use
_REGISTRY = {
    "nasbench201": ("vaenas.supernet.nasbench201", "NASBench201Supernet"),
    "nasnet": ("vaenas.supernet.nasnet", "NASNetSupernet"),
    "shufflenet": ("vaenas.supernet.shufflenet", "ShuffleNetSupernet"),
    "nasbench101": ("vaenas.supernet.nasbench101", "NASBench101Supernet"),
}


def get_supernet(space: SearchSpace, **options: Any) -> Supernet:
    """The supernet of `space`, built with `options` (each supernet's constructor lists them)."""
    if space.name not in _REGISTRY:
        raise ValueError(f"no supernet for space {space.name!r}: spaces with one: {', '.join(_REGISTRY)}")
    module_name, class_name = _REGISTRY[space.name]
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(space, **options)
    except TypeError as error:  # an unknown option: name it rather than show a constructor trace
        raise ValueError(f"{space.name} supernet: {error}") from None


__all__ = [
    "FoundNetworkError", "SegmentedBatchNorm2d", "SegmentedSequential", "Supernet", "TakesSegments",
    "clear_group_statistics", "get_supernet", "load_found_network", "network_description", "recalibrate",
]

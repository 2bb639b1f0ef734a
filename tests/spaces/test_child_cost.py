"""space.cost(arch, image_size, **options): the cost of build_child(arch, **options) on one image
of that size, counted on the built module, in every space; cached per options."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vaenas.spaces import get_space

#: (space, build_child options other than the defaults, image size)
CASES = [
    ("nasbench201", {"channels": 4, "cells_per_stage": 1, "num_classes": 3}, 8),
    ("nasnet", {"C": 4, "layers": 3, "num_classes": 5, "reductions": [1, 2]}, 16),
    ("shufflenet", {"width": 0.25, "small_input": True, "num_classes": 7}, 32),
    ("nasbench101", {"stem_channels": 8, "num_stacks": 2, "cells_per_stack": 1, "num_classes": 4}, 8),
]


@pytest.mark.parametrize("name, options, size", CASES, ids=[case[0] for case in CASES])
def test_cost_counts_the_child_built_with_the_options(name, options, size):
    space = get_space(name)
    arch = space.sample(1, torch.Generator().manual_seed(0))[0]
    child = space.build_child(arch, **options).eval()
    params = sum(p.numel() for p in child.parameters() if p.requires_grad)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        child(torch.randn(1, 3, size, size))
    cost = space.cost(arch, image_size=size, **options)
    assert cost == {"params": float(params), "flops": float(counter.get_total_flops())}
    assert cost != space.cost(arch)  # the default child, at the default size
    assert space.cost(arch, image_size=size, **options) == cost  # cached: lists in options are keyed too

"""The cost side of the one-shot search: the exported network's cost model (cost table, optionally with a
latency table) and the check, before training, that the search.* bounds can be met at all."""

from __future__ import annotations

from typing import Any

import torch

from vaenas.search.budget import with_latency
from vaenas.search.oneshot.config import OneShotConfig
from vaenas.spaces import get_space
from vaenas.spaces.base import SearchSpace
from vaenas.spaces.latency import load_latency_table
from vaenas.supernet import get_supernet

#: uniform architectures costed (with the cost table: milliseconds) to tell whether a budget can be met
_BUDGET_PROBES, _BUDGET_STREAM = 4096, 5000


def unreachable_budget(config: OneShotConfig, num_classes: int) -> str | None:
    """Why search.{min,max}_{params,flops} cannot be met, or None: not one of _BUDGET_PROBES uniform
    architectures, costed by the cost table of the network the search would export (the supernet's
    options, the data's classes and image size), is within the bounds. Checked before training:
    afterwards, the final search would find nothing to evaluate."""
    budget = config.search.budget()
    if not budget.active:
        return None
    space = get_space(config.space)
    with torch.random.fork_rng(devices=[]):  # a throw-away supernet: only its child options are read
        options = get_supernet(space, num_classes=num_classes, **config.supernet.options(config.space)).child_options()
    try:
        model = search_cost_model(space, config.data.size, options, config.search.latency_table)
    except ValueError as error:
        return f"search.latency_table: {error}"
    archs = space.sample(_BUDGET_PROBES, torch.Generator().manual_seed(config.run.seed + _BUDGET_STREAM))
    costs = model.costs(archs, check=False)
    if bool(budget.within(costs).any()):
        return None
    low, high = costs.min(dim=0).values.tolist(), costs.max(dim=0).values.tolist()
    latency = f", {low[2]:.3g}..{high[2]:.3g} ms" if costs.shape[1] > 2 else ""
    return (f"{budget.describe()}: none of {_BUDGET_PROBES} uniformly drawn {config.space} architectures is within "
            f"it (they range over {low[0]:,.0f}..{high[0]:,.0f} params, {low[1]:,.0f}..{high[1]:,.0f} FLOPs{latency} "
            f"for the network this search exports at {config.data.size} px); move the bounds, or change the "
            f"supernet's size (supernet.{config.space}.*)")


def search_cost_model(space: SearchSpace, image_size: int, options: dict[str, Any], latency_table: str) -> Any:
    """The exported network's cost table (params, FLOPs), with the latency table's column when one is
    named; ValueError when that table was measured for another network."""
    model = space.cost_model(image_size, **options)
    if not latency_table:
        return model
    return with_latency(model, load_latency_table(latency_table, space, image_size, runtime=False, **options))

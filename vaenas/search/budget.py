"""Cost budgets of a search: lower and upper bounds on the exported network's params, FLOPs and
measured latency (a latency table of vaenas.spaces.latency, milliseconds).

A Budget is checked on whole batches of architectures with the space's cost table
(vaenas.spaces.cost_table), so a search filters thousands of candidates in milliseconds and never
builds a network to count it. Every method that limits cost uses the same two functions:

    budget = Budget(max_flops=4e8, min_flops=3e8)        # a band, as SPOS's FLOPs ranges
    accept = budget_filter(space.cost_model(size, **child_options), budget)
    accept(archs)   # BoolTensor[N]: rows within every bound (None when the budget has no bound)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from vaenas.spaces.cost_table import COST_KEYS

#: accept(archs [N, T]) -> BoolTensor[N]
AcceptFn = Callable[[Tensor], Tensor]
#: the bounded quantities, in the column order of the costs a Budget checks (latency: milliseconds)
BUDGET_KEYS = (*COST_KEYS, "latency")


@dataclass(frozen=True)
class Budget:
    """Bounds on the exported network's cost, each None (no bound) or a positive number; min <= max.

    `prefix` names the config section in messages (e.g. "search": search.max_flops). Latency bounds
    need costs with a third column (with_latency).
    """

    max_params: float | None = None
    max_flops: float | None = None
    min_params: float | None = None
    min_flops: float | None = None
    prefix: str = "search"
    max_latency: float | None = None
    min_latency: float | None = None

    def __post_init__(self) -> None:
        for key in BUDGET_KEYS:
            low, high = getattr(self, f"min_{key}"), getattr(self, f"max_{key}")
            if low is not None and high is not None and low > high:
                raise ValueError(f"{self.prefix}.min_{key}: {low:g} is above {self.prefix}.max_{key} {high:g}: "
                                 "no network is within an empty band")

    @property
    def active(self) -> bool:
        return any(getattr(self, f"{bound}_{key}") is not None for key in BUDGET_KEYS for bound in ("min", "max"))

    @property
    def on_latency(self) -> bool:
        return self.max_latency is not None or self.min_latency is not None

    def within(self, costs: Tensor) -> Tensor:
        """BoolTensor[N]: rows of costs [N, 2] (params, FLOPs) or [N, 3] (+ latency ms) within every bound."""
        if self.on_latency and costs.shape[1] < len(BUDGET_KEYS):
            raise ValueError(f"{self.prefix}.max_latency / min_latency: no latency table to check them with")
        keep = torch.ones(costs.shape[0], dtype=torch.bool)
        for column, key in enumerate(BUDGET_KEYS[: costs.shape[1]]):
            low, high = getattr(self, f"min_{key}"), getattr(self, f"max_{key}")
            if low is not None:
                keep &= costs[:, column] >= low
            if high is not None:
                keep &= costs[:, column] <= high
        return keep

    def describe(self) -> str:
        """The bounds that are set, as config keys: 'search.min_flops=1e+06, search.max_flops=2e+06'."""
        return ", ".join(f"{self.prefix}.{bound}_{key}={getattr(self, f'{bound}_{key}'):g}"
                         for key in BUDGET_KEYS for bound in ("min", "max")
                         if getattr(self, f"{bound}_{key}") is not None)


def budget_filter(model: object, budget: Budget) -> AcceptFn | None:
    """accept(archs [N, T]) -> BoolTensor[N] with the cost model's batched costs (CostTable or
    NASBench101Costs: anything with costs(archs, check=...)); None when the budget has no bound."""
    if not budget.active:
        return None

    def accept(archs: Tensor) -> Tensor:
        if archs.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool)
        return budget.within(model.costs(archs, check=False))

    return accept


class WithLatency:
    """A cost model whose costs(archs) gain a third column, the latency table's milliseconds."""

    def __init__(self, model: object, latency_table: object) -> None:
        self.model, self.latency_table = model, latency_table

    def costs(self, archs: Tensor, check: bool = True) -> Tensor:
        return torch.cat([self.model.costs(archs, check), self.latency_table.costs(archs, check=False)], dim=1)

    def expected(self, probabilities: Tensor) -> Tensor:
        """[3]: expected params, FLOPs and latency (ms) under per-position token probabilities
        (CostTable.expected of both tables; the gradient search's expected-latency term)."""
        return torch.cat([self.model.expected(probabilities), self.latency_table.expected(probabilities)])

    def cost(self, arch: Tensor) -> dict[str, float]:
        params, flops, latency = self.costs(torch.as_tensor(arch).reshape(1, -1))[0].tolist()
        return {"params": params, "flops": flops, "latency_ms": latency}


def with_latency(model: object, latency_table: object | None) -> object:
    """model itself without a latency table, else WithLatency(model, latency_table)."""
    return model if latency_table is None else WithLatency(model, latency_table)

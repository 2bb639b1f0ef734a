"""The gradient search's expected-cost term (ProxylessNAS §3.3): a differentiable cost in the
architecture loss, so that w learns to trade accuracy for FLOPs, parameters or measured latency
(a latency table of vaenas.spaces.latency: ProxylessNAS's expected latency).

    E[cost](w) = fixed + Σ_t Σ_k softmax(w_t)_k · cost[t, k]   (+ NASNet's preprocessing, which exists
                                                               with probability 1 - Π P(none))

is CostTable.expected (vaenas.spaces.cost_table) on the exported network's table: the exact
expectation of the cost of an architecture drawn position by position from softmax(w). Two forms,
ProxylessNAS's two regularisers (its `mul#log` and `add#linear`, as its search code and NNI's
ProxylessNAS trainer name them):

    mul_log:     loss · (log E / log target)^β          β = gradient.cost_weight (ProxylessNAS: 0.6)
    add_linear:  loss + λ · (E - target) / target      λ = gradient.cost_weight (ProxylessNAS: 0.1)

mul_log is the default: scale-free (a ratio of logs), it pulls towards the target as strongly at 10 M
FLOPs as at 10 G, and the cross-entropy's scale sets its strength. The multiplier ProxylessNAS puts in
front of mul_log (its alpha) only rescales the whole loss, which Adam on w ignores; it is left out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaenas.search.budget import BUDGET_KEYS, WithLatency

#: the forms of the term (see the module docstring)
COST_FORMS = ("mul_log", "add_linear")


def expected_cost(table: object, logits: Tensor) -> Tensor:
    """[K] float64: the expected params and FLOPs (and latency, with a latency table) of an architecture drawn
    from softmax(w) per position
    (logits [T, K_max], −inf beyond a position's vocabulary). Differentiable in the logits."""
    return table.expected(torch.softmax(logits.double(), dim=-1))


class CostTerm:
    """loss -> loss with the expected-cost term of `metric` ('flops', 'params', or 'latency' in ms with a
    table that has a latency column: vaenas.search.budget.with_latency) towards `target`.

    weight: β of mul_log, λ of add_linear; 0 turns the term off (the loss is returned as it is).
    """

    def __init__(self, table: object, metric: str, target: float, weight: float, form: str = "mul_log") -> None:
        if metric not in BUDGET_KEYS:
            raise ValueError(f"cost metric must be one of {', '.join(BUDGET_KEYS)}, got {metric!r}")
        if metric == "latency" and not isinstance(table, WithLatency):
            raise ValueError("cost metric latency needs a table with a latency column (vaenas.search.budget."
                             "with_latency: a latency table of vaenas.spaces.latency)")
        if form not in COST_FORMS:
            raise ValueError(f"cost form must be one of {', '.join(COST_FORMS)}, got {form!r}")
        if not target > (1.0 if form == "mul_log" else 0.0):
            raise ValueError(f"cost target must be > {1 if form == 'mul_log' else 0} ({form}), got {target!r}")
        self.table, self.column = table, BUDGET_KEYS.index(metric)  # latency: a WithLatency table's third column
        self.metric, self.target, self.weight, self.form = metric, float(target), float(weight), form

    def expected(self, logits: Tensor) -> Tensor:
        """0-dim float64: E[metric] under softmax(logits)."""
        return expected_cost(self.table, logits)[self.column]

    def __call__(self, loss: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """(the architecture loss with the term, E[metric] detached); the loss keeps its dtype."""
        value = self.expected(logits)
        if self.weight == 0.0:
            return loss, value.detach()
        if self.form == "mul_log":
            factor = (torch.log(value) / math.log(self.target)) ** self.weight
            return loss * factor.to(loss.dtype), value.detach()
        penalty = self.weight * (value - self.target) / self.target
        return loss + penalty.to(loss.dtype), value.detach()

"""The optimiser of the architecture logits w [T, K]: Adam per position, as ProxylessNAS has it.

In ProxylessNAS every choice point (MixedEdge) holds its logits as a parameter of its own
(`AP_path_alpha`), and when the active op of an edge is a zero layer (`none`) set_arch_param_grad
sets that parameter's gradient to None, so Adam skips it: no step counted, no moment decayed, no
update (mit-han-lab/proxylessnas search/modules/mix_op.py). Our logits are one tensor [T, K]
(one row per position), so `PositionAdam` keeps a step count and moments per row and
`step(rows)` updates only the rows named; each row's update is torch.optim.Adam's single-tensor
update, bit for bit (tests/search/gradient/test_gradient.py).

With one torch Adam over the whole tensor a skipped row would still have its second moment
decayed and share the global step count in its bias correction (up to sqrt(2) larger steps early
on for a position whose path takes `none` half the time).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class PositionAdam(torch.optim.Optimizer):
    """Adam (no weight decay, no amsgrad) over 2-d parameters [T, K], one step count per row;
    step(rows) updates only the rows where the BoolTensor[T] `rows` is true (default all)."""

    def __init__(
        self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        if lr <= 0 or eps < 0 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"PositionAdam: lr > 0, eps >= 0 and betas in [0, 1) needed, got {lr}, {eps}, {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, rows: Tensor | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.dim() != 2:
                    raise ValueError(f"PositionAdam: parameters are [T, K], got {tuple(param.shape)}")
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros(param.shape[0])  # on the CPU, as torch's Adam keeps it
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                chosen = range(param.shape[0]) if rows is None else rows.cpu().nonzero().flatten().tolist()
                for row in chosen:
                    grad, exp_avg, exp_avg_sq = param.grad[row], state["exp_avg"][row], state["exp_avg_sq"][row]
                    state["step"][row] += 1
                    step = float(state["step"][row])
                    # torch.optim.adam._single_tensor_adam, on one row
                    exp_avg.lerp_(grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    bias_correction1 = 1 - beta1**step
                    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
                    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                    param[row].addcdiv_(exp_avg, denom, value=-(lr / bias_correction1))

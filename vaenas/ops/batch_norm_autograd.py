"""The autograd formula and the call shared by the fused segmented_batch_norm backends (C++ CPU, Triton).

Each backend is a pair of torch.library custom ops with one contract:
- forward(x, num_segments, weight?, bias?, eps, mean?, var?, activation) -> (y, mean, var), the
  statistics new [S, C] tensors (copies of the given ones in evaluation);
- backward(grad, x, weight?, bias?, mean, var, eps, num_segments, activation, training) ->
  (dx, sum_g [S, C], sum_gx [S, C]): g is the gradient before the activation, sum_gx the sum of
  g * x_hat; dbias and dweight are the two summed over segments.
The statistics are bookkeeping: non-differentiable outputs, and no gradient for given ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.library import register_autograd


def register_segmented_batch_norm_autograd(forward_op: str, backward: Callable[..., tuple[Tensor, Tensor, Tensor]]) -> None:
    """Register the autograd formula of the custom op named forward_op ("vaenas::name"), whose
    backward runs `backward` (the backend's backward op, with the contract above)."""

    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        x, num_segments, weight, bias, eps, given_mean, _, activation = inputs
        _, mean, var = output
        ctx.save_for_backward(x, weight, bias, mean, var)
        ctx.eps, ctx.num_segments, ctx.activation, ctx.training = eps, num_segments, activation, given_mean is None
        ctx.mark_non_differentiable(mean, var)

    def gradients(ctx: Any, grad_y: Tensor, grad_mean: Tensor, grad_var: Tensor) -> tuple:
        """Gradients for (x, num_segments, weight, bias, eps, mean, var, activation)."""
        x, weight, bias, mean, var = ctx.saved_tensors
        dx, sum_g, sum_gx = backward(grad_y, x, weight, bias, mean, var, ctx.eps, ctx.num_segments, ctx.activation,
                                     ctx.training)
        dweight = sum_gx.sum(0).to(weight.dtype) if weight is not None and ctx.needs_input_grad[2] else None
        dbias = sum_g.sum(0).to(bias.dtype) if bias is not None and ctx.needs_input_grad[3] else None
        return dx, None, dweight, dbias, None, None, None, None

    register_autograd(forward_op, gradients, setup_context=setup_context)


def run_fused_forward(
    forward: Callable[..., tuple[Tensor, Tensor, Tensor]], backend: str, x: Tensor, num_segments: int,
    weight: Tensor | None, bias: Tensor | None, eps: float, mean: Tensor | None, var: Tensor | None,
    activation: str | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A fused backend's forward op called as vaenas.ops.reference.segmented_batch_norm is: the given
    mean and var themselves are returned in evaluation, and a given mean or var that needs a gradient
    is refused (the fused backward gives none; `backend` names the backend in the message)."""
    if mean is not None and torch.is_grad_enabled() and (mean.requires_grad or var.requires_grad):
        raise ValueError(f"the {backend} segmented_batch_norm gives no gradient for given mean and var: detach them "
                         "or use backend='aten' or 'reference'")
    y, batch_mean, batch_var = forward(x, num_segments, weight, bias, float(eps), mean, var, activation or "none")
    return (y, batch_mean, batch_var) if mean is None else (y, mean, var)

"""Optimizer settings every training loop shares (a supernet's, a retrained child's).

- `parameter_groups`: weight decay on convolution and linear weights only; none on batch-norm
  parameters and biases (they set scales and offsets, which decay would shrink for no
  regularisation benefit);
- `learning_rate`: the per-step schedules (linear to 0 as in the paper's A.1, cosine, constant).
"""

from __future__ import annotations

import math

from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """SGD parameter groups: weight decay on conv / linear weights only, none on batch-norm
    parameters and biases (every parameter of dimension <= 1)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.dim() <= 1 else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def learning_rate(base: float, step: int, steps: int, schedule: str, warmup: int = 0) -> float:
    """The learning rate of 0-based step `step` of `steps`: linear (to 0 at the end), cosine, constant;
    the first `warmup` steps scaled up linearly, (step + 1) / warmup."""
    progress = step / steps
    if schedule == "linear":
        rate = base * (1.0 - progress)
    elif schedule == "cosine":
        rate = base * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        rate = base
    return rate * min(1.0, (step + 1) / warmup) if warmup else rate

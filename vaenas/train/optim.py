"""The optimizers of the retraining recipes: SGD (DARTS, SPOS, NAS-Bench-201) and TF1's RMSProp (NAS-Bench-101).

Weight decay goes on convolution and linear weights only (vaenas.runtime.optim.parameter_groups), or on
every parameter with train.decay_all, as the NAS-Bench-101 and -201 trainings did (an L2 term over all
trainable variables; torch SGD over model.parameters()).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vaenas.runtime.optim import parameter_groups
from vaenas.train.config import TrainConfig


class RMSpropTF(torch.optim.Optimizer):
    """TF1's tf.train.RMSPropOptimizer with momentum (not centred), the optimizer NAS-Bench-101's
    networks were trained with (google-research/nasbench lib/model_builder.py: decay 0.9, momentum 0.9,
    epsilon 1.0). Per parameter w with gradient g (plus weight_decay * w, an L2 term of the loss):

        ms  <- decay * ms + (1 - decay) * g^2          ms starts at 1 (TF's slot initialiser)
        mom <- momentum * mom + lr * g / sqrt(ms + epsilon)
        w   <- w - mom

    torch.optim.RMSprop is not this: its ms starts at 0, its epsilon is added outside the square root,
    and its learning rate scales the step after the momentum (so a decaying rate acts at once)."""

    def __init__(self, params: Iterable, lr: float, decay: float = 0.9, momentum: float = 0.9, eps: float = 1.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 (torch.optim.Optimizer's signature)
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                gradient = parameter.grad
                if group["weight_decay"]:
                    gradient = gradient.add(parameter, alpha=group["weight_decay"])
                state = self.state[parameter]
                if not state:
                    state["square_avg"] = torch.ones_like(parameter, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                square_avg, buffer = state["square_avg"], state["momentum_buffer"]
                square_avg.mul_(group["decay"]).addcmul_(gradient, gradient, value=1 - group["decay"])
                buffer.mul_(group["momentum"]).addcdiv_(gradient, (square_avg + group["eps"]).sqrt_(), value=group["lr"])
                parameter.sub_(buffer)


def make_optimizer(model: nn.Module, train: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer of train.optimizer for model's trainable parameters (fused: torch's fused SGD kernel,
    on a GPU)."""
    if train.decay_all:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": train.weight_decay}]
    else:
        groups = parameter_groups(model, train.weight_decay)
    if train.optimizer == "rmsprop_tf":
        return RMSpropTF(groups, lr=train.lr, decay=train.rmsprop_decay, momentum=train.momentum,
                         eps=train.rmsprop_epsilon)
    return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov,
                           fused=fused or None)

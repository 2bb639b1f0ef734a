"""One supernet training step of the one-shot search, as the SPOS-style implementations do it.

- SGD with momentum; `zero_grad(set_to_none=True)` before every step, so a candidate the step's
  architectures did not use keeps `grad = None`, and torch's SGD skips such parameters entirely:
  no gradient, no momentum update, no weight decay (a sampled-away op is bit-for-bit unchanged;
  with zero-filled gradients, momentum and decay would keep moving it).
- a weight shared by slices (NAS-Bench-101's channel-sliced convolutions) is likewise updated only
  in the union of the slices the step used (`sgd_step`): the entries outside them, weight and
  momentum, are bit-for-bit unchanged, as for an unused candidate.
- no weight decay on batch-norm parameters and biases (vaenas.runtime.optim.parameter_groups);
- label smoothing, a learning rate decayed per step (linear to 0 as in the paper's A.1;
  vaenas.runtime.optim.learning_rate) after an optional linear warm-up, optional gradient-norm clipping
  (both help a full-depth supernet under uniform paths: issue 18, scripts/supernet_curves.py);
- channels-last images and weights (faster on the CPU as well); on a GPU, bf16 autocast.

Multi-process: see `allreduce_used_gradients`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.sgd import sgd

from vaenas.runtime.optim import learning_rate, parameter_groups
from vaenas.supernet.base import Block, SlicedWeight, take_used_slices

#: bytes per all-reduce bucket (DDP's default bucket size)
BUCKET_BYTES = 25 << 20


def allreduce_used_gradients(parameters: list[nn.Parameter], world_size: int) -> None:
    """Average across ranks the gradients of the parameters this step used, in flat buckets.

    Why not DistributedDataParallel: DDP all-reduces a fixed bucket layout of EVERY parameter and,
    when a step leaves some unused (every step of a one-shot supernet does), needs
    find_unused_parameters=True, which walks the autograd graph after each forward to mark them
    and still reduces their (zero) slots of every bucket; on this repository's supernets its
    reducer even fails ("Encountered gradient which is undefined, but still allreduced", measured
    with bench/oneshot_allreduce.py). Here every rank draws the same architectures from the same
    seed, so the set of parameters with a gradient is identical on every rank and in the same
    order: all-reducing exactly those is correct, needs no graph walk, sends only the used
    weights, and leaves unused ones with grad None (so SGD skips them). Measured on 2 gloo ranks
    (NB201 supernet C=16, 2 cells/stage, 32 images of 16 px, a busy 2-core CPU): 14.9 ms of sync
    per step for the used gradients against 22.0 ms for all-reducing every parameter, i.e. less
    than a run with no unused parameters would pay.
    """
    if world_size == 1:
        return
    for bucket in _buckets([p.grad for p in parameters if p.grad is not None]):
        flat = torch.cat([grad.reshape(-1) for grad in bucket])
        dist.all_reduce(flat)
        flat.div_(world_size)
        for target, reduced in zip(bucket, flat.split([grad.numel() for grad in bucket])):
            target.copy_(reduced.view_as(target))


def _buckets(grads: list[Tensor]) -> Iterator[list[Tensor]]:
    """Consecutive runs of tensors of one dtype and about BUCKET_BYTES."""
    bucket: list[Tensor] = []
    size = 0
    for grad in grads:
        if bucket and (grad.dtype != bucket[0].dtype or size >= BUCKET_BYTES):
            yield bucket
            bucket, size = [], 0
        bucket.append(grad)
        size += grad.numel() * grad.element_size()
    if bucket:
        yield bucket


@torch.no_grad()
def sgd_step(optimizer: torch.optim.SGD, blocks: dict[nn.Parameter, list[Block]]) -> None:
    """optimizer.step(), except that a parameter in `blocks` is updated only in weight[block] for its
    blocks: momentum, weight decay and the step act on those views with torch's own SGD function
    (torch.optim.sgd.sgd) and nothing else of the parameter or its momentum buffer is touched. No
    copy of a whole tensor: the views are of the parameter, its gradient and its buffer."""
    hidden = []
    for group in optimizer.param_groups:
        params, grads, buffers = [], [], []
        for parameter in group["params"]:
            if parameter not in blocks or parameter.grad is None:
                continue
            if group["dampening"]:  # a zero buffer stands for "no momentum yet", which needs dampening 0
                raise ValueError("sliced SGD steps need dampening = 0")
            state = optimizer.state[parameter]
            if group["momentum"] and state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
            for block in blocks[parameter]:
                params.append(parameter.detach()[block])
                grads.append(parameter.grad[block])
                buffers.append(state["momentum_buffer"][block] if group["momentum"] else None)
            hidden.append((parameter, parameter.grad))
            parameter.grad = None  # so that optimizer.step() skips it
        if params:
            sgd(
                params, grads, buffers, foreach=group["foreach"], weight_decay=group["weight_decay"],
                momentum=group["momentum"], lr=group["lr"], dampening=group["dampening"],
                nesterov=group["nesterov"], maximize=group["maximize"],
            )
    optimizer.step()
    for parameter, grad in hidden:
        parameter.grad = grad


class Trainer:
    """Trains a supernet on (images [G*b, ...], labels [G*b], archs [G, T]) steps."""

    def __init__(
        self,
        supernet: nn.Module,
        *,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        label_smoothing: float,
        steps: int,
        schedule: str,
        device: torch.device,
        bf16: bool,
        world_size: int = 1,
        warmup: int = 0,
        grad_clip: float | None = None,
    ) -> None:
        self.supernet, self.device, self.world_size = supernet, device, world_size
        self.warmup, self.grad_clip = warmup, grad_clip
        self.base_lr, self.steps, self.schedule, self.label_smoothing = lr, steps, schedule, label_smoothing
        self.gpu = device.type == "cuda"
        self.autocast_dtype = torch.bfloat16 if (self.gpu and bf16) else None
        # channels-last on the CPU too: a training step at one thread took 0.21 s instead of 0.35 (NB201,
        # C = 16, N = 5, 32 images of 32 px), 0.35 instead of 0.69 (NASNet C = 8, 5 cells), 1.3x on
        # ShuffleNet and NB101 (issue 19): oneDNN's convolutions, pooling and batch norm are faster in it
        supernet.to(memory_format=torch.channels_last)
        self.parameters = [p for p in supernet.parameters() if p.requires_grad]
        self.sliced = [m for m in supernet.modules() if isinstance(m, SlicedWeight)]
        self.optimizer = torch.optim.SGD(
            parameter_groups(supernet, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov
        )

    def step(self, index: int, images: Tensor, labels: Tensor, archs: Tensor) -> Tensor:
        """Training step `index` (0-based) on one batch; returns the loss (a 0-dim tensor, not synced)."""
        lr = learning_rate(self.base_lr, index, self.steps, self.schedule, self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        images = images.contiguous(memory_format=torch.channels_last)
        self.supernet.train()
        self.optimizer.zero_grad(set_to_none=True)  # unused candidates keep grad None: SGD skips them
        take_used_slices(self.sliced)  # forget slices used by forwards before this step's
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            logits = self.supernet(images, archs)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        loss.backward()
        allreduce_used_gradients(self.parameters, self.world_size)
        if self.grad_clip:  # the same on every rank: the gradients are reduced already
            torch.nn.utils.clip_grad_norm_([p for p in self.parameters if p.grad is not None], self.grad_clip)
        sgd_step(self.optimizer, take_used_slices(self.sliced))
        return loss.detach()

"""Scoring architectures on a supernet, many per pass (SPOS evaluation with the G-group forward).

For each chunk of G architectures: batch-norm statistics are recalibrated for each of them as the
mean and variance of every value a layer saw over the recalibration images (replicated once per
group; a batch counts by its images, so a smaller last batch weighs what it holds), then the
held-out images (replicated likewise) are classified in eval mode with each group's own
statistics. A score depends only on the supernet's weights and the images: not on G or on the
other architectures of its chunk (tests/supernet/test_evaluation.py, all four supernets), nor on
how many ranks share the work (tests/search/oneshot/test_oneshot_distributed.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vaenas.supernet.base import Supernet, clear_group_statistics, recalibrate

#: (images [b, C, H, W] float, labels [b] int64)
Batch = tuple[Tensor, Tensor]


@dataclass
class Scores:
    """accuracy [N] (%) and mean cross-entropy loss [N] of N architectures, float64 on the CPU."""

    accuracy: Tensor
    loss: Tensor


def _replicate(images: Tensor, groups: int, device: torch.device, memory_format: torch.memory_format) -> Tensor:
    """[b, ...] -> [groups*b, ...]: the same images once per group, group-major, in the supernet's memory format."""
    images = images.to(device, non_blocking=True)
    return images.repeat(groups, *([1] * (images.dim() - 1))).contiguous(memory_format=memory_format)


def _memory_format(supernet: Supernet) -> torch.memory_format:
    """channels_last when the supernet's first convolution weight is laid out so (the trainer's choice)."""
    weight = next((p for p in supernet.parameters() if p.dim() == 4), None)
    if weight is not None and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@torch.no_grad()
def evaluate_architectures(
    supernet: Supernet,
    archs: Tensor,
    calibration: Iterable[Batch],
    holdout: Iterable[Batch],
    group_size: int = 16,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Scores:
    """Scores of archs LongTensor[N, T], `group_size` architectures per forward pass.

    calibration, holdout: re-iterable batches (the same images in the same order every time).
    autocast_dtype: e.g. torch.bfloat16 on a GPU (statistics stay float32 in the batch norms).
    group_size = 1 is the one-architecture-at-a-time SPOS loop.
    progress(done, total): called after each chunk (long evaluations show progress).
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    archs = supernet.space.check_tokens(archs)
    device = torch.device(device) if device is not None else next(supernet.parameters()).device
    was_training = supernet.training
    correct = torch.zeros(len(archs), dtype=torch.float64)
    loss_sum = torch.zeros(len(archs), dtype=torch.float64)
    count = 0
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    memory_format = _memory_format(supernet)
    try:
        for start in range(0, len(archs), group_size):
            chunk = archs[start : start + group_size]
            groups = len(chunk)
            with autocast, recalibrate(supernet, groups):
                for images, _ in calibration:
                    supernet(_replicate(images, groups, device, memory_format), chunk)
            supernet.eval()
            count = 0
            for images, labels in holdout:
                with autocast:
                    logits = supernet(_replicate(images, groups, device, memory_format), chunk).float()
                labels = labels.to(device)
                logits = logits.view(groups, len(labels), -1)
                targets = labels.repeat(groups).view(groups, -1)
                losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(groups, -1)
                correct[start : start + groups] += (logits.argmax(-1) == targets).sum(1).double().cpu()
                loss_sum[start : start + groups] += losses.sum(1).double().cpu()
                count += len(labels)
            clear_group_statistics(supernet)
            if progress is not None:
                progress(start + groups, len(archs))
    finally:
        clear_group_statistics(supernet)
        supernet.train(was_training)
    if count == 0:
        raise ValueError("the held-out set is empty: nothing to score the architectures on")
    return Scores(accuracy=100.0 * correct / count, loss=loss_sum / count)

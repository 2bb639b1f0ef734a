"""Collectives of the weight-sharing searches besides their gradient all-reduce (one-shot, gradient).

- `split_evaluate`: evaluations (a refit's N_s, an evolution's generation) split into contiguous
  chunks, one per rank, gathered in order on every rank. A supernet score does not depend on the
  rank that computes it (vaenas.supernet.evaluation), so the gathered scores equal a single-process run's.
- `check_identical`: a float64 checksum of some tensors compared across ranks (every rank fits
  the same VAE from the same data and seeds; a mismatch means the ranks diverged).
- `broadcast_buffers`: batch-norm running statistics from rank 0 (each rank saw its own shard of
  images; the statistics only serve export without recalibration, so syncing them at refits and
  at the end is enough).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def split_evaluate(evaluate: Callable[[Tensor], Tensor], archs: Tensor) -> Tensor:
    """evaluate(archs [n, T]) -> scores [n] float64, the rows split across ranks: scores [N] on every rank."""
    rank, world = _world()
    if world == 1:
        return evaluate(archs)
    bounds = [len(archs) * r // world for r in range(world + 1)]
    mine = archs[bounds[rank] : bounds[rank + 1]]
    scores = evaluate(mine) if len(mine) else torch.empty(0, dtype=torch.float64)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, scores.double().cpu())
    return torch.cat(gathered)


def checksum(tensors: Iterable[Tensor]) -> float:
    """A float64 checksum: sum over tensors of sum(x * (1 + position/numel)) (order-sensitive)."""
    total = 0.0
    for tensor in tensors:
        values = tensor.detach().double().flatten().cpu()
        weights = 1.0 + torch.arange(len(values), dtype=torch.float64) / max(len(values), 1)
        total += float((values * weights).sum())
    return total


def check_identical(value: float, what: str) -> None:
    """RuntimeError naming `what` unless every rank passes the same value."""
    rank, world = _world()
    if world == 1:
        return
    gathered: list = [None] * world
    dist.all_gather_object(gathered, value)
    if any(v != gathered[0] for v in gathered):
        raise RuntimeError(f"{what} differs across ranks (checksums {gathered}): the ranks diverged")


def broadcast_buffers(module: nn.Module) -> None:
    """Every floating buffer (batch-norm running statistics) of `module` from rank 0, one flat broadcast."""
    rank, world = _world()
    if world == 1:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().flatten().float() for b in buffers])
    dist.broadcast(flat, 0)
    offset = 0
    for buffer in buffers:
        buffer.copy_(flat[offset : offset + buffer.numel()].view_as(buffer))
        offset += buffer.numel()


def union_across_ranks(items: Iterable[str]) -> set[str]:
    """The union over ranks of every rank's `items` (e.g. the files each skipped), on every rank."""
    rank, world = _world()
    if world == 1:
        return set(items)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, sorted(items))
    return set().union(*gathered)

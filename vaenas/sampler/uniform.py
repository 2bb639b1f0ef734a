"""The uniform sampler U(α) over the valid architectures of a space (the baseline, DESIGN §1),
and the rejection loop that every sampler uses for its `accept` filter."""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from torch import Tensor

from vaenas.spaces.base import SearchSpace

logger = logging.getLogger(__name__)

#: accept(archs LongTensor[M, T]) -> BoolTensor[M]: which rows a caller takes (e.g. a FLOPs limit)
AcceptFn = Callable[[Tensor], Tensor]


def accepted_rows(accept: AcceptFn, archs: Tensor) -> Tensor:
    """accept(archs), checked to be a BoolTensor[M], on the CPU."""
    keep = torch.as_tensor(accept(archs))
    if keep.shape != (len(archs),) or keep.dtype != torch.bool:
        raise ValueError(f"accept must return a BoolTensor[{len(archs)}], got {keep.dtype} {tuple(keep.shape)}")
    return keep.cpu()


def rejection_sample(
    draw: Callable[[int], Tensor], keep: Callable[[Tensor], Tensor], n: int, length: int, max_rounds: int, who: str
) -> Tensor:
    """n rows of draw(count) -> LongTensor[count, T] that keep(rows) -> BoolTensor accepts.

    Later rounds draw as many rows as the acceptance rate seen so far says are needed (at most 64
    per missing row), so a selective filter costs a few large draws, not many small ones.
    RuntimeError naming `who` if fewer than n rows were accepted after max_rounds rounds.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    kept: list[Tensor] = [torch.empty(0, length, dtype=torch.long)]
    have = drawn = accepted = 0
    for _ in range(max_rounds):
        if have >= n:
            break
        needed = n - have
        rate = accepted / drawn if drawn else 1.0
        count = min(math.ceil(needed / max(rate, 1e-3) * 1.1), 64 * needed) if drawn else needed
        archs = draw(count)
        mask = keep(archs)
        drawn, accepted = drawn + count, accepted + int(mask.sum())
        kept.append(archs[mask][:needed])
        have += len(kept[-1])
    if have < n:
        raise RuntimeError(
            f"{who}: only {have} of {n} architectures were valid and accepted after {max_rounds} rounds "
            f"({accepted} of {drawn} drawn); relax `accept` or raise max_rounds"
        )
    return torch.cat(kept)


class UniformSampler:
    """U(α): the space's own uniform sampler, with the `accept` filter of the other samplers."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        accept: AcceptFn | None = None,
        max_rounds: int = 20,
    ) -> Tensor:
        """n architectures, LongTensor[n, T]; rows that accept(archs) -> BoolTensor[M] rejects are
        drawn again, up to max_rounds rounds, then RuntimeError."""
        if accept is None:
            if n < 0:
                raise ValueError(f"n must be >= 0, got {n}")
            return self.space.sample(n, generator)
        return rejection_sample(
            lambda count: self.space.sample(count, generator),
            lambda archs: accepted_rows(accept, archs),
            n, self.space.length, max_rounds, "UniformSampler",
        )

"""Drawing architectures that are new: repeats rejected, the sampler drawn again, hotter each time.

A VAE fitted on a few architectures mostly repeats them (issue 9 measured 80-97 % of draws in the
tabular loop; 16 seeds of the one-shot demo's VAE held 3 distinct architectures), so whoever needs
n distinct new ones draws again, each draw at a higher decoder temperature. The tabular VAENAS
loop (vaenas.search.tabular.loop) draws its rounds with `draw_new`, the tabular oracle keeps
its queries new with `first_new`, and the one-shot search draws its evolution's seeds with it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Sequence

import torch
from torch import Tensor

from vaenas.spaces.base import SearchSpace

#: sample(m, temperature) -> LongTensor[m, T]; a sampler without a temperature ignores it
TemperedSample = Callable[[int, float], Tensor]


def first_new(archs: Tensor, keys: Sequence[Hashable], seen: Container[Hashable], limit: int) -> Tensor:
    """The rows of archs [M, T] whose key (keys[i] of row i) is not in `seen`, first occurrence
    only, at most `limit`, in their order."""
    keep, taken = [], set()
    for row, key in enumerate(keys):
        if len(keep) == limit:
            break
        if key not in seen and key not in taken:
            taken.add(key)
            keep.append(row)
    return archs[torch.tensor(keep, dtype=torch.long)]


def draw_new(
    sample: TemperedSample,
    n: int,
    space: SearchSpace,
    *,
    rounds: int,
    factor: int = 2,
    seen: Container[Hashable] = (),
    found: Tensor | None = None,
    temperature: float = 1.0,
    growth: float = 1.0,
    temperatures: list[float] | None = None,
) -> Tensor:
    """At most n distinct rows [n', T] of `sample` whose space.canonical_key is not in `seen`.

    Up to `rounds` calls of sample(factor · still missing, t), t = temperature · growth^k at the
    k-th call (each appended to `temperatures` when given): repeats of `seen` or of rows already
    found are dropped and the sampler drawn again, hotter. `found` (distinct, not in `seen`) are
    kept first and count towards n. Fewer than n rows means `rounds` calls found no more; the
    caller tops up (uniformly, in the searches).
    """
    if found is None:
        found = torch.empty(0, space.length, dtype=torch.long)
    for k in range(rounds):
        if len(found) >= n:
            break
        t = temperature * growth**k
        if temperatures is not None:
            temperatures.append(t)
        candidates = torch.cat([found, sample(factor * (n - len(found)), t)])
        found = first_new(candidates, space.canonical_key(candidates), seen, n)
    return found

"""Binary gates for a supernet forward of the gradient search (paper §4.3, ProxylessNAS).

`supernet(images, archs, gates=Gates(...))` with archs [1, T] runs archs[0] as usual, but every
choice point goes through vaenas.ops.gated_mixed_op instead of vaenas.ops.route, so that the
architecture logits receive the gate-gradient estimator. The gates are an argument of forward,
like the architecture (STYLE: no state set on modules before the call).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vaenas import ops


@dataclass(frozen=True)
class Gates:
    """logits [T, K] (position t uses logits[t, :vocab_sizes[t]]); mode "full" or "two";
    other LongTensor[T] (CPU): mode two's second path at every position, else None; backend: of
    gated_mixed_op (None: the fastest; "reference" runs and stores every gated candidate, which
    bench/bench_gated.py uses as the DARTS-style and naive two-path baselines)."""

    logits: Tensor
    mode: str
    other: Tensor | None = None
    backend: str | None = None

    def positions(self, start: int, stop: int) -> Gates:
        """The gates of positions start..stop-1 (a NASNet cell's slice of the 28 tokens)."""
        other = None if self.other is None else self.other[start:stop]
        return Gates(self.logits[start:stop], self.mode, other, self.backend)

    def reads(self, tokens: Tensor) -> Tensor:
        """tokens [1, P] with each `none` (0) replaced by the token whose gate gradient is also
        computed there: whether an edge needs its input (NASNet's preprocessing). Mode full: every
        candidate is recomputed, so every edge reads (token 1)."""
        if self.mode == "full":
            return torch.ones_like(tokens)
        return torch.where(tokens != 0, tokens, self.other[None, : tokens.shape[1]])

    def choice(
        self,
        x: Tensor | None,
        segments: Tensor,
        position: int,
        active: int,
        candidates: Sequence[Callable[..., Tensor] | None],
        none_shape: Sequence[int] | None = None,
    ) -> Tensor | None:
        """The choice point at `position` on x [b, *] with candidates(x, segments) (None: `none`).
        Returns None only when nothing on the path or in the gate gradients reads x (x is None)."""
        if x is None:
            return None
        bound = [None if c is None else functools.partial(c, segments=segments) for c in candidates]
        other = None if self.mode == "full" else int(self.other[position])
        logits = self.logits[position, : len(candidates)]
        return ops.gated_mixed_op(x, bound, active, logits, self.mode, other, none_shape, backend=self.backend)


def check_single_path(archs: Tensor, gates: Gates | None) -> None:
    """Gated forwards run one architecture (G = 1): ValueError otherwise."""
    if gates is not None and archs.shape[0] != 1:
        raise ValueError(f"a gated forward runs one architecture (archs [1, T]), got {archs.shape[0]}")

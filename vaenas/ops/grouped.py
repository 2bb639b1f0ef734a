"""The grouped supernet forward (DESIGN §4, op family 2): routing and segmented batch norm.

A supernet's `forward(images, archs)` takes archs [G, T] and a batch of G equal consecutive groups
(segments); group g runs archs[g]. Inside, a tensor carries S <= G segments, and `segments`
(LongTensor[S], on the CPU) names the global group of each. These functions are the op boundary
that fused kernels replace later; their specification is vaenas.ops.reference.

- `route`: a choice point (an edge or a choice block): every candidate runs once, on the
  concatenation of the segments that chose it (gather, candidate, scatter back).
- `segmented_batch_norm`: batch norm with per-segment statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vaenas.ops import reference
from vaenas.ops._dispatch import choose_backend

IMPLEMENTED_BACKENDS = ("reference", "aten")

#: a candidate op of a choice point: (x [s*b, *], segments [s]) -> y [s*b, *']
Candidate = Callable[[Tensor, Tensor], Tensor]


def segmented_batch_norm(
    x: Tensor,
    num_segments: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float = 1e-5,
    mean: Tensor | None = None,
    var: Tensor | None = None,
    *,
    backend: str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Batch norm of x [S*b, C, *] with per-segment statistics: (y like x, mean [S, C], var [S, C]).

    Training / recalibration: mean, var None, each segment normalised with its own batch
    statistics (biased variance), which are returned (as bookkeeping: no gradient flows through
    them on the aten backend). Evaluation: mean, var [S, C] given.
    See reference.segmented_batch_norm (the specification). Backends: reference, aten.
    """
    chosen = choose_backend("segmented_batch_norm", x.device, backend, IMPLEMENTED_BACKENDS)
    if x.dim() < 2:
        raise ValueError(f"segmented_batch_norm takes [S*b, C, *], got shape {tuple(x.shape)}")
    if num_segments < 1 or x.shape[0] % num_segments:
        raise ValueError(f"a batch of {x.shape[0]} rows does not split into {num_segments} equal segments")
    if (mean is None) != (var is None):
        raise ValueError("give both mean and var, or neither")
    if mean is not None and (mean.shape != (num_segments, x.shape[1]) or var.shape != mean.shape):
        raise ValueError(
            f"mean and var must be [S, C] = [{num_segments}, {x.shape[1]}], got {tuple(mean.shape)}, {tuple(var.shape)}"
        )
    if chosen == "aten":
        return _segmented_batch_norm_aten(x, num_segments, weight, bias, eps, mean, var)
    return reference.segmented_batch_norm(x, num_segments, weight, bias, eps, mean, var)


def _segmented_batch_norm_aten(
    x: Tensor, num_segments: int, weight: Tensor | None, bias: Tensor | None, eps: float,
    mean: Tensor | None, var: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """PyTorch's fused batch norm (cuDNN / the ATen CPU kernel) on the S segments seen as S*C
    channels of one batch [b, S*C, *]: one kernel instead of the reference's chain of elementwise
    passes (a G = 1 supernet step was 1.3-1.6x its child's time with the reference, ~1.1x with
    this; tests/supernet). S > 1 costs a transposed copy in and out."""
    rows, channels = x.shape[0] // num_segments, x.shape[1]
    merged = x if num_segments == 1 else x.unflatten(0, (num_segments, rows)).transpose(0, 1).flatten(1, 2)
    if x.dtype in (torch.float16, torch.bfloat16):
        # float32 weights select the mixed-precision kernels, which keep float32 statistics
        weight = weight if weight is not None else x.new_ones(channels, dtype=torch.float32)
        bias = bias if bias is not None else x.new_zeros(channels, dtype=torch.float32)
    if num_segments > 1:
        weight = weight.repeat(num_segments) if weight is not None else None
        bias = bias.repeat(num_segments) if bias is not None else None
    if mean is None:
        y, mean, inverse_std = torch.ops.aten._native_batch_norm_legit(merged, weight, bias, True, 0.0, eps)
        mean, var = mean.view(num_segments, channels), (inverse_std.pow(-2) - eps).view(num_segments, channels)
    else:
        y = F.batch_norm(merged, mean.flatten(), var.flatten(), weight, bias, False, 0.0, eps)
    if num_segments > 1:
        y = y.unflatten(1, (num_segments, channels)).transpose(0, 1).flatten(0, 1)
    return y, mean, var


def route(x: Tensor, segments: Tensor, choice: Tensor, candidates: Sequence[Candidate | None]) -> Tensor | None:
    """The output of a choice point: segment s of x runs candidates[choice[s]].

    x [S*b, *]; segments LongTensor[S] (global group of each segment, passed on to candidates);
    choice LongTensor[S] on the CPU, the candidate index of each segment. A None candidate
    contributes nothing (the `none` op): its segments are zeros in the output, and when every
    segment chose a None candidate the result is None (the caller skips the term).
    Each candidate runs at most once per call, whatever S is; with one distinct choice there is
    no gather or scatter at all (G = 1, the ordinary SPOS step).
    """
    num_segments = len(segments)
    if choice.shape != (num_segments,):
        raise ValueError(f"choice must be [S] = [{num_segments}], got {tuple(choice.shape)}")
    chosen = torch.unique(choice).tolist()
    if len(chosen) == 1:
        candidate = candidates[chosen[0]]
        return None if candidate is None else candidate(x, segments)
    parts, positions, zero_positions = [], [], []
    for k in chosen:
        where = (choice == k).nonzero().flatten()
        if candidates[k] is None:
            zero_positions.append(where)
            continue
        inputs = reference.gather_segments(x, where.to(x.device), num_segments)
        parts.append(candidates[k](inputs, segments[where]))
        positions.append(where)
    if not parts:
        return None
    if zero_positions:
        where = torch.cat(zero_positions)
        rows = parts[0].shape[0] // len(positions[0]) * len(where)
        parts.append(parts[0].new_zeros((rows,) + parts[0].shape[1:]))
        positions.append(where)
    return reference.scatter_segments(parts, [p.to(x.device) for p in positions], num_segments)

"""The C++ CPU backend of segmented_batch_norm (csrc/cpu/segmented_batch_norm.cpp): fakes and the
autograd formula of torch.ops.vaenas.segmented_batch_norm_forward / _backward.

Registered only when vaenas._C is loaded and was built with these ops (an extension built before
them still loads; the dispatch then says why the cpu backend cannot run, see `missing_reason`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaenas import _extension
from vaenas.ops.batch_norm_autograd import (
    register_segmented_batch_norm_autograd,
    run_fused_forward,
)

FORWARD, BACKWARD = "segmented_batch_norm_forward", "segmented_batch_norm_backward"


def missing_reason() -> str | None:
    """Why the C++ ops cannot run (None when they can)."""
    if not _extension.available():
        return "vaenas._C does not load"
    if not hasattr(torch.ops.vaenas, FORWARD):
        return "vaenas._C was built without segmented_batch_norm_forward (rebuild: pip install --no-build-isolation -e .)"
    return None


def _kernel_layout(x: Tensor) -> Tensor:
    """x as the C++ kernels read it: contiguous or channels-last where it is, else a copy's layout."""
    if x.is_contiguous():
        return x
    if (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)) or (
        x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d)
    ):
        return x
    return x.contiguous()


def _forward_fake(
    x: Tensor, num_segments: int, weight: Tensor | None, bias: Tensor | None, eps: float,
    mean: Tensor | None, var: Tensor | None, activation: str,
) -> tuple[Tensor, Tensor, Tensor]:
    x = _kernel_layout(x)
    stats = x.new_empty((num_segments, x.shape[1]), dtype=torch.promote_types(x.dtype, torch.float32))
    return torch.empty_like(x), stats, torch.empty_like(stats)


def _backward_fake(
    grad: Tensor, x: Tensor, weight: Tensor | None, bias: Tensor | None, mean: Tensor, var: Tensor,
    eps: float, num_segments: int, activation: str, training: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    x = _kernel_layout(x)
    sums = x.new_empty((num_segments, x.shape[1]), dtype=torch.promote_types(x.dtype, torch.float32))
    return torch.empty_like(x), sums, torch.empty_like(sums)


if missing_reason() is None:
    torch.library.register_fake(f"vaenas::{FORWARD}")(_forward_fake)
    torch.library.register_fake(f"vaenas::{BACKWARD}")(_backward_fake)
    register_segmented_batch_norm_autograd(f"vaenas::{FORWARD}", torch.ops.vaenas.segmented_batch_norm_backward)


def segmented_batch_norm_cpu(
    x: Tensor, num_segments: int, weight: Tensor | None, bias: Tensor | None, eps: float,
    mean: Tensor | None, var: Tensor | None, activation: str | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """vaenas.ops.reference.segmented_batch_norm on CPU tensors, fused: same results; statistics in
    float32 (float64 for float64 x); the given mean and var themselves are returned in evaluation."""
    return run_fused_forward(torch.ops.vaenas.segmented_batch_norm_forward, "C++", x, num_segments, weight, bias, eps,
                             mean, var, activation)

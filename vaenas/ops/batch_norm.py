"""vaenas.ops.segmented_batch_norm: batch norm with per-segment statistics, and the activation that
follows it (the grouped supernet forward, DESIGN §4, op family 2).

A tensor of the grouped forward carries S segments of b consecutive rows; each segment is its
own batch-norm group. The specification is vaenas.ops.reference.segmented_batch_norm. Backends:
- reference: the specification;
- aten: PyTorch's fused batch norm on views of each segment (memory format kept), then the
  activation;
- cpu: one fused C++ kernel forward and one backward (csrc/cpu/segmented_batch_norm.cpp), the
  CPU default when vaenas._C has it;
- triton: one fused kernel forward and one backward (kernels/segmented_batch_norm.py); on CUDA
  tensors only when asked for (backend="triton" or VAENAS_BACKEND=triton) until it has passed
  its tests on a GPU, on CPU tensors only under TRITON_INTERPRET=1 (tests).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from vaenas.ops import reference
from vaenas.ops._dispatch import choose_backend

IMPLEMENTED_BACKENDS = ("reference", "aten", "cpu", "triton")
ACTIVATIONS = (None, "relu", "silu")


def segmented_batch_norm(
    x: Tensor,
    num_segments: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float = 1e-5,
    mean: Tensor | None = None,
    var: Tensor | None = None,
    *,
    activation: str | None = None,
    backend: str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """activation(batch norm of x [S*b, C, *] with per-segment statistics): (y like x, mean [S, C], var [S, C]).

    Training / recalibration: mean, var None, each segment normalised with its own batch
    statistics (biased variance), which are returned (as bookkeeping: no gradient flows through
    them on the aten and triton backends). Evaluation: mean, var [S, C] given.
    activation: None, "relu" or "silu" ("swish" is accepted as its other name).
    See reference.segmented_batch_norm (the specification).
    """
    activation = "silu" if activation == "swish" else activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be None, 'relu', 'silu' or 'swish', got {activation!r}")
    _check_shapes(x, num_segments, mean, var)
    chosen = _choose(x, backend)
    if chosen == "aten":
        y, mean, var = _segmented_batch_norm_aten(x, num_segments, weight, bias, eps, mean, var)
        return _activate(y, activation), mean, var
    if chosen == "cpu":
        from vaenas.ops.batch_norm_cpu import segmented_batch_norm_cpu

        return segmented_batch_norm_cpu(x, num_segments, weight, bias, eps, mean, var, activation)
    if chosen == "triton":
        from vaenas.kernels.segmented_batch_norm import segmented_batch_norm_triton

        return segmented_batch_norm_triton(x, num_segments, weight, bias, eps, mean, var, activation)
    return reference.segmented_batch_norm(x, num_segments, weight, bias, eps, mean, var, activation)


def _choose(x: Tensor, backend: str | None) -> str:
    """The backend. Automatically never Triton on CUDA yet (not run on a GPU: opt-in), and the C++
    one only when vaenas._C has its ops (an older build falls back to aten; forced, it is an error)."""
    requested = backend or os.environ.get("VAENAS_BACKEND") or None
    chosen = choose_backend("segmented_batch_norm", x.device, backend, IMPLEMENTED_BACKENDS)
    automatic = ("reference", "aten")
    if chosen == "triton" and requested != "triton":
        chosen = choose_backend("segmented_batch_norm", x.device, None, automatic)
    if chosen == "cpu":
        from vaenas.ops.batch_norm_cpu import missing_reason

        reason = missing_reason()
        if reason is not None and requested == "cpu":
            raise RuntimeError(f"backend 'cpu' cannot run segmented_batch_norm on {x.device}: {reason}")
        if reason is not None:
            chosen = choose_backend("segmented_batch_norm", x.device, None, automatic)
    return chosen


def _check_shapes(x: Tensor, num_segments: int, mean: Tensor | None, var: Tensor | None) -> None:
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


def _activate(y: Tensor, activation: str | None) -> Tensor:
    """The activation on the batch norm's output. ReLU in place: the batch norm's backward reads its
    input, not y, and relu's reads its own result, so no extra buffer."""
    if activation == "relu":
        return F.relu(y, inplace=True)
    if activation == "silu":
        return F.silu(y)  # its backward reads its input: not in place
    return y


def _segmented_batch_norm_aten(
    x: Tensor, num_segments: int, weight: Tensor | None, bias: Tensor | None, eps: float,
    mean: Tensor | None, var: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """PyTorch's fused batch norm (cuDNN / the ATen CPU kernel) on each segment, a view of x in its
    own memory format (channels-last stays channels-last): a G = 1 supernet step was 1.3-1.6x its
    child's time with the reference's chain of elementwise passes, ~1.1x with this (tests/supernet).
    With given statistics (evaluation) one pass over x: y = x * scale[s, c] + shift[s, c]."""
    channels = x.shape[1]
    if x.dtype in (torch.float16, torch.bfloat16):
        # float32 weights select the mixed-precision kernels, which keep float32 statistics
        weight = weight if weight is not None else x.new_ones(channels, dtype=torch.float32)
        bias = bias if bias is not None else x.new_zeros(channels, dtype=torch.float32)
    if mean is None:
        parts = [torch.ops.aten._native_batch_norm_legit(part, weight, bias, True, 0.0, eps)
                 for part in x.chunk(num_segments)]
        y = parts[0][0] if num_segments == 1 else torch.cat([part[0] for part in parts])
        mean = torch.stack([part[1] for part in parts])
        var = torch.stack([part[2] for part in parts]).pow(-2) - eps
        return y, mean, var
    if num_segments == 1:
        return F.batch_norm(x, mean[0], var[0], weight, bias, False, 0.0, eps), mean, var
    compute = torch.promote_types(x.dtype, torch.float32)
    scale = torch.rsqrt(var.to(compute) + eps)  # [S, C]
    if weight is not None:
        scale = scale * weight.to(compute)
    shift = -mean.to(compute) * scale
    if bias is not None:
        shift = shift + bias.to(compute)
    shape = (num_segments, 1, channels) + (1,) * (x.dim() - 2)  # broadcast over [S, b, C, *]
    y = torch.addcmul(shift.view(shape), x.unflatten(0, (num_segments, -1)), scale.view(shape))
    return y.flatten(0, 1).to(x.dtype), mean, var

"""Triton backend of vaenas.ops.segmented_batch_norm: batch norm per segment + activation, fused.

The specification is vaenas.ops.reference.segmented_batch_norm. x [S*b, C, *spatial] is read as
a strided [N, C, L] view (L = the spatial size): NCHW has strides (C*L, L, 1), channels-last
(L*C, 1, C); both are read and written where they lie, y gets x's strides, and nothing is
transposed. Any other layout whose spatial dimensions do not merge into one stride is copied
once to contiguous (documented, never silent about results).

One program owns one segment and a block of channels: a reduction over the segment's b*L
values per channel needs no cross-program communication, which keeps the kernel simple and
deterministic. Forward (training): pass 1 sums (mean), pass 2 centred squares (variance; two
passes rather than sum-of-squares, which cancels in float32 for large means), pass 3
normalises, applies the affine map and the activation, stores y. With given statistics
(evaluation) only pass 3 runs. Backward recomputes z = x * scale + shift from x (nothing but the
[S, C] statistics is saved), takes the activation's derivative, and per segment: pass 1 the
sums of g and g * x_hat, pass 2 dx = w * rstd * (g - mean(g) - x_hat * mean(g * x_hat))
(training) or w * rstd * g (given statistics). dweight and dbias are the per-segment sums
summed over segments ([S, C] -> [C], in PyTorch).

Parallelism is S * ceil(C / BLOCK_C) programs: fine for the supernets' small tensors; at large
sizes on a GPU a split reduction would be needed to fill the machine (not measured: no GPU yet).
All arithmetic in float32 (bf16/fp16 inputs are loaded and widened; y is stored in x's dtype).

The boundary: two torch.library custom ops, vaenas::segmented_batch_norm_triton_forward (with
register_autograd) and ..._backward, each with an explicit fake implementation (opcheck passes
under the interpreter too).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import custom_op

from vaenas.ops.batch_norm_autograd import (
    register_segmented_batch_norm_autograd,
    run_fused_forward,
)

ACTIVATION_CODES = {"none": 0, "relu": 1, "silu": 2}
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@triton.jit
def _tile_offsets(start, segment, rows_per_segment, spatial, stride_n, stride_l, BLOCK_R: tl.constexpr):
    """Element offsets (without the channel term) of the rows start..start+BLOCK_R of a segment's
    flattened (row, spatial) index, and their mask."""
    r = start + tl.arange(0, BLOCK_R)
    row = segment * rows_per_segment + r // spatial
    offsets = row.to(tl.int64) * stride_n + (r % spatial).to(tl.int64) * stride_l
    return offsets, r < rows_per_segment * spatial


@triton.jit
def _activate(z, ACTIVATION: tl.constexpr):
    if ACTIVATION == 1:
        z = tl.maximum(z, 0.0)
    elif ACTIVATION == 2:
        z = z * tl.sigmoid(z)
    return z


@triton.jit
def _activation_derivative(z, ACTIVATION: tl.constexpr):
    """d act / dz at z; relu's is 0 at z = 0 (as torch.relu's backward)."""
    if ACTIVATION == 1:
        return tl.where(z > 0.0, 1.0, 0.0)
    elif ACTIVATION == 2:
        sig = tl.sigmoid(z)
        return sig * (1.0 + z * (1.0 - sig))
    else:
        return tl.full(z.shape, 1.0, tl.float32)


@triton.jit
def _to_output(value, pointer, ROUND_BF16: tl.constexpr):
    """value (float32) in pointer's element type. ROUND_BF16 (set under the interpreter, whose
    float32 -> bfloat16 cast truncates where a GPU rounds to nearest even): round by hand, adding
    half an ulp of bf16 plus the tie bit before dropping the low 16 bits."""
    if ROUND_BF16:
        bits = value.to(tl.uint32, bitcast=True)
        bits += 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return value.to(pointer.dtype.element_ty)


@triton.jit
def _forward_kernel(
    x_ptr, y_ptr, weight_ptr, bias_ptr, mean_ptr, var_ptr,
    rows_per_segment, channels, spatial, eps,
    x_stride_n, x_stride_c, x_stride_l, y_stride_n, y_stride_c, y_stride_l,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, GIVEN_STATS: tl.constexpr, ACTIVATION: tl.constexpr,
    ROUND_BF16: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    segment = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < channels
    stats_offsets = segment * channels + cols
    count = rows_per_segment * spatial
    x_cols = cols.to(tl.int64)[None, :] * x_stride_c
    if GIVEN_STATS:
        mean = tl.load(mean_ptr + stats_offsets, mask=col_ok, other=0.0)
        var = tl.load(var_ptr + stats_offsets, mask=col_ok, other=1.0)
    else:
        total = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
        for start in range(0, count, BLOCK_R):
            offsets, row_ok = _tile_offsets(start, segment, rows_per_segment, spatial, x_stride_n, x_stride_l, BLOCK_R)
            mask = row_ok[:, None] & col_ok[None, :]
            total += tl.load(x_ptr + offsets[:, None] + x_cols, mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(total, axis=0) / count
        squares = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
        for start in range(0, count, BLOCK_R):
            offsets, row_ok = _tile_offsets(start, segment, rows_per_segment, spatial, x_stride_n, x_stride_l, BLOCK_R)
            mask = row_ok[:, None] & col_ok[None, :]
            v = tl.load(x_ptr + offsets[:, None] + x_cols, mask=mask, other=0.0).to(tl.float32)
            centred = tl.where(mask, v - mean[None, :], 0.0)
            squares += centred * centred
        var = tl.sum(squares, axis=0) / count
        tl.store(mean_ptr + stats_offsets, mean, mask=col_ok)
        tl.store(var_ptr + stats_offsets, var, mask=col_ok)
    scale = 1.0 / tl.sqrt(var + eps)
    if HAS_WEIGHT:
        scale = scale * tl.load(weight_ptr + cols, mask=col_ok, other=1.0).to(tl.float32)
    shift = -mean * scale
    if HAS_BIAS:
        shift += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    y_cols = cols.to(tl.int64)[None, :] * y_stride_c
    for start in range(0, count, BLOCK_R):
        offsets, row_ok = _tile_offsets(start, segment, rows_per_segment, spatial, x_stride_n, x_stride_l, BLOCK_R)
        y_offsets, _ = _tile_offsets(start, segment, rows_per_segment, spatial, y_stride_n, y_stride_l, BLOCK_R)
        mask = row_ok[:, None] & col_ok[None, :]
        v = tl.load(x_ptr + offsets[:, None] + x_cols, mask=mask, other=0.0).to(tl.float32)
        z = _activate(v * scale[None, :] + shift[None, :], ACTIVATION)
        tl.store(y_ptr + y_offsets[:, None] + y_cols, _to_output(z, y_ptr, ROUND_BF16), mask=mask)


@triton.jit
def _backward_kernel(
    grad_ptr, x_ptr, dx_ptr, weight_ptr, bias_ptr, mean_ptr, var_ptr, sum_g_ptr, sum_gx_ptr,
    rows_per_segment, channels, spatial, eps,
    g_stride_n, g_stride_c, g_stride_l, x_stride_n, x_stride_c, x_stride_l, d_stride_n, d_stride_c, d_stride_l,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, TRAINING: tl.constexpr, ACTIVATION: tl.constexpr,
    ROUND_BF16: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    segment = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < channels
    stats_offsets = segment * channels + cols
    count = rows_per_segment * spatial
    mean = tl.load(mean_ptr + stats_offsets, mask=col_ok, other=0.0)
    rstd = 1.0 / tl.sqrt(tl.load(var_ptr + stats_offsets, mask=col_ok, other=1.0) + eps)  # as the forward's
    weight = tl.full((BLOCK_C,), 1.0, tl.float32)
    if HAS_WEIGHT:
        weight = tl.load(weight_ptr + cols, mask=col_ok, other=1.0).to(tl.float32)
    bias = tl.zeros((BLOCK_C,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    # z = x * scale + shift exactly as the forward computed it: relu's derivative then agrees
    # with the forward's output to the last bit
    scale = rstd * weight
    shift = bias - mean * scale
    x_cols = cols.to(tl.int64)[None, :] * x_stride_c
    g_cols = cols.to(tl.int64)[None, :] * g_stride_c
    sum_g = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    sum_gx = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for start in range(0, count, BLOCK_R):
        offsets, row_ok = _tile_offsets(start, segment, rows_per_segment, spatial, x_stride_n, x_stride_l, BLOCK_R)
        g_offsets, _ = _tile_offsets(start, segment, rows_per_segment, spatial, g_stride_n, g_stride_l, BLOCK_R)
        mask = row_ok[:, None] & col_ok[None, :]
        v = tl.load(x_ptr + offsets[:, None] + x_cols, mask=mask, other=0.0).to(tl.float32)
        x_hat = (v - mean[None, :]) * rstd[None, :]
        upstream = tl.load(grad_ptr + g_offsets[:, None] + g_cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.where(mask, upstream * _activation_derivative(v * scale[None, :] + shift[None, :], ACTIVATION), 0.0)
        sum_g += g
        sum_gx += g * x_hat
    segment_g = tl.sum(sum_g, axis=0)
    segment_gx = tl.sum(sum_gx, axis=0)
    tl.store(sum_g_ptr + stats_offsets, segment_g, mask=col_ok)
    tl.store(sum_gx_ptr + stats_offsets, segment_gx, mask=col_ok)
    mean_g = segment_g / count
    mean_gx = segment_gx / count
    d_cols = cols.to(tl.int64)[None, :] * d_stride_c
    for start in range(0, count, BLOCK_R):
        offsets, row_ok = _tile_offsets(start, segment, rows_per_segment, spatial, x_stride_n, x_stride_l, BLOCK_R)
        g_offsets, _ = _tile_offsets(start, segment, rows_per_segment, spatial, g_stride_n, g_stride_l, BLOCK_R)
        d_offsets, _ = _tile_offsets(start, segment, rows_per_segment, spatial, d_stride_n, d_stride_l, BLOCK_R)
        mask = row_ok[:, None] & col_ok[None, :]
        v = tl.load(x_ptr + offsets[:, None] + x_cols, mask=mask, other=0.0).to(tl.float32)
        x_hat = (v - mean[None, :]) * rstd[None, :]
        upstream = tl.load(grad_ptr + g_offsets[:, None] + g_cols, mask=mask, other=0.0).to(tl.float32)
        g = upstream * _activation_derivative(v * scale[None, :] + shift[None, :], ACTIVATION)
        if TRAINING:
            g = g - mean_g[None, :] - x_hat * mean_gx[None, :]
        dx = g * (weight * rstd)[None, :]
        tl.store(dx_ptr + d_offsets[:, None] + d_cols, _to_output(dx, dx_ptr, ROUND_BF16), mask=mask)


# --- launch ------------------------------------------------------------------------------------


def _blocks(channels: int, count: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_C): up to 32 channels a program, tiles of ~4096 values (the interpreter runs
    each tile as numpy calls, so few large tiles are fastest there too)."""
    block_c = min(triton.next_power_of_2(channels), 32)
    block_r = max(16, min(triton.next_power_of_2(count), 4096 // block_c))
    return block_r, block_c


def _spatial_merges(t: Tensor) -> bool:
    """Whether t's spatial dimensions (2..) merge into one stride: t.flatten(2) is then a view."""
    for dim in range(2, t.dim() - 1):
        if t.shape[dim] != 1 and t.shape[dim + 1] != 1 and t.stride(dim) != t.stride(dim + 1) * t.shape[dim + 1]:
            return False
    return True


def _as_ncl(t: Tensor) -> Tensor:
    """t [N, C, *] as a [N, C, L] view (a contiguous copy first if its spatial dims do not merge)."""
    if not _spatial_merges(t):
        t = t.contiguous()
    return t.flatten(2) if t.dim() > 2 else t.unsqueeze(2)


def _round_bf16_by_hand(out: Tensor) -> bool:
    """A bfloat16 output under the interpreter (see _to_output)."""
    return out.dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET", "0") == "1"


def _optional(t: Tensor | None, like: Tensor) -> Tensor:
    """A pointer the kernel never reads when its HAS_ flag is off."""
    return t.contiguous() if t is not None else like


@custom_op("vaenas::segmented_batch_norm_triton_forward", mutates_args=())
def _forward_op(
    x: Tensor, num_segments: int, weight: Tensor | None, bias: Tensor | None, eps: float,
    mean: Tensor | None, var: Tensor | None, activation: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """(y like x, mean [S, C], var [S, C]) float32 statistics: new tensors (copies of the given
    ones in evaluation: a custom op's outputs may not alias its inputs)."""
    if not _spatial_merges(x):
        x = x.contiguous()
    y = torch.empty_like(x)
    x3, y3 = _as_ncl(x), _as_ncl(y)
    rows, channels, spatial = x3.shape
    given = mean is not None
    if given:
        mean_out, var_out = mean.to(torch.float32, copy=True).contiguous(), var.to(torch.float32, copy=True).contiguous()
    else:
        mean_out = torch.empty(num_segments, channels, dtype=torch.float32, device=x.device)
        var_out = torch.empty_like(mean_out)
    block_r, block_c = _blocks(channels, rows // num_segments * spatial)
    _forward_kernel[(num_segments, triton.cdiv(channels, block_c))](
        x3, y3, _optional(weight, x3), _optional(bias, x3), mean_out, var_out,
        rows // num_segments, channels, spatial, eps, *x3.stride(), *y3.stride(),
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, GIVEN_STATS=given,
        ACTIVATION=ACTIVATION_CODES[activation], ROUND_BF16=_round_bf16_by_hand(y),
        BLOCK_R=block_r, BLOCK_C=block_c,
    )
    return y, mean_out, var_out


@custom_op("vaenas::segmented_batch_norm_triton_backward", mutates_args=())
def _backward_op(
    grad: Tensor, x: Tensor, weight: Tensor | None, bias: Tensor | None, mean: Tensor, var: Tensor,
    eps: float, num_segments: int, activation: str, training: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """(dx like x, sum of g [S, C], sum of g * x_hat [S, C]), g the gradient before the activation;
    dbias and dweight are the two sums over segments."""
    if not _spatial_merges(x):
        x = x.contiguous()
    dx = torch.empty_like(x)
    g3, x3, d3 = _as_ncl(grad), _as_ncl(x), _as_ncl(dx)
    rows, channels, spatial = x3.shape
    sum_g = torch.empty(num_segments, channels, dtype=torch.float32, device=x.device)
    sum_gx = torch.empty_like(sum_g)
    block_r, block_c = _blocks(channels, rows // num_segments * spatial)
    _backward_kernel[(num_segments, triton.cdiv(channels, block_c))](
        g3, x3, d3, _optional(weight, x3), _optional(bias, x3), mean.float().contiguous(), var.float().contiguous(),
        sum_g, sum_gx, rows // num_segments, channels, spatial, eps, *g3.stride(), *x3.stride(), *d3.stride(),
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, TRAINING=training,
        ACTIVATION=ACTIVATION_CODES[activation], ROUND_BF16=_round_bf16_by_hand(dx),
        BLOCK_R=block_r, BLOCK_C=block_c,
    )
    return dx, sum_g, sum_gx


# Explicit fake implementations (shapes, dtypes, strides: outputs take x's layout, as empty_like
# does): an opaque custom op rather than triton_op, whose derived fake launches the kernel and
# so fails on FakeTensors under the interpreter (the vae_decode tests skip those checks for it).
@_forward_op.register_fake
def _forward_fake(
    x: Tensor, num_segments: int, weight: Tensor | None, bias: Tensor | None, eps: float,
    mean: Tensor | None, var: Tensor | None, activation: str,
) -> tuple[Tensor, Tensor, Tensor]:
    x = x if _spatial_merges(x) else x.contiguous()
    stats = x.new_empty((num_segments, x.shape[1]), dtype=torch.float32)
    return torch.empty_like(x), stats, torch.empty_like(stats)


@_backward_op.register_fake
def _backward_fake(
    grad: Tensor, x: Tensor, weight: Tensor | None, bias: Tensor | None, mean: Tensor, var: Tensor,
    eps: float, num_segments: int, activation: str, training: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    x = x if _spatial_merges(x) else x.contiguous()
    sums = x.new_empty((num_segments, x.shape[1]), dtype=torch.float32)
    return torch.empty_like(x), sums, torch.empty_like(sums)


register_segmented_batch_norm_autograd("vaenas::segmented_batch_norm_triton_forward",
                                       torch.ops.vaenas.segmented_batch_norm_triton_backward)


def segmented_batch_norm_triton(
    x: Tensor, num_segments: int, weight: Tensor | None, bias: Tensor | None, eps: float,
    mean: Tensor | None, var: Tensor | None, activation: str | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """vaenas.ops.reference.segmented_batch_norm on CUDA tensors (or CPU tensors under
    TRITON_INTERPRET=1): same arguments and results (float32 statistics; the given mean and var
    themselves are returned in evaluation). Shapes are checked by vaenas.ops.segmented_batch_norm."""
    if x.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"the Triton segmented_batch_norm computes in float32: x must be float32, bfloat16 or "
                         f"float16, got {x.dtype} (use backend='aten' or 'reference')")
    for name, t in (("weight", weight), ("bias", bias), ("mean", mean), ("var", var)):
        if t is not None and t.device != x.device:
            raise ValueError(f"segmented_batch_norm: {name} is on {t.device}, x on {x.device}")
    return run_fused_forward(torch.ops.vaenas.segmented_batch_norm_triton_forward, "Triton", x, num_segments, weight,
                             bias, eps, mean, var, activation)

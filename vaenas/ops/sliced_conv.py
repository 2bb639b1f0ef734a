"""Channel-sliced shared convolutions (DESIGN §4, op family 3).

A supernet whose layer widths depend on the architecture (NAS-Bench-101: a vertex's channels
depend on the pruned cell) keeps one weight at the largest width and convolves with its
[:out, :in] slice. The slice is never copied into a weight of its own: the gradient lands in the
slice of the shared weight's gradient, and is zero elsewhere, zeros an optimizer must not step on
(momentum and weight decay would move the unused entries) nor tell from a dead unit's exact zeros
inside the slice: the supernet records the slices it used (vaenas.supernet.base.SlicedWeight) and
the trainer updates only those. The specification is vaenas.ops.reference.sliced_conv2d;
a later kernel fuses the batch-norm/ReLU epilogue of the NAS-Bench-101 op.
"""

from __future__ import annotations

from torch import Tensor

from vaenas.ops import reference
from vaenas.ops._dispatch import choose_backend

IMPLEMENTED_BACKENDS = ("reference",)


def sliced_conv2d(
    x: Tensor,
    weight: Tensor,
    out_channels: int,
    in_channels: int | None = None,
    stride: int = 1,
    padding: int = 0,
    *,
    backend: str | None = None,
) -> Tensor:
    """F.conv2d(x, weight[:out_channels, :in_channels], stride=stride, padding=padding), without
    copying the slice.

    x [B, in_channels, H, W]; weight [C_out, C_in, k, k] with out_channels <= C_out and
    in_channels <= C_in; in_channels defaults to x.shape[1] and, when given, must equal it.
    Returns [B, out_channels, H', W'].
    """
    choose_backend("sliced_conv2d", x.device, backend, IMPLEMENTED_BACKENDS)
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"sliced_conv2d takes x [B, C, H, W] and weight [O, I, k, k], got {tuple(x.shape)}, {tuple(weight.shape)}"
        )
    if in_channels is not None and in_channels != x.shape[1]:
        raise ValueError(f"in_channels = {in_channels} but x has {x.shape[1]} channels")
    if not 1 <= out_channels <= weight.shape[0] or x.shape[1] > weight.shape[1]:
        raise ValueError(
            f"a [{out_channels}, {x.shape[1]}] slice does not fit in a weight of shape {tuple(weight.shape)}"
        )
    return reference.sliced_conv2d(x, weight, out_channels, stride, padding)

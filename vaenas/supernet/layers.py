"""Segmented versions of the child networks' blocks (vaenas.spaces.layers), for the supernets.

Each block here is built by the child's own constructor and then `segmented`: same module tree,
same parameters and state_dict keys, but every batch norm a SegmentedBatchNorm2d and forward(x,
segments). Building them from the child's constructors keeps the two trees identical by
construction, which is what export_child (inherit_weights, module by module) relies on.
Shapes: x [S*b, C_in, H, W] -> [S*b, C_out, H / stride, W / stride], S segments of b rows.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from vaenas.spaces import layers
from vaenas.supernet.base import SegmentedBatchNorm2d, SegmentedSequential, TakesSegments


def _holds_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) and not isinstance(m, SegmentedBatchNorm2d) for m in module.modules())


def segmented(module: nn.Module) -> nn.Module:
    """The segmented version of a freshly built child block, to be used in its place (its weights are
    copied; new batch norms are on the CPU in the default dtype, as a fresh block's).

    nn.BatchNorm2d -> SegmentedBatchNorm2d; an nn.Sequential holding one -> SegmentedSequential with
    the same children names; layers.FactorizedReduce -> FactorizedReduce below; modules without a
    batch norm are returned unchanged (they run per row, so segments do not matter to them). Any
    other module holding a batch norm is a TypeError: its forward would call the batch norm without
    segments, so it needs a hand-written segmented version.
    """
    if isinstance(module, TakesSegments) or not _holds_batch_norm(module):
        return module
    if isinstance(module, layers.FactorizedReduce):
        reduce = FactorizedReduce(module.conv_even.in_channels, module.bn.num_features)
        reduce.load_state_dict(module.state_dict())
        return reduce
    if isinstance(module, nn.BatchNorm2d):
        norm = SegmentedBatchNorm2d(
            module.num_features, eps=module.eps, momentum=module.momentum,
            affine=module.affine, track_running_stats=module.track_running_stats,
        )  # fmt: skip
        norm.load_state_dict(module.state_dict())
        return norm
    if isinstance(module, nn.Sequential):
        return SegmentedSequential(OrderedDict((name, segmented(child)) for name, child in module.named_children()))
    raise TypeError(f"{type(module).__name__} calls a batch norm in its own forward: write its segmented version")


class ReLUConvBN(SegmentedSequential):
    """layers.ReLUConvBN (ReLU, conv k x k, BN), segmented."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(*segmented(layers.ReLUConvBN(in_channels, out_channels, kernel_size, stride, padding)))


class DilConv(SegmentedSequential):
    """layers.DilConv (ReLU, depthwise dilated k x k, pointwise, BN), segmented."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, dilation: int
    ) -> None:
        block = layers.DilConv(in_channels, out_channels, kernel_size, stride, padding, dilation)
        super().__init__(*segmented(block))


class SepConv(SegmentedSequential):
    """layers.SepConv (two DilConv units at dilation 1, only the first strided), segmented."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(*segmented(layers.SepConv(in_channels, out_channels, kernel_size, stride, padding)))


class FactorizedReduce(TakesSegments, layers.FactorizedReduce):
    """layers.FactorizedReduce (two shifted stride-2 1x1 convs, concatenated, BN), segmented:
    [S*b, C_in, H, W] -> [S*b, C_out, H/2, W/2]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.bn = segmented(self.bn)

    def forward(self, x: Tensor, segments: Tensor) -> Tensor:  # type: ignore[override]
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_even(x), self.conv_odd(x[:, :, 1:, 1:])], dim=1), segments)

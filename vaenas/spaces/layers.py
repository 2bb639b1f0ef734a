"""Building blocks shared by the child networks of the NASNet-like and ShuffleNet-like spaces.

The DARTS blocks follow quark0/darts `cnn/operations.py` (ReLU -> conv -> BN ordering, affine BN);
every block maps a tensor [B, C_in, H, W] to [B, C_out, H / stride, W / stride].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ReLUConvBN(nn.Sequential):
    """ReLU, conv k x k, BN: [B, C_in, H, W] -> [B, C_out, H', W'] (DARTS cell preprocessing)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k conv with dilation, pointwise 1x1 conv, BN (DARTS `dil_conv_*`)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, dilation: int
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, dilation, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class SepConv(nn.Sequential):
    """Two stacked (ReLU, depthwise k x k, pointwise 1x1, BN) units; only the first strides (DARTS `sep_conv_*`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(
            DilConv(in_channels, in_channels, kernel_size, stride, padding, dilation=1),
            DilConv(in_channels, out_channels, kernel_size, 1, padding, dilation=1),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: [B, C_in, H, W] -> [B, C_out, H/2, W/2].

    Two stride-2 1x1 convs, the second shifted by one pixel, concatenated on channels (DARTS).
    C_out must be even.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {out_channels}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_even = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.conv_odd = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_even(x), self.conv_odd(x[:, :, 1:, 1:])], dim=1))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(W2 relu(W1 mean_hw(x))), [B, C, H, W] -> [B, C, H, W].

    No BatchNorm inside: the squeezed tensor is [B, C, 1, 1], and BN there fails at batch size 1.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)

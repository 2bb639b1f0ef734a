"""The ShuffleNet-like SPOS supernet (paper A.4): 20 choice blocks of 4 ShuffleNetV2 blocks each.

The backbone of the space's child (vaenas.spaces.shufflenet.ShuffleNetChild): first conv, 20 layers
(4 stages, the first block of each at stride 2), conv_last, pooling, dropout, classifier; each layer
holds the 4 candidate blocks (shuffle 3x3 / 5x5 / 7x7, Xception; Swish and SE as in the space) and
runs, through vaenas.ops.route, each block once on the segments that chose it. Blocks are built by
the space's own ShuffleBlock and segmented, so export_child copies weights module by module.

small_input (the CIFAR-sized variant): the first conv at stride 1 instead of 2, so 32 px images
reach the classifier at 2x2 after the 4 stride-2 stages (224 px: 7x7 with the ImageNet stem).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaenas import ops
from vaenas.spaces.shufflenet import (
    CHOICES,
    FIRST_CHANNELS,
    LAST_CHANNELS,
    ShuffleBlock,
    ShuffleNetSpace,
    layer_shapes,
    scaled_channels,
)
from vaenas.supernet.base import (
    SegmentedBatchNorm2d,
    SegmentedSequential,
    Supernet,
    TakesSegments,
    check_groups,
    inherit_weights,
)
from vaenas.supernet.gates import Gates, check_single_path
from vaenas.supernet.layers import segmented


class SegmentedShuffleBlock(TakesSegments, ShuffleBlock):
    """The space's ShuffleBlock, segmented: [S*b, C_in, H, W] -> [S*b, C_out, H/s, W/s]."""

    def __init__(self, in_channels: int, out_channels: int, choice: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, choice, stride)
        self.main = segmented(self.main)
        if self.projection is not None:
            self.projection = segmented(self.projection)

    def forward(self, x: Tensor, segments: Tensor) -> Tensor:  # type: ignore[override]
        if self.projection is None:
            return torch.cat([x[:, 0::2], self.main(x[:, 1::2], segments)], dim=1)
        return torch.cat([self.projection(x, segments), self.main(x, segments)], dim=1)


class ShuffleNetSupernet(Supernet):
    """images [G*b, 3, H, W], archs [G, 20] -> logits [G*b, num_classes].

    H, W multiples of 32 (16 with small_input). width scales the first conv's and the stages'
    channels as the space does; dropout before the classifier (SPOS: 0.1). With dropout > 0 in
    training, group g's rows get other dropout masks than a G = 1 forward would draw.
    """

    def __init__(
        self,
        space: ShuffleNetSpace,
        num_classes: int = 1000,
        width: float = 1.0,
        dropout: float = 0.1,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        self.space, self.num_classes = space, num_classes
        self.width, self.dropout_rate, self.small_input = width, dropout, small_input
        first = scaled_channels(FIRST_CHANNELS, width)
        self.first_conv = SegmentedSequential(
            nn.Conv2d(3, first, 3, 1 if small_input else 2, 1, bias=False),
            SegmentedBatchNorm2d(first),
            nn.ReLU(inplace=True),
        )
        shapes = layer_shapes(width)
        self.features = nn.ModuleList(
            nn.ModuleList(SegmentedShuffleBlock(i, o, choice, s) for choice in range(len(CHOICES))) for i, o, s in shapes
        )
        self.conv_last = SegmentedSequential(
            nn.Conv2d(shapes[-1][1], LAST_CHANNELS, 1, bias=False),
            SegmentedBatchNorm2d(LAST_CHANNELS),
            nn.ReLU(inplace=True),
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(LAST_CHANNELS, num_classes, bias=False)

    def forward(self, images: Tensor, archs: Tensor, gates: Gates | None = None) -> Tensor:  # type: ignore[override]
        archs, segments = check_groups(images, archs, self.space)
        check_single_path(archs, gates)
        x = self.first_conv(images, segments)
        for position, choices in enumerate(self.features):
            if gates is None:
                x = ops.route(x, segments, archs[:, position], choices)
            else:  # the gradient search: one path, binary gates (vaenas.supernet.gates)
                x = gates.choice(x, segments, position, int(archs[0, position]), choices)
        x = self.conv_last(x, segments)
        return self.classifier(self.dropout(self.global_pooling(x).flatten(1)))

    def child_options(self) -> dict:
        return {
            "num_classes": self.num_classes, "width": self.width,
            "dropout": self.dropout_rate, "small_input": self.small_input,
        }  # fmt: skip

    def export_child(self, arch: Tensor, group: int | None = None) -> nn.Module:
        tokens = self.space.validate(arch).tolist()
        child = self.space.build_child(torch.tensor(tokens), **self.child_options()).to(self.classifier.weight)
        inherit_weights(child.first_conv, self.first_conv, group)
        for child_block, choices, token in zip(child.features, self.features, tokens):
            inherit_weights(child_block, choices[token], group)
        inherit_weights(child.conv_last, self.conv_last, group)
        inherit_weights(child.classifier, self.classifier, group)
        return child

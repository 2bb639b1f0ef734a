"""The NAS-Bench-201 one-shot supernet (C = 16, N = 5 by default): the TinyNetwork skeleton of the
space's child with every cell edge a choice point over the 5 operations.

Every module mirrors the child's (vaenas.spaces.nasbench201.NASBench201Network) so that
export_child copies weights module by module; every batch norm is segmented (base module).

cell_affine=False (the default) gives the convolutions inside the search cells affine-free batch
norms, as SPOS's choice blocks and NAS-Bench-201's own search cells have (the stem, the residual
reduction blocks and the last batch norm keep theirs); an exported child gets weight 1, bias 0
there. Measured on the packaged digits (scripts/supernet_curves.py, C = 16, N = 5, 16 px, uniform
paths, 600 steps): mean held-out accuracy of 24 uniform architectures 46.9 % affine-free against
40.8 % affine; no difference at N = 1 or 2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaenas import ops
from vaenas.spaces.nasbench201 import EDGES, NUM_NODES, OPS, NASBench201Space
from vaenas.supernet.gates import Gates, check_single_path
from vaenas.supernet.base import (
    SegmentedBatchNorm2d,
    SegmentedSequential,
    Supernet,
    TakesSegments,
    check_groups,
    inherit_weights,
)


def _relu_conv_bn(
    c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True
) -> SegmentedSequential:
    """The space's ReLUConvBN, segmented."""
    return SegmentedSequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
        SegmentedBatchNorm2d(c_out, affine=affine),
    )


def _candidates(channels: int, affine: bool) -> nn.ModuleList:
    """The 5 operations in token order; `none` is nn.Identity only as a placeholder (never run:
    route treats it as zero)."""
    return nn.ModuleList(
        [
            nn.Identity(),  # none: route's None candidate
            nn.Identity(),  # skip_connect
            _relu_conv_bn(channels, channels, 1, 1, 0, affine),  # nor_conv_1x1
            _relu_conv_bn(channels, channels, 3, 1, 1, affine),  # nor_conv_3x3
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),  # avg_pool_3x3
        ]
    )


def _as_candidate(module: nn.Module):
    return module if isinstance(module, TakesSegments) else (lambda x, segments: module(x))


class SearchCell(nn.Module):
    """A cell whose 6 edges each choose one of the 5 operations per segment."""

    def __init__(self, channels: int, affine: bool = True) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_candidates(channels, affine) for _ in EDGES)
        none = OPS.index("none")
        self._routes = [
            [None if k == none else _as_candidate(op) for k, op in enumerate(edge)] for edge in self.edges
        ]

    def forward(self, x: Tensor, segments: Tensor, archs: Tensor, gates: Gates | None = None) -> Tensor:
        nodes = [x]
        for target in range(1, NUM_NODES):
            incoming = [(position, source) for position, (source, end) in enumerate(EDGES) if end == target]
            if gates is None:  # the node's sum of its routed edges (vaenas.ops.route_sum)
                node = ops.route_sum([(nodes[source], archs[segments, position], self._routes[position])
                                      for position, source in incoming], segments)
            else:  # the gradient search: one path, binary gates (vaenas.supernet.gates)
                terms = [gates.choice(nodes[source], segments, position, int(archs[0, position]), self._routes[position])
                         for position, source in incoming]
                terms = [term for term in terms if term is not None]
                node = sum(terms[1:], terms[0]) if terms else None
            # a node whose every input is `none` is zero (the child's Zero op computes x * 0)
            nodes.append(node if node is not None else torch.zeros_like(x))
        return nodes[-1]


class ResNetBasicBlock(TakesSegments, nn.Module):
    """The stride-2 residual reduction block between stages (as the child's), segmented."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = _relu_conv_bn(c_in, c_out, 3, 2, 1)
        self.conv_b = _relu_conv_bn(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor, segments: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x, segments), segments)


class NASBench201Supernet(Supernet):
    """images [G*b, 3, H, W], archs [G, 6] -> logits [G*b, num_classes].

    Every cell runs the same path archs[g] (per-network sampling, as the child repeats one cell;
    one path per cell instead left 24 uniform architectures at 17 % mean held-out accuracy against
    41 % at N = 5 after 600 steps: scripts/supernet_curves.py `per_cell`).
    """

    def __init__(
        self, space: NASBench201Space, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
        cell_affine: bool = False,
    ) -> None:
        super().__init__()
        self.space, self.num_classes = space, num_classes
        self.channels, self.cells_per_stage = channels, cells_per_stage
        self.stem = SegmentedSequential(
            nn.Conv2d(3, channels, 3, padding=1, bias=False), SegmentedBatchNorm2d(channels)
        )
        blocks: list[nn.Module] = []
        c_prev = channels
        for stage in range(3):
            c_stage = channels * 2**stage
            if stage > 0:
                blocks.append(ResNetBasicBlock(c_prev, c_stage))
            blocks.extend(SearchCell(c_stage, cell_affine) for _ in range(cells_per_stage))
            c_prev = c_stage
        self.cells = nn.ModuleList(blocks)
        self.lastact = SegmentedSequential(SegmentedBatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, images: Tensor, archs: Tensor, gates: Gates | None = None) -> Tensor:  # type: ignore[override]
        archs, segments = check_groups(images, archs, self.space)
        check_single_path(archs, gates)
        x = self.stem(images, segments)
        for block in self.cells:
            x = block(x, segments, archs, gates) if isinstance(block, SearchCell) else block(x, segments)
        features = self.global_pooling(self.lastact(x, segments))
        return self.classifier(features.flatten(1))

    def child_options(self) -> dict:
        return {"channels": self.channels, "cells_per_stage": self.cells_per_stage, "num_classes": self.num_classes}

    def export_child(self, arch: Tensor, group: int | None = None) -> nn.Module:
        tokens = self.space.validate(arch).tolist()
        child = self.space.build_child(torch.tensor(tokens), **self.child_options()).to(self.classifier.weight)
        inherit_weights(child.stem, self.stem, group)
        for child_block, block in zip(child.cells, self.cells):
            if isinstance(block, SearchCell):
                for layer, edge, token in zip(child_block.layers, block.edges, tokens):
                    if OPS[token] != "none":
                        inherit_weights(layer, edge[token], group)
            else:
                inherit_weights(child_block, block, group)
        inherit_weights(child.lastact, self.lastact, group)
        inherit_weights(child.classifier, self.classifier, group)
        return child

"""The NAS-Bench-101 supernet (paper A.5, Fig. 7): the benchmark's network (stem, stacks of cells,
max-pools, classifier) with one cell of all 7 vertices whose edges and ops the architecture picks.

A vertex's channels depend on the pruned cell (the benchmark splits a cell's output channels over
the vertices feeding the output, nasbench101_network.compute_vertex_channels), so every
convolution keeps one weight at the largest width it can need, the cell's output channels, and
uses its [:out, :in] slice (vaenas.ops.sliced_conv2d): vertex v's projection and its conv3x3 and
conv1x1 ops are one weight each per cell, whatever width v gets. A training step updates only the
slices its architectures used (vaenas.supernet.base.SlicedWeight; the trainer): entries outside
them keep their values and momentum, as a candidate op no architecture of the step ran does. (The
slimmable-network alternative, SGD on the whole shared weight, would decay the wide channels and
carry their momentum on while narrow cells train.)

Batch norm, one per width ("switchable" batch norm, Yu et al. 2018, Slimmable Networks): each
sliced convolution has a SegmentedBatchNorm2d of its own for every width it can run at (at most
10), instead of one batch norm at the largest width applied to the first c channels. Slimmable
networks found one shared batch norm across widths inaccurate, because the statistics of the
first c channels change with c; and the plain SegmentedBatchNorm2d keeps its training, recalibration,
evaluation and export (copy_batch_norm) exactly as every other supernet uses them, with no
sliced variant of its statistics to get wrong.

The G-group forward loops over groups inside each cell (DESIGN §4 allows it for NB101 in this
issue): architectures differ in their widths, so their rows cannot share one convolution.
Stem, max-pools and classifier run once on the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vaenas import ops
from vaenas.spaces import nasbench101_graph as graph
from vaenas.spaces.nasbench101 import NASBench101Space
from vaenas.spaces.nasbench101_network import BN_EPSILON, BN_MOMENTUM, Cell, ConvBnRelu, compute_vertex_channels
from vaenas.supernet.base import (
    SegmentedBatchNorm2d,
    SegmentedSequential,
    SlicedWeight,
    Supernet,
    check_groups,
    copy_batch_norm,
    inherit_weights,
)

MAXPOOL = graph.OP_NAMES.index("maxpool3x3")


def _norm(channels: int) -> SegmentedBatchNorm2d:
    """The benchmark's batch norm (TF momentum 0.997, epsilon 1e-5), segmented."""
    return SegmentedBatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


def vertex_widths(out_channels: int) -> list[int]:
    """Every width compute_vertex_channels can give an interior vertex of a cell with
    `out_channels` outputs: out // d, or out // d + 1 when d does not divide out, for the d = 1..5
    vertices that feed the output; a vertex that does not feed the output takes the width of one
    that does. Widths of 0 (out < d) are left out: such a cell cannot be built."""
    widths = {
        out_channels // d + extra for d in range(1, graph.NUM_OPS + 1) for extra in (0, int(out_channels % d > 0))
    }
    return sorted(w for w in widths if w > 0)


@dataclass(frozen=True)
class PrunedCell:
    """An architecture's cell as the benchmark's network builds it: the kept vertices (their numbers
    0..6 in the unpruned cell, ascending), and the adjacency matrix and labels among them."""

    vertices: list[int]
    matrix: list[list[int]]
    labels: list[int]


def prune_cell(tokens: list[int]) -> PrunedCell:
    """The PrunedCell of 26 tokens of a valid architecture (nasbench101_graph.prune)."""
    matrix, labels = graph.to_spec(tokens)
    pruned_matrix, pruned_labels = graph.prune(matrix, labels)
    # prune carries any per-vertex list along: pruning the vertex numbers says which vertices stay,
    # hence which of the supernet's per-vertex weights the pruned cell's vertices use.
    vertices = graph.prune(matrix, list(range(graph.NUM_VERTICES)))[1]
    return PrunedCell(vertices, pruned_matrix, pruned_labels)


class SlicedConvBnRelu(SlicedWeight, nn.Module):
    """conv-bn-relu (the benchmark's ConvBnRelu) over one shared weight [max_out, max_in, k, k]:
    x [b, c_in, H, W] -> [b, out, H, W] with the weight's [:out, :c_in] slice ('same' padding,
    no bias) and the batch norm of width `out` (see the module docstring). Records the slices it
    uses (SlicedWeight), so that a training step updates only them."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int, widths: list[int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's initialisation, at the full size
        self.norms = nn.ModuleDict({str(width): _norm(width) for width in widths})
        self.relu = nn.ReLU()  # kept for the module tree (as ConvBnRelu); forward fuses it into the norm
        self.slices_used: set[tuple[int, int]] = set()

    def forward(self, x: Tensor, segments: Tensor, out_channels: int) -> Tensor:
        self.use_slice(out_channels, x.shape[1])
        y = ops.sliced_conv2d(x, self.weight, out_channels, padding=self.weight.shape[-1] // 2)
        return self.norms[str(out_channels)](y, segments, activation="relu")  # self.relu fused into the norm

    @torch.no_grad()
    def export(self, child: ConvBnRelu, group: int | None) -> None:
        """Copy the slice of the child's shape and the batch norm of its width into `child`."""
        conv, norm = child[0], child[1]
        out_channels, in_channels = conv.weight.shape[:2]
        conv.weight.copy_(self.weight[:out_channels, :in_channels])
        copy_batch_norm(norm, self.norms[str(out_channels)], group)


class SearchCell(nn.Module):
    """All 7 vertices of a cell: per interior vertex a 1x1 projection of the cell input and the 3
    ops (label order: conv3x3-bn-relu, conv1x1-bn-relu, maxpool3x3), plus the input->output
    projection. [S*b, in_channels, H, W] -> [S*b, out_channels, H, W]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        widths = vertex_widths(out_channels)
        vertices = range(graph.NUM_OPS)  # vertex v + 1
        self.projections = nn.ModuleList(SlicedConvBnRelu(in_channels, out_channels, 1, widths) for _ in vertices)
        self.operations = nn.ModuleList(
            nn.ModuleList(
                [
                    SlicedConvBnRelu(out_channels, out_channels, 3, widths),
                    SlicedConvBnRelu(out_channels, out_channels, 1, widths),
                    nn.MaxPool2d(3, stride=1, padding=1),
                ]
            )
            for _ in vertices
        )
        self.output_projection = SlicedConvBnRelu(in_channels, out_channels, 1, [out_channels])

    def forward(self, x: Tensor, segments: Tensor, cells: list[PrunedCell]) -> Tensor:
        """Segment s of x [S*b, ...] runs cells[s] (one PrunedCell per segment of `segments`)."""
        parts = [
            self._forward_cell(rows, segments[s : s + 1], cells[s])
            for s, rows in enumerate(x.chunk(len(segments)))
        ]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _forward_cell(self, x: Tensor, segments: Tensor, cell: PrunedCell) -> Tensor:
        """nasbench101_network.Cell.forward of one pruned cell, with this cell's sliced weights."""
        n = len(cell.vertices)
        channels = compute_vertex_channels(self.in_channels, self.out_channels, cell.matrix)
        tensors, concatenated = [x], []
        for t in range(1, n - 1):
            vertex, width = cell.vertices[t] - 1, channels[t]
            added = [tensors[source][:, :width] for source in range(1, t) if cell.matrix[source][t]]
            if cell.matrix[0][t]:
                added.append(self.projections[vertex](x, segments, width))
            inputs = sum(added[1:], added[0])
            operation = self.operations[vertex][cell.labels[t]]
            tensors.append(operation(inputs) if cell.labels[t] == MAXPOOL else operation(inputs, segments, width))
            if cell.matrix[t][n - 1]:
                concatenated.append(tensors[t])
        if not concatenated:  # only the input feeds the output
            return self.output_projection(x, segments, self.out_channels)
        outputs = torch.cat(concatenated, dim=1) if len(concatenated) > 1 else concatenated[0]
        if cell.matrix[0][n - 1]:
            outputs = outputs + self.output_projection(x, segments, self.out_channels)
        return outputs

    def export(self, child: Cell, cell: PrunedCell, group: int | None) -> None:
        """Copy the weights `cell` uses into the benchmark's Cell built from it."""
        n = len(cell.vertices)
        for t in range(1, n - 1):
            vertex = cell.vertices[t] - 1
            if str(t) in child.projections:
                self.projections[vertex].export(child.projections[str(t)], group)
            if cell.labels[t] != MAXPOOL:
                self.operations[vertex][cell.labels[t]].export(child.operations[str(t)], group)
        if str(n - 1) in child.projections:
            self.output_projection.export(child.projections[str(n - 1)], group)


class NASBench101Supernet(Supernet):
    """images [G*b, 3, H, W], archs [G, 26] (valid architectures) -> logits [G*b, num_classes].

    Options as the benchmark's network (NASBench101Network, the space's child): stem_channels,
    num_stacks, cells_per_stack (the benchmark's modules per stack), num_classes.
    """

    def __init__(
        self,
        space: NASBench101Space,
        stem_channels: int = 128,
        num_stacks: int = 3,
        cells_per_stack: int = 3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if stem_channels < graph.NUM_OPS:
            raise ValueError(
                f"stem_channels must be at least {graph.NUM_OPS} (a channel per vertex), got {stem_channels}"
            )
        self.space, self.num_classes = space, num_classes
        self.stem_channels, self.num_stacks, self.cells_per_stack = stem_channels, num_stacks, cells_per_stack
        self.stem = SegmentedSequential(
            nn.Conv2d(3, stem_channels, 3, padding=1, bias=False), _norm(stem_channels), nn.ReLU()
        )
        layers: list[nn.Module] = []
        in_channels = channels = stem_channels
        for stack in range(num_stacks):
            if stack > 0:
                layers.append(nn.MaxPool2d(2, stride=2))
                channels *= 2
            for _ in range(cells_per_stack):
                layers.append(SearchCell(in_channels, channels))
                in_channels = channels
        self.layers = nn.ModuleList(layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, images: Tensor, archs: Tensor) -> Tensor:  # type: ignore[override]
        archs, segments = check_groups(images, archs, self.space)
        cells = [prune_cell(row) for row in self.space.check_valid(archs, "the supernet forward").tolist()]
        x = self.stem(images, segments)
        for layer in self.layers:
            x = layer(x, segments, cells) if isinstance(layer, SearchCell) else layer(x)
        return self.classifier(x.mean(dim=(2, 3)))

    def child_options(self) -> dict:
        return {
            "stem_channels": self.stem_channels,
            "num_stacks": self.num_stacks,
            "cells_per_stack": self.cells_per_stack,
            "num_classes": self.num_classes,
        }

    def export_child(self, arch: Tensor, group: int | None = None) -> nn.Module:
        tokens = self.space.validate(arch)
        weight = self.classifier.weight
        child = self.space.build_child(tokens, device=weight.device, **self.child_options()).to(weight.dtype)
        cell = prune_cell(tokens.tolist())
        inherit_weights(child.features[0], self.stem, group)
        for child_layer, layer in zip(child.features[1:], self.layers):
            if isinstance(layer, SearchCell):
                layer.export(child_layer, cell, group)
        inherit_weights(child.classifier, self.classifier, group)
        return child

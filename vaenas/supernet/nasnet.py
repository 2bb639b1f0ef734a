"""The NASNet-like (DARTS) search network (paper A.4): stem, `layers` cells, every edge a choice point.

Each of the 28 edges (14 per cell kind, token order of vaenas.spaces.nasnet) chooses one of the 8
ops per segment, `none` included (route's None candidate: the edge adds nothing); a node sums all
its non-`none` inputs and a cell concatenates its 4 nodes. The modules mirror the space's child
(NASNetCIFAR / Cell: stem, preprocess0/1, edges `node{k}_from{p}`) so that export_child copies weights
module by module; the child has no `none` edges and no preprocessing of an input no edge reads, and
the supernet does not run those either (so they get no gradient and no statistics). Every batch
norm is segmented; there is no auxiliary head.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vaenas import ops
from vaenas.spaces.nasnet import EDGES_PER_CELL, NODE_OFFSETS, NODES, OPS, NASNetSpace, make_op, reduction_cells
from vaenas.supernet.base import (
    SegmentedBatchNorm2d,
    SegmentedSequential,
    Supernet,
    call,
    check_groups,
    inherit_weights,
)
from vaenas.supernet.gates import Gates, check_single_path
from vaenas.supernet.layers import FactorizedReduce, ReLUConvBN, segmented

#: (node, predecessor) of a cell's 14 edges in token order
_EDGES = tuple((node, p) for node in range(NODES) for p in range(2 + node))
#: their names, the child's keys: node0_from0, node0_from1, node1_from0, ...
EDGE_NAMES = tuple(f"node{node}_from{p}" for node, p in _EDGES)
#: positions (inside a cell) of the edges that read cell input 0 (c_{k-2}) and 1 (c_{k-1})
_INPUT_EDGES = tuple([i for i, (_, p) in enumerate(_EDGES) if p == source] for source in range(2))


def _candidates(channels: int, stride: int) -> nn.ModuleList:
    """The 8 ops of an edge in token order, built by the space's own make_op and segmented; `none`
    is an nn.Identity placeholder (never run: route treats it as zero)."""
    return nn.ModuleList([nn.Identity()] + [segmented(make_op(t, channels, stride)) for t in range(1, len(OPS))])


class SearchCell(nn.Module):
    """(s0 [S*b, C_pp, H0, W0], s1 [S*b, C_p, H, W], segments [S], tokens [S, 14]) -> [S*b, 4C, H', W'],
    H' = H/2 in a reduction cell (edges from the cell inputs at stride 2)."""

    def __init__(
        self, prev_prev_channels: int, prev_channels: int, channels: int, reduction: bool, reduction_prev: bool
    ) -> None:
        super().__init__()
        self.reduction = reduction
        # c_{k-2} is at twice the resolution of c_{k-1} right after a reduction cell
        self.preprocess0 = (
            FactorizedReduce(prev_prev_channels, channels)
            if reduction_prev
            else ReLUConvBN(prev_prev_channels, channels, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(prev_channels, channels, 1, 1, 0)
        self.edges = nn.ModuleDict()
        for name, (_, p) in zip(EDGE_NAMES, _EDGES):
            self.edges[name] = _candidates(channels, 2 if reduction and p < 2 else 1)
        # route candidates: token 0 (`none`) is None; a preprocessing runs only for the segments that read it
        self._routes = [[None] + [functools.partial(call, op) for op in self.edges[name][1:]] for name in EDGE_NAMES]
        self._preprocess_routes = [[None, functools.partial(call, m)] for m in (self.preprocess0, self.preprocess1)]

    def forward(self, s0: Tensor, s1: Tensor, segments: Tensor, tokens: Tensor, gates: Gates | None = None) -> Tensor:
        """gates: this cell's 14 positions (Gates.positions), for the gradient search's G = 1 forward."""
        read_tokens = tokens if gates is None else gates.reads(tokens)  # gated: inputs of the recomputed paths too
        states: list[Tensor | None] = []
        for x, routes, edges in zip((s0, s1), self._preprocess_routes, _INPUT_EDGES):
            reads = (read_tokens[:, edges] != 0).any(dim=1).long()  # [S]: 1 where some edge reads this input
            states.append(ops.route(x, segments, reads, routes))
        for node in range(NODES):
            positions = [(NODE_OFFSETS[node] + p, p) for p in range(2 + node)]
            # states[p] is None only when no segment reads it, and then every choice there is `none`;
            # valid architectures (checked by the supernet) give every segment's node an input
            if gates is None:  # the node's sum of its routed edges (vaenas.ops.route_sum)
                states.append(ops.route_sum([(states[p], tokens[:, position], self._routes[position])
                                             for position, p in positions], segments))
                continue
            terms = [gates.choice(states[p], segments, position, int(tokens[0, position]), self._routes[position],
                                  self._output_shape(states[p], p)) for position, p in positions]
            terms = [term for term in terms if term is not None]
            states.append(sum(terms[1:], terms[0]))
        return torch.cat(states[2:], dim=1)

    def _output_shape(self, x: Tensor | None, predecessor: int) -> tuple[int, ...] | None:
        """Shape of an edge's output on x [b, C, H, W] (a `none` edge's zeros): halved from the
        inputs of a reduction cell."""
        if x is None or not (self.reduction and predecessor < 2):
            return None if x is None else tuple(x.shape)
        return (x.shape[0], x.shape[1], (x.shape[2] + 1) // 2, (x.shape[3] + 1) // 2)

    def export(self, child: nn.Module, tokens: list[int], group: int | None) -> None:
        """Copy the weights the child Cell of `tokens` [14] has (vaenas.spaces.nasnet.Cell)."""
        for name in ("preprocess0", "preprocess1"):
            if getattr(child, name) is not None:
                inherit_weights(getattr(child, name), getattr(self, name), group)
        for name, op in child.edges.items():
            inherit_weights(op, self.edges[name][tokens[EDGE_NAMES.index(name)]], group)


class NASNetSupernet(Supernet):
    """images [G*b, 3, H, W], archs [G, 28] (valid) -> logits [G*b, num_classes].

    C: channels of the first cells (stem 3C); layers: cells; reductions: indices of the reduction
    cells (None: layers//3 and 2*layers//3, as DARTS).
    """

    def __init__(
        self,
        space: NASNetSpace,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        reductions: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.space, self.num_classes = space, num_classes
        self.C, self.layers = C, layers
        self.reductions = reduction_cells(layers, reductions)
        stem_channels = 3 * C
        self.stem = SegmentedSequential(
            nn.Conv2d(3, stem_channels, 3, padding=1, bias=False), SegmentedBatchNorm2d(stem_channels)
        )
        prev_prev, prev, current = stem_channels, stem_channels, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for index in range(layers):
            reduction = index in self.reductions
            if reduction:
                current *= 2
            self.cells.append(SearchCell(prev_prev, prev, current, reduction, reduction_prev))
            reduction_prev = reduction
            prev_prev, prev = prev, NODES * current
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, images: Tensor, archs: Tensor, gates: Gates | None = None) -> Tensor:  # type: ignore[override]
        archs, segments = check_groups(images, archs, self.space)
        archs = self.space.check_valid(archs, "the supernet forward")  # a node with no input has no value
        check_single_path(archs, gates)
        normal, reduce = archs[:, :EDGES_PER_CELL], archs[:, EDGES_PER_CELL:]
        cell_gates = (None, None) if gates is None else (
            gates.positions(0, EDGES_PER_CELL), gates.positions(EDGES_PER_CELL, 2 * EDGES_PER_CELL))
        s0 = s1 = self.stem(images, segments)
        for cell in self.cells:
            tokens, gated = (reduce, cell_gates[1]) if cell.reduction else (normal, cell_gates[0])
            s0, s1 = s1, cell(s0, s1, segments, tokens, gated)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def child_options(self) -> dict:
        return {
            "C": self.C, "layers": self.layers, "num_classes": self.num_classes,
            "auxiliary": False, "reductions": self.reductions,
        }  # fmt: skip

    def export_child(self, arch: Tensor, group: int | None = None) -> nn.Module:
        tokens = self.space.validate(arch)
        child = self.space.build_child(tokens, **self.child_options()).to(self.classifier.weight)
        inherit_weights(child.stem, self.stem, group)
        for child_cell, cell in zip(child.cells, self.cells):
            cell_tokens = tokens[EDGES_PER_CELL:] if cell.reduction else tokens[:EDGES_PER_CELL]
            cell.export(child_cell, cell_tokens.tolist(), group)
        inherit_weights(child.classifier, self.classifier, group)
        return child

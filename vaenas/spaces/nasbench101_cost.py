"""Exact batched params and FLOPs of NAS-Bench-101 children, without building them (cost_table.py).

NAS-Bench-101 has no additive per-token table: the channels of a vertex are the output's channels
split over the vertices that feed the output, or the max of its successors' (compute_vertex_channels),
so an op's cost depends on the whole cell. This evaluates that closed form for LongTensor[N, 26] with
tensor ops: prune (keep the vertices on an input -> output path), vertex channels per stack, then per
cell the 1x1 projections from the input, the vertex ops (conv 3x3 and 1x1 with batch norm; max-pool
costs nothing) and the input -> output projection; plus the stem and the classifier. Counts follow
FlopCounterMode: 2 FLOPs per multiply-add of a conv or linear layer, nothing for batch norm, pooling,
additions. Integer arithmetic (int64), returned as float64: equal to space.cost for every cell
(tests/spaces/test_cost_table.py).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from vaenas.spaces import nasbench101_graph as graph
from vaenas.spaces.base import SearchSpace
from vaenas.spaces.nasbench101_network import NASBench101Network

_V = graph.NUM_VERTICES
_OUT = _V - 1
_INTERIOR = range(1, _V - 1)
#: kernel area of each op label: conv3x3, conv1x1; max-pool (2) has no parameters or FLOPs
_KERNEL_AREA = torch.tensor([9, 1, 0])
_CONV_LABELS = torch.tensor([1, 1, 0])


def _defaults() -> dict[str, Any]:
    signature = inspect.signature(NASBench101Network.__init__)
    return {name: p.default for name, p in signature.parameters.items()
            if name in ("stem_channels", "num_stacks", "cells_per_stack", "num_classes")}


def pruned_adjacency(archs: Tensor) -> Tensor:
    """BoolTensor[N, 7, 7]: the edges between vertices on an input -> output path (graph.prune's cell,
    vertices kept in place)."""
    edges = graph.adjacency(archs)
    reach = graph.reachability(edges)
    vertices = torch.arange(_V)
    from_input = reach[:, 0, :] | (vertices == 0)
    to_output = reach[:, :, _OUT] | (vertices == _OUT)
    kept = from_input & to_output
    return edges & kept[:, :, None] & kept[:, None, :]


def vertex_channels(edges: Tensor, out_channels: int) -> Tensor:
    """LongTensor[N, 7]: channels of the interior vertices 1..5 of pruned cells (0 where absent, and at
    the input and output), as compute_vertex_channels gives them for a cell of `out_channels`."""
    feeds = edges[:, :, _OUT].clone()
    feeds[:, 0] = False
    count = feeds.sum(dim=1)
    interior = out_channels // count.clamp(min=1)
    correction = out_channels % count.clamp(min=1)
    rank = feeds.long().cumsum(dim=1) - feeds.long()  # earlier output-feeding vertices get the remainder
    channels = torch.where(feeds, interior[:, None] + (rank < correction[:, None]).long(), 0)
    for v in reversed(_INTERIOR):  # successors first: each takes the max of the vertices it feeds
        successors = torch.where(edges[:, v, 1:_OUT], channels[:, 1:_OUT], 0).amax(dim=1)
        channels[:, v] = torch.where(feeds[:, v], channels[:, v], successors)
    return channels


def cell_costs(edges: Tensor, labels: Tensor, in_channels: int, out_channels: int, pixels: int) -> Tensor:
    """LongTensor[N, 2]: params and FLOPs of one cell (in -> out channels, `pixels` = H * W) of each
    pruned cell (edges [N, 7, 7], labels [N, 7] with the ops of vertices 1..5)."""
    channels = vertex_channels(edges, out_channels)[:, 1:_OUT]  # [N, 5]
    present = channels > 0
    projected = edges[:, 0, 1:_OUT] & present
    ops = labels[:, 1:_OUT]
    area, conv = _KERNEL_AREA[ops], _CONV_LABELS[ops]
    macs = (projected * in_channels * channels).sum(1) + (present * area * channels * channels).sum(1)
    params = macs + (2 * channels * (projected.long() + conv * present)).sum(1)  # + batch-norm weight, bias
    direct = edges[:, 0, _OUT].long()
    macs = macs + direct * in_channels * out_channels
    params = params + direct * (in_channels * out_channels + 2 * out_channels)
    return torch.stack([params, 2 * pixels * macs], dim=1)


class NASBench101Costs:
    """The cost model of NAS-Bench-101 children at one setting: costs(archs) -> float64 [N, 2], cost(arch);
    the interface of cost_table.CostTable except `expected` (see the module docstring)."""

    def __init__(self, space: SearchSpace, key: tuple, options: dict[str, Any]) -> None:
        unknown = set(options) - set(_defaults())
        if unknown:
            raise ValueError(f"{space.name}: unknown child options {sorted(unknown)}; known: {sorted(_defaults())}")
        self.space, self.key = space, key
        self.settings = {**_defaults(), **options}

    @property
    def image_size(self) -> int:
        return self.key[1]

    def costs(self, archs: Tensor, check: bool = True) -> Tensor:
        """float64 [N, 2]: params and FLOPs (one image) of each row of LongTensor[N, 26]."""
        archs = self.space.check_valid(archs, "a cost lookup") if check else torch.as_tensor(archs).long()
        s = self.settings
        edges = pruned_adjacency(archs)
        labels = torch.zeros(archs.shape[0], _V, dtype=torch.long)
        labels[:, 1:_OUT] = archs[:, graph.NUM_EDGE_BITS:]
        size, stem = self.image_size, s["stem_channels"]
        total = torch.tensor([9 * 3 * stem + 2 * stem, 2 * size * size * 9 * 3 * stem], dtype=torch.long)
        total = total.expand(archs.shape[0], 2).clone()
        in_channels = channels = stem
        for stack in range(s["num_stacks"]):
            if stack > 0:
                size, channels = size // 2, channels * 2  # the 2x2 max-pool, channel doubling
            for _ in range(s["cells_per_stack"]):
                total += cell_costs(edges, labels, in_channels, channels, size * size)
                in_channels = channels
        classes = s["num_classes"]
        total += torch.tensor([channels * classes + classes, 2 * channels * classes])
        return total.double()

    def cost(self, arch: Tensor) -> dict[str, float]:
        params, flops = self.costs(torch.as_tensor(arch).reshape(1, -1))[0].tolist()
        return {"params": params, "flops": flops}

    def expected(self, probabilities: Tensor) -> Tensor:
        raise ValueError(f"{self.space.name}: no expected cost: a cell's channels depend on its whole graph, "
                         "so no token has a cost of its own to weight by its probability")

"""The NASNet-like search space: the DARTS cell space where a node may take more than two inputs.

Paper appendix A.4 and DESIGN §3. A cell has two inputs (c_{k-2}, c_{k-1}: the outputs of the two
previous cells) and 4 intermediate nodes; node k (k = 0..3) has one edge from each of its 2 + k
predecessors (c_{k-2}, c_{k-1}, node 0, ..., node k-1), 14 edges per cell. Each edge carries one of
8 ops, `none` meaning "no edge". An architecture is 28 tokens: the normal cell's 14 edges, then the
reduction cell's 14, edges ordered by node and then by predecessor:

    position  0  1 | 2  3  4 | 5  6  7  8 | 9 10 11 12 13     (+14 for the reduction cell)
    node      0  0 | 1  1  1 | 2  2  2  2 | 3  3  3  3  3
    from     c0 c1 |c0 c1 n0 |c0 c1 n0 n1 |c0 c1 n0 n1 n2     (c0 = c_{k-2}, c1 = c_{k-1}, nI = node I)

The predecessor numbering (0, 1 = cell inputs, 2 + I = node I) is DARTS's genotype input index.
A node is the sum of its non-`none` inputs; an architecture is valid when every node has at least
one. The cell output concatenates the 4 nodes. Size: 8^28 strings.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vaenas.spaces.base import SearchSpace
from vaenas.spaces.layers import DilConv, FactorizedReduce, ReLUConvBN, SepConv

#: token -> op name, in the paper's order (appendix A.4)
OPS = (
    "none",
    "avg_pool_3x3",
    "max_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "dil_conv_3x3",
)
CELLS = ("normal", "reduce")
NODES = 4
EDGES_PER_CELL = sum(2 + node for node in range(NODES))  # 2 + 3 + 4 + 5 = 14
#: position of node k's first edge inside a cell
NODE_OFFSETS = tuple(sum(2 + j for j in range(node)) for node in range(NODES))  # (0, 2, 5, 9)
#: node of each of a cell's 14 edges
_NODE_OF_EDGE = torch.tensor([node for node in range(NODES) for _ in range(2 + node)])

#: DARTS's genotype record (quark0/darts cnn/genotypes.py): per cell, (op, input index) pairs, two per node
Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")


def edge_position(cell: int, node: int, predecessor: int) -> int:
    """Token position of the edge predecessor -> node in cell (0 normal, 1 reduce); predecessor in 0..node+1."""
    return cell * EDGES_PER_CELL + NODE_OFFSETS[node] + predecessor


def predecessor_name(predecessor: int) -> str:
    """'c_{k-2}', 'c_{k-1}' for the cell inputs, 'node I' for intermediate node I."""
    return ("c_{k-2}", "c_{k-1}")[predecessor] if predecessor < 2 else f"node {predecessor - 2}"


def make_op(token: int, channels: int, stride: int) -> nn.Module:
    """The DARTS op of a non-`none` token at `channels` channels: [B, C, H, W] -> [B, C, H/stride, W/stride]."""
    factories: dict[str, Callable[[], nn.Module]] = {
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, stride, padding=1, count_include_pad=False),
        "max_pool_3x3": lambda: nn.MaxPool2d(3, stride, padding=1),
        "skip_connect": lambda: nn.Identity() if stride == 1 else FactorizedReduce(channels, channels),
        "sep_conv_3x3": lambda: SepConv(channels, channels, 3, stride, 1),
        "sep_conv_5x5": lambda: SepConv(channels, channels, 5, stride, 2),
        "sep_conv_7x7": lambda: SepConv(channels, channels, 7, stride, 3),
        "dil_conv_3x3": lambda: DilConv(channels, channels, 3, stride, 2, dilation=2),
    }
    return factories[OPS[token]]()


class Cell(nn.Module):
    """One cell: (s0 [B, C_pp, H0, W0], s1 [B, C_p, H, W]) -> [B, 4 C, H', W'] (H' = H/2 in a reduction cell).

    As DARTS's `Cell`, except that edges whose op is `none` are absent, a node sums all its inputs, and
    a cell input that no edge reads gets no preprocessing (its weights would never get a gradient).
    """

    def __init__(
        self,
        tokens: list[int],
        prev_prev_channels: int,
        prev_channels: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        #: inputs[k]: the predecessors of node k with an op, in predecessor order
        self.inputs: list[list[int]] = []
        self.edges = nn.ModuleDict()
        for node in range(NODES):
            self.inputs.append([])
            for predecessor in range(2 + node):
                token = tokens[NODE_OFFSETS[node] + predecessor]
                if token == 0:
                    continue
                stride = 2 if reduction and predecessor < 2 else 1
                self.edges[f"node{node}_from{predecessor}"] = make_op(token, channels, stride)
                self.inputs[node].append(predecessor)
        used = {predecessor for node_inputs in self.inputs for predecessor in node_inputs}
        self.preprocess0: nn.Module | None = None
        self.preprocess1: nn.Module | None = None
        if 0 in used:
            # c_{k-2} is at twice the resolution of c_{k-1} right after a reduction cell
            self.preprocess0 = (
                FactorizedReduce(prev_prev_channels, channels)
                if reduction_prev
                else ReLUConvBN(prev_prev_channels, channels, 1, 1, 0)
            )
        if 1 in used:
            self.preprocess1 = ReLUConvBN(prev_channels, channels, 1, 1, 0)

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        states: list[Tensor | None] = [
            self.preprocess0(s0) if self.preprocess0 is not None else None,
            self.preprocess1(s1) if self.preprocess1 is not None else None,
        ]
        for node, predecessors in enumerate(self.inputs):
            terms = [self.edges[f"node{node}_from{p}"](states[p]) for p in predecessors]
            states.append(sum(terms[1:], terms[0]))
        return torch.cat(states[2:], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS's auxiliary classifier for an 8x8 feature map: [B, C, 8, 8] -> logits [B, num_classes]."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # its input also feeds the next cell or the classifier
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # 2x2 -> 1x1
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def reduction_cells(layers: int, reductions: Sequence[int] | None = None) -> tuple[int, ...]:
    """Indices of the reduction cells: `reductions` checked (distinct, in 0..layers-1, sorted), or
    DARTS's layers//3 and 2*layers//3 when None."""
    if reductions is None:
        if layers < 2:
            raise ValueError(f"nasnet: layers must be >= 2 (two reduction cells), got {layers}")
        return (layers // 3, 2 * layers // 3)
    cells = tuple(sorted(int(index) for index in reductions))
    if not cells or len(set(cells)) != len(cells) or cells[0] < 0 or cells[-1] >= layers:
        raise ValueError(f"nasnet: reductions must be distinct cell indices in 0..{layers - 1}, got {list(reductions)}")
    return cells


class NASNetCIFAR(nn.Module):
    """DARTS's NetworkCIFAR for one architecture: images [B, 3, 32, 32] -> logits [B, num_classes].

    Stem conv 3x3 to 3C channels, `layers` cells with reduction cells (channels doubled) at layers//3 and
    2*layers//3 (or at `reductions`), global average pooling, linear classifier. With `auxiliary`,
    training-mode forward returns (logits, auxiliary logits) from a head on the output of the last
    reduction cell (8x8 at 32 px with two reductions, as the head expects); eval mode returns logits only.
    No drop-path (DARTS's regulariser belongs to the training loop).
    """

    def __init__(
        self,
        tokens: list[int],
        channels: int,
        layers: int,
        num_classes: int,
        auxiliary: bool,
        reductions: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        reductions = reduction_cells(layers, reductions)
        self.auxiliary_after = reductions[-1]
        stem_channels = 3 * channels
        self.stem = nn.Sequential(nn.Conv2d(3, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels))
        prev_prev, prev, current = stem_channels, stem_channels, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        auxiliary_channels = prev
        for index in range(layers):
            reduction = index in reductions
            if reduction:
                current *= 2
            cell_tokens = tokens[EDGES_PER_CELL:] if reduction else tokens[:EDGES_PER_CELL]
            self.cells.append(Cell(cell_tokens, prev_prev, prev, current, reduction, reduction_prev))
            reduction_prev = reduction
            prev_prev, prev = prev, NODES * current
            if index == self.auxiliary_after:
                auxiliary_channels = prev
        self.auxiliary_head = AuxiliaryHeadCIFAR(auxiliary_channels, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        s0 = s1 = self.stem(images)
        auxiliary_logits = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if index == self.auxiliary_after and self.auxiliary_head is not None and self.training:
                auxiliary_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if auxiliary_logits is None else (logits, auxiliary_logits)


class NASNetSpace(SearchSpace):
    """The NASNet-like (DARTS variant) space: 28 edges x 8 ops, normal and reduction cell searched jointly.

    Constructor options are the child defaults of `build_child` and `cost`: C (initial channels), layers,
    num_classes, auxiliary, reductions (reduction cell indices; None: layers//3 and 2*layers//3). DARTS
    evaluates on CIFAR-10 at 36, 20, 10 and trains with the auxiliary head; it is off by default so that
    cost() counts only the network that is deployed.
    """

    name = "nasnet"
    vocab_sizes = (len(OPS),) * (2 * EDGES_PER_CELL)
    zero_token = OPS.index("none")

    def __init__(
        self,
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        auxiliary: bool = False,
        reductions: Sequence[int] | None = None,
    ) -> None:
        self.child_options = {
            "C": C, "layers": layers, "num_classes": num_classes, "auxiliary": auxiliary, "reductions": reductions,
        }  # fmt: skip

    # --- validity -----------------------------------------------------------------------------
    def _node_has_input(self, archs: Tensor) -> Tensor:
        """BoolTensor[N, 2, 4]: whether node k of cell c has at least one non-`none` incoming edge."""
        live = (archs.view(-1, len(CELLS), EDGES_PER_CELL) != 0).long()
        counts = torch.zeros(live.shape[0], len(CELLS), NODES, dtype=torch.long)
        return counts.index_add_(2, _NODE_OF_EDGE, live) > 0

    def is_valid(self, archs: Tensor) -> Tensor:
        archs = self.check_tokens(archs)
        return self._node_has_input(archs).flatten(1).all(dim=1)

    def invalid_reason(self, arch: Tensor) -> str | None:
        has_input = self._node_has_input(self.check_tokens(arch))[0]
        missing = (~has_input).nonzero()
        if missing.numel() == 0:
            return None
        cell, node = (int(i) for i in missing[0])
        return f"{CELLS[cell]} cell, node {node} has no input: all its {2 + node} incoming edges are 'none'"

    def position_name(self, position: int) -> str:
        cell, edge = divmod(position, EDGES_PER_CELL)
        node = int(_NODE_OF_EDGE[edge])
        return f"{CELLS[cell]} cell, node {node}, edge from {predecessor_name(edge - NODE_OFFSETS[node])}"

    def _check_all_valid(self, archs: Tensor, what: str) -> Tensor:
        """archs LongTensor[N, T] in range and valid, else ValueError naming the first bad row."""
        archs = self.check_tokens(archs)
        valid = self.is_valid(archs)
        if not bool(valid.all()):
            row = int((~valid).nonzero()[0])
            raise ValueError(f"{self.name}: {what} {row} is invalid: {self.invalid_reason(archs[row])}")
        return archs

    # --- sampling and variation ---------------------------------------------------------------
    def _resample_until_valid(self, n: int, draw: Callable[[Tensor], Tensor]) -> Tensor:
        """Rows i of LongTensor[n, T] from draw(pending row indices), redrawn while invalid (rejection)."""
        out = torch.empty(n, self.length, dtype=torch.long)
        pending = torch.arange(n)
        while pending.numel():
            candidates = draw(pending)
            ok = self.is_valid(candidates)
            out[pending[ok]] = candidates[ok]
            pending = pending[~ok]
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        # Rejection from the uniform distribution over all 8^28 strings is exactly uniform over the valid
        # ones; about 3.5 % of draws have an input-less node (sum over nodes of 8^-(2+k), both cells).
        return self._resample_until_valid(
            n, lambda rows: torch.randint(0, len(OPS), (len(rows), self.length), generator=generator)
        )

    def mutate(self, archs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Each row with one edge's op replaced by another op (uniform position, uniform new op), kept valid."""
        archs = self._check_all_valid(archs, "architecture")

        def draw(rows: Tensor) -> Tensor:
            mutants = archs[rows].clone()
            positions = torch.randint(0, self.length, (len(rows),), generator=generator)
            shifts = torch.randint(1, len(OPS), (len(rows),), generator=generator)
            index = torch.arange(len(rows))
            mutants[index, positions] = (mutants[index, positions] + shifts) % len(OPS)
            return mutants

        return self._resample_until_valid(archs.shape[0], draw)

    def crossover(self, parents_a: Tensor, parents_b: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Uniform crossover: each edge's op from either parent with probability 1/2, redrawn until valid."""
        parents_a = self._check_all_valid(parents_a, "parent_a")
        parents_b = self._check_all_valid(parents_b, "parent_b")
        if parents_a.shape != parents_b.shape:
            shapes = f"{tuple(parents_a.shape)} vs {tuple(parents_b.shape)}"
            raise ValueError(f"{self.name}: parents differ in shape: {shapes}")

        def draw(rows: Tensor) -> Tensor:
            from_a = torch.rand(len(rows), self.length, generator=generator) < 0.5
            return torch.where(from_a, parents_a[rows], parents_b[rows])

        return self._resample_until_valid(parents_a.shape[0], draw)

    # --- serialisation ------------------------------------------------------------------------
    def to_json(self, arch: Tensor) -> dict:
        """{"normal": [[op from c_{k-2}, op from c_{k-1}, op from node 0, ...] for node 0..3], "reduce": ...}."""
        tokens = self.validate(arch).tolist()
        return {
            cell_name: [
                [OPS[tokens[edge_position(cell, node, p)]] for p in range(2 + node)] for node in range(NODES)
            ]
            for cell, cell_name in enumerate(CELLS)
        }

    def from_json(self, data: dict | str) -> Tensor:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.name}: not JSON: {error}") from None
        if not isinstance(data, dict) or set(data) != set(CELLS):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{self.name}: expected an object with keys {list(CELLS)}, got {got}")
        tokens = [0] * self.length
        for cell, cell_name in enumerate(CELLS):
            nodes = data[cell_name]
            if not isinstance(nodes, list) or len(nodes) != NODES:
                raise ValueError(f"{self.name}: {cell_name} cell must list {NODES} nodes, got {nodes!r}")
            for node, ops in enumerate(nodes):
                if not isinstance(ops, list) or len(ops) != 2 + node:
                    raise ValueError(
                        f"{self.name}: {cell_name} cell, node {node} must list {2 + node} ops "
                        f"(from c_{{k-2}}, c_{{k-1}}, then nodes 0..{node - 1}), got {ops!r}"
                    )
                for predecessor, op in enumerate(ops):
                    position = edge_position(cell, node, predecessor)
                    if op not in OPS:
                        raise ValueError(
                            f"{self.name}: unknown op {op!r} at position {position} ({self.position_name(position)}); "
                            f"choose one of {', '.join(OPS)}"
                        )
                    tokens[position] = OPS.index(op)
        return self.validate(torch.tensor(tokens))

    def from_genotype(self, genotype: Any) -> Tensor:
        """LongTensor[28] of a DARTS genotype (namedtuple or dict with normal, normal_concat, reduce, reduce_concat).

        DARTS cells have 4 nodes of exactly two (op, input index) inputs each and may use any op of DARTS's
        list; ValueError when the genotype is outside this space (an op such as dil_conv_5x5, two edges
        from one input, a cell output that is not the concatenation of nodes 2..5).
        """
        tokens = [0] * self.length
        for cell, cell_name in enumerate(CELLS):
            pairs = list(_genotype_field(genotype, cell_name))
            concat = list(_genotype_field(genotype, f"{cell_name}_concat"))
            if len(pairs) != 2 * NODES:
                raise ValueError(
                    f"{self.name}: a DARTS genotype has 2 inputs for each of {NODES} nodes; "
                    f"{cell_name} has {len(pairs)} (op, input) pairs"
                )
            if concat != list(range(2, 2 + NODES)):
                raise ValueError(
                    f"{self.name}: cells concatenate all intermediate nodes [2, 3, 4, 5]; "
                    f"{cell_name}_concat is {concat}"
                )
            for index, (op, predecessor) in enumerate(pairs):
                node = index // 2
                where = f"{cell_name} cell, node {node} (DARTS node {node + 2})"
                if op not in OPS:
                    raise ValueError(f"{self.name}: op {op!r} of {where} is not in this space: {', '.join(OPS)}")
                if not 0 <= predecessor < 2 + node:
                    raise ValueError(f"{self.name}: {where} takes input {predecessor}, allowed 0..{node + 1}")
                position = edge_position(cell, node, predecessor)
                if tokens[position] != 0:
                    raise ValueError(
                        f"{self.name}: {where} has two edges from input {predecessor}; this space has one per pair"
                    )
                tokens[position] = OPS.index(op)
        return self.validate(torch.tensor(tokens))

    def to_genotype(self, arch: Tensor) -> Genotype:
        """The DARTS Genotype of arch [28] (pairs in predecessor order); ValueError if a node has != 2 inputs."""
        tokens = self.validate(arch).tolist()
        cells = []
        for cell, cell_name in enumerate(CELLS):
            pairs = []
            for node in range(NODES):
                inputs = [(OPS[tokens[edge_position(cell, node, p)]], p) for p in range(2 + node)]
                inputs = [(op, p) for op, p in inputs if op != "none"]
                if len(inputs) != 2:
                    raise ValueError(
                        f"{self.name}: {cell_name} cell, node {node} has {len(inputs)} inputs; "
                        "a DARTS genotype has exactly 2 per node"
                    )
                pairs += inputs
            cells.append(pairs)
        concat = list(range(2, 2 + NODES))
        return Genotype(normal=cells[0], normal_concat=concat, reduce=cells[1], reduce_concat=concat)

    # --- child networks -----------------------------------------------------------------------
    def build_child(self, arch: Tensor, **options: Any) -> nn.Module:
        """NASNetCIFAR of arch [28]; options override the space's C, layers, num_classes, auxiliary, reductions."""
        settings = self.child_settings(options)
        tokens = self.validate(arch).tolist()
        return NASNetCIFAR(
            tokens,
            settings["C"],
            settings["layers"],
            settings["num_classes"],
            bool(settings["auxiliary"]),
            settings["reductions"],
        )

    def example_input(self, batch_size: int = 1) -> Tensor:
        """Random CIFAR-sized images [batch_size, 3, 32, 32]."""
        return torch.randn(batch_size, 3, 32, 32)


def _genotype_field(genotype: Any, field: str) -> Any:
    """genotype.field for a namedtuple, genotype[field] for a dict; ValueError when absent."""
    value = genotype.get(field) if isinstance(genotype, dict) else getattr(genotype, field, None)
    if value is None:
        raise ValueError(f"nasnet: the genotype has no field {field!r}")
    return value

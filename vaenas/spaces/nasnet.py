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

Child networks (quark0/darts cnn/model.py, re-implemented): NASNetCIFAR (NetworkCIFAR, 32 px) and
NASNetImageNet (NetworkImageNet, 224 px), each with DARTS's auxiliary head after the last reduction
cell and drop path (`drop_path`) as options; both are active in training mode only.
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


def drop_path(x: Tensor, probability: Tensor) -> Tensor:
    """x [B, ...] with each sample's values zeroed with `probability` (a 0-dim tensor) and the kept ones
    divided by 1 - probability (DARTS utils.drop_path; the expectation is x).

    The probability is a tensor, not a float, so that a schedule that changes it every epoch does not
    make torch.compile specialise the graph on each value; the mask draws from the global RNG of x's device.
    """
    keep = 1.0 - probability
    mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) < keep
    return x * mask.to(x.dtype) / keep.to(x.dtype)


class Cell(nn.Module):
    """One cell: (s0 [B, C_pp, H0, W0], s1 [B, C_p, H, W]) -> [B, 4 C, H', W'] (H' = H/2 in a reduction cell).

    As DARTS's `Cell`, except that edges whose op is `none` are absent, a node sums all its inputs, and
    a cell input that no edge reads gets no preprocessing (its weights would never get a gradient).
    With `drop_probability` (a 0-dim tensor) in training mode, each edge's output except an identity's
    goes through drop_path, as in DARTS.
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

    def forward(self, s0: Tensor, s1: Tensor, drop_probability: Tensor | None = None) -> Tensor:
        states: list[Tensor | None] = [
            self.preprocess0(s0) if self.preprocess0 is not None else None,
            self.preprocess1(s1) if self.preprocess1 is not None else None,
        ]
        dropping = drop_probability is not None and self.training
        for node, predecessors in enumerate(self.inputs):
            terms = []
            for p in predecessors:
                edge = self.edges[f"node{node}_from{p}"]
                term = edge(states[p])
                terms.append(drop_path(term, drop_probability) if dropping and not isinstance(edge, nn.Identity)
                             else term)
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


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS's auxiliary classifier of NetworkImageNet, for a 7x7 feature map (after the last reduction
    cell at 224 px): [B, C, 7, 7] -> logits [B, num_classes]. As in DARTS's published experiments, no
    batch norm after the 2x2 conv (its code comments that one out for consistency with the paper)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),  # 7x7 -> 2x2
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # 2x2 -> 1x1
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


class NASNetNetwork(nn.Module):
    """What DARTS's NetworkCIFAR and NetworkImageNet share: `layers` cells after a stem, reduction cells
    (channels doubled) at layers//3 and 2*layers//3 (or at `reductions`), global average pooling, a
    linear classifier; the auxiliary head on the output of the last reduction cell; drop path.

    forward(images) -> logits [B, num_classes], or in training mode with the auxiliary head (logits,
    auxiliary logits). drop_path: the network has a 0-dim buffer `drop_path_prob` (not saved in the
    state_dict; 0 when built) that the training loop sets, e.g. increased linearly over the epochs
    as DARTS does; eval mode never drops. Subclasses define `stem_outputs(images) -> (s0, s1)`.
    """

    def _build(
        self, tokens: list[int], channels: int, layers: int, num_classes: int, auxiliary_head: type[nn.Module] | None,
        reductions: Sequence[int] | None, drop_path: bool, stem_channels: tuple[int, int], reduction_prev: bool,
    ) -> None:
        reductions = reduction_cells(layers, reductions)
        self.auxiliary_after = reductions[-1]
        (prev_prev, prev), current = stem_channels, channels
        self.cells = nn.ModuleList()
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
        self.auxiliary_head = auxiliary_head(auxiliary_channels, num_classes) if auxiliary_head else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)
        if drop_path:
            self.register_buffer("drop_path_prob", torch.zeros(()), persistent=False)
        else:
            self.drop_path_prob: Tensor | None = None

    def stem_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        s0, s1 = self.stem_outputs(images)
        auxiliary_logits = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if index == self.auxiliary_after and self.auxiliary_head is not None and self.training:
                auxiliary_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if auxiliary_logits is None else (logits, auxiliary_logits)


class NASNetCIFAR(NASNetNetwork):
    """DARTS's NetworkCIFAR for one architecture: images [B, 3, 32, 32] -> logits [B, num_classes].

    Stem conv 3x3 to 3C channels, then the cells (NASNetNetwork). With `auxiliary`, training-mode
    forward returns (logits, auxiliary logits) from AuxiliaryHeadCIFAR (8x8 input: 32 px with two
    reductions); eval mode returns logits only. With `drop_path`, training-mode forward drops edge
    outputs with probability `drop_path_prob`.
    """

    def __init__(
        self,
        tokens: list[int],
        channels: int,
        layers: int,
        num_classes: int,
        auxiliary: bool,
        reductions: Sequence[int] | None = None,
        drop_path: bool = False,
    ) -> None:
        super().__init__()
        stem_channels = 3 * channels
        self.stem = nn.Sequential(nn.Conv2d(3, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels))
        self._build(tokens, channels, layers, num_classes, AuxiliaryHeadCIFAR if auxiliary else None, reductions,
                    drop_path, (stem_channels, stem_channels), reduction_prev=False)

    def stem_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        s = self.stem(images)
        return s, s


class NASNetImageNet(NASNetNetwork):
    """DARTS's NetworkImageNet for one architecture: images [B, 3, 224, 224] -> logits [B, num_classes].

    Two stems: stem0 (conv 3x3 stride 2 to C/2, BN, ReLU, conv 3x3 stride 2 to C, BN; 224 -> 56 px)
    gives c_{k-2} of the first cell, stem1 (ReLU, conv 3x3 stride 2, BN; -> 28 px) its c_{k-1}; so the
    first cell reads inputs of two resolutions (reduction_prev). The auxiliary head is
    AuxiliaryHeadImageNet (7x7 input at 224 px). Options as NASNetCIFAR.
    """

    def __init__(
        self,
        tokens: list[int],
        channels: int,
        layers: int,
        num_classes: int,
        auxiliary: bool,
        reductions: Sequence[int] | None = None,
        drop_path: bool = False,
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"nasnet: the ImageNet stem halves C; C must be even, got {channels}")
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, channels // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),  # stem0's output is also the first cell's c_{k-2}
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self._build(tokens, channels, layers, num_classes, AuxiliaryHeadImageNet if auxiliary else None, reductions,
                    drop_path, (channels, channels), reduction_prev=True)

    def stem_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        s0 = self.stem0(images)
        return s0, self.stem1(s0)


#: the child networks by their `stem` option
NETWORKS = {"cifar": NASNetCIFAR, "imagenet": NASNetImageNet}


class NASNetSpace(SearchSpace):
    """The NASNet-like (DARTS variant) space: 28 edges x 8 ops, normal and reduction cell searched jointly.

    Constructor options are the child defaults of `build_child` and `cost`: C (initial channels), layers,
    num_classes, auxiliary, reductions (reduction cell indices; None: layers//3 and 2*layers//3),
    drop_path (the child has DARTS's drop path, see NASNetNetwork), stem ("cifar": NASNetCIFAR for
    32 px images; "imagenet": NASNetImageNet for 224 px). DARTS evaluates on CIFAR-10 at 36, 20, 10 and
    on ImageNet at 48, 14, 1000, and trains with the auxiliary head; it is off by default so that
    cost() counts only the network that is deployed.
    """

    name = "nasnet"
    #: strings (an upper bound of the distinct valid architectures: about 8^28)
    num_architectures = 8**28
    vocab_sizes = (len(OPS),) * (2 * EDGES_PER_CELL)
    zero_token = OPS.index("none")

    def __init__(
        self,
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        auxiliary: bool = False,
        reductions: Sequence[int] | None = None,
        drop_path: bool = False,
        stem: str = "cifar",
    ) -> None:
        self.child_options = {
            "C": C, "layers": layers, "num_classes": num_classes, "auxiliary": auxiliary, "reductions": reductions,
            "drop_path": drop_path, "stem": stem,
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
        """NASNetCIFAR or NASNetImageNet (option stem) of arch [28]; options override the space's C, layers,
        num_classes, auxiliary, reductions, drop_path, stem."""
        settings = self.child_settings(options)
        if settings["stem"] not in NETWORKS:
            raise ValueError(f"{self.name}: unknown stem {settings['stem']!r}; choose one of {', '.join(NETWORKS)}")
        tokens = self.validate(arch).tolist()
        return NETWORKS[settings["stem"]](
            tokens,
            settings["C"],
            settings["layers"],
            settings["num_classes"],
            bool(settings["auxiliary"]),
            settings["reductions"],
            bool(settings["drop_path"]),
        )

    def example_input(self, batch_size: int = 1) -> Tensor:
        """Random images of the child's size: [batch_size, 3, 32, 32], or 224 x 224 with the ImageNet stem."""
        size = 224 if self.child_options["stem"] == "imagenet" else 32
        return torch.randn(batch_size, 3, size, size)


def _genotype_field(genotype: Any, field: str) -> Any:
    """genotype.field for a namedtuple, genotype[field] for a dict; ValueError when absent."""
    value = genotype.get(field) if isinstance(genotype, dict) else getattr(genotype, field, None)
    if value is None:
        raise ValueError(f"nasnet: the genotype has no field {field!r}")
    return value

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
cell and drop path (`drop_path`) as options; both are active in training mode only. They live in
vaenas.spaces.nasnet_network and are re-exported here.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vaenas.spaces.base import SearchSpace
from vaenas.spaces.nasnet_network import (
    CELLS,
    EDGES_PER_CELL,
    NETWORKS,
    NODE_OFFSETS,
    NODES,
    OPS,
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    Cell,
    NASNetCIFAR,
    NASNetImageNet,
    NASNetNetwork,
    drop_path,
    make_op,
    reduction_cells,
)

__all__ = [  # the networks are re-exported: vaenas.spaces.nasnet is where users look for them
    "CELLS", "EDGES_PER_CELL", "NETWORKS", "NODES", "NODE_OFFSETS", "OPS", "AuxiliaryHeadCIFAR",
    "AuxiliaryHeadImageNet", "Cell", "Genotype", "NASNetCIFAR", "NASNetImageNet", "NASNetNetwork", "NASNetSpace",
    "drop_path", "edge_position", "make_op", "predecessor_name", "reduction_cells",
]

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

    def canonical_child_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """reductions as the cell indices it stands for (None: layers//3 and 2*layers//3)."""
        if "layers" not in options:
            return options
        return {**options, "reductions": list(reduction_cells(options["layers"], options.get("reductions")))}

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

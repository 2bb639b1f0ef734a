"""NAS-Bench-201 (NATS-Bench topology) search space: 6 edges of a 4-node cell, 5 operations each.

Tokens are the edge operations in the order the edges appear in the official `arch_str`
(e01, e02, e12, e03, e13, e23) with the op codes of ../shared/data/nasbench201/README.md:
0 none, 1 skip_connect, 2 nor_conv_1x1, 3 nor_conv_3x3, 4 avg_pool_3x3. Every one of the
5^6 = 15,625 strings is a valid cell (NAS-Bench-201 keeps the cells whose output is disconnected).

The child network is the NAS-Bench-201 CIFAR macro skeleton (TinyNetwork of
D-X-Dong/AutoDL-Projects `lib/models/cell_infers/tiny_network.py`, operations of
`lib/models/cell_operations.py`), re-implemented here.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vaenas.spaces.base import SearchSpace

logger = logging.getLogger(__name__)

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (source node, target node) of each token, in arch_str order.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_NODES = 4

# The official index order (NAS-Bench-201 meta file) is not a mixed-radix order of the tokens
# (the all-`none` cell is index 1651), so index_of needs the table of a benchmark file. These are
# searched in order; VAENAS_NB201_CSV overrides them.
_INDEX_FILE_NAME = "nb201_test_acc_200ep.csv.gz"
_INDEX_FILE_CANDIDATES = (Path(__file__).resolve().parents[1] / "groundtruth" / _INDEX_FILE_NAME,)


def _radix_code(archs: Tensor) -> Tensor:
    """LongTensor[N]: the base-5 number of each row of archs [N, 6], position 0 most significant."""
    weights = len(OPS) ** torch.arange(len(EDGES) - 1, -1, -1, device=archs.device)
    return (archs * weights).sum(dim=1)


def _radix_decode(codes: Tensor) -> Tensor:
    """Inverse of _radix_code: LongTensor[N, 6]."""
    weights = len(OPS) ** torch.arange(len(EDGES) - 1, -1, -1, device=codes.device)
    return (codes[:, None] // weights) % len(OPS)


# --- child network (NAS-Bench-201 CIFAR skeleton) -----------------------------------------------
class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d (no bias) -> BatchNorm2d, the NAS-Bench-201 convolution op."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The `none` op: a zero tensor shaped like its input (cells keep C and resolution)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mul(0.0)


def _make_op(op: int, channels: int) -> nn.Module:
    """The module of op code `op` inside a cell (stride 1, C_in == C_out, as in every cell)."""
    name = OPS[op]
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class InferCell(nn.Module):
    """A NAS-Bench-201 cell: node j = sum over i < j of op_ij(node i); the output is node 3."""

    def __init__(self, arch: list[int], channels: int) -> None:
        super().__init__()
        self.edges = EDGES
        self.layers = nn.ModuleList(_make_op(op, channels) for op in arch)

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for target in range(1, NUM_NODES):
            nodes.append(
                sum(layer(nodes[source]) for layer, (source, end) in zip(self.layers, self.edges) if end == target)
            )
        return nodes[-1]


class ResNetBasicBlock(nn.Module):
    """The stride-2 residual reduction block between NAS-Bench-201 stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NASBench201Network(nn.Module):
    """The NAS-Bench-201 CIFAR network (TinyNetwork): stem, 3 stages of N cells, 2 reductions.

    Input [B, 3, H, W] float; output logits [B, num_classes]. (TinyNetwork also returns the
    pooled features; a child here returns logits only, like every vaenas child.)
    """

    def __init__(self, arch: list[int], channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        blocks: list[nn.Module] = []
        c_prev = channels
        for stage in range(3):
            c_stage = channels * 2**stage
            if stage > 0:
                blocks.append(ResNetBasicBlock(c_prev, c_stage))
            blocks.extend(InferCell(arch, c_stage) for _ in range(cells_per_stage))
            c_prev = c_stage
        self.cells = nn.Sequential(*blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.global_pooling(self.lastact(self.cells(self.stem(x))))
        return self.classifier(features.flatten(1))


# --- the space --------------------------------------------------------------------------------
class NASBench201Space(SearchSpace):
    """NAS-Bench-201: LongTensor[N, 6] of op codes 0..4, every string valid.

    index_file: a benchmark CSV (gzip) with columns `index` and `arch_str` that fixes the official
      index order for index_of / from_index; default: VAENAS_NB201_CSV, then the copy in
      vaenas/groundtruth. Read on first use.
    """

    name = "nasbench201"
    #: distinct architectures (canonical keys): 5 ops on each of 6 edges
    num_architectures = 5**6
    vocab_sizes = (len(OPS),) * len(EDGES)
    zero_token = OPS.index("none")
    num_architectures = len(OPS) ** len(EDGES)

    def __init__(self, index_file: str | os.PathLike | None = None) -> None:
        self._index_file = index_file
        self._code_to_index: Tensor | None = None  # [15625] official index of each radix code
        self._index_to_code: Tensor | None = None  # [15625] inverse permutation

    def position_name(self, position: int) -> str:
        source, target = EDGES[position]
        return f"edge e{source}{target}"

    def is_valid(self, archs: Tensor) -> Tensor:
        archs = self.check_tokens(archs)
        return torch.ones(archs.shape[0], dtype=torch.bool)

    # --- sampling and variation ---------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(len(OPS), (n, len(EDGES)), generator=generator)

    def mutate(self, archs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Each row with the op of one uniformly chosen edge replaced by a different op."""
        archs = self.check_tokens(archs).clone()
        rows = torch.arange(archs.shape[0])
        positions = torch.randint(len(EDGES), (archs.shape[0],), generator=generator)
        # adding 1..4 modulo 5 gives each of the other four ops with equal probability
        shift = torch.randint(1, len(OPS), (archs.shape[0],), generator=generator)
        archs[rows, positions] = (archs[rows, positions] + shift) % len(OPS)
        return archs

    def crossover(self, parents_a: Tensor, parents_b: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Uniform crossover: each edge's op from either parent with probability 1/2."""
        parents_a, parents_b = self.check_tokens(parents_a), self.check_tokens(parents_b)
        if parents_a.shape != parents_b.shape:
            raise ValueError(f"parents must have the same shape, got {tuple(parents_a.shape)} and {tuple(parents_b.shape)}")
        take_a = torch.rand(parents_a.shape, generator=generator) < 0.5
        return torch.where(take_a, parents_a, parents_b)

    # --- official strings and indices ---------------------------------------------------------
    def to_arch_str(self, arch: Tensor) -> str:
        """The official string of one architecture [6], e.g. `|nor_conv_3x3~0|+|...|`."""
        tokens = self.check_tokens(arch)[0].tolist()
        nodes = []
        for target in range(1, NUM_NODES):
            parts = [f"{OPS[op]}~{source}" for op, (source, end) in zip(tokens, EDGES) if end == target]
            nodes.append("|" + "|".join(parts) + "|")
        return "+".join(nodes)

    def from_arch_str(self, arch_str: str) -> Tensor:
        """LongTensor[6] of an official string; ValueError naming the bad part."""
        if not isinstance(arch_str, str):
            raise ValueError(f"{self.name}: arch_str must be a string, got {type(arch_str).__name__}")
        nodes = arch_str.split("+")
        if len(nodes) != NUM_NODES - 1:
            raise ValueError(f"{self.name}: arch_str {arch_str!r} has {len(nodes)} nodes separated by '+', expected 3")
        tokens = []
        for target, node in enumerate(nodes, start=1):
            if len(node) < 2 or not (node.startswith("|") and node.endswith("|")):
                raise ValueError(f"{self.name}: node {target} part {node!r} of {arch_str!r} must be '|op~i|...|'")
            parts = node[1:-1].split("|")
            if len(parts) != target:
                raise ValueError(f"{self.name}: node {target} part {node!r} must have {target} inputs, got {len(parts)}")
            for source, part in enumerate(parts):
                op, _, input_node = part.partition("~")
                if op not in OPS:
                    raise ValueError(f"{self.name}: unknown operation {op!r} in {part!r}: choose one of {', '.join(OPS)}")
                if input_node != str(source):
                    raise ValueError(f"{self.name}: part {part!r} of node {target} must read node {source} ('{op}~{source}')")
                tokens.append(OPS.index(op))
        # the string lists edges grouped by target node, which is exactly the token order EDGES
        return torch.tensor(tokens, dtype=torch.long)

    def _load_index_table(self) -> None:
        paths = [self._index_file] if self._index_file is not None else []
        if not paths and os.environ.get("VAENAS_NB201_CSV"):
            paths = [os.environ["VAENAS_NB201_CSV"]]
        paths = paths or list(_INDEX_FILE_CANDIDATES)
        path = next((Path(p) for p in paths if Path(p).is_file()), None)
        if path is None:
            raise FileNotFoundError(
                f"{self.name}: the official index order needs a NAS-Bench-201 CSV with columns index, arch_str; "
                f"looked for {', '.join(str(p) for p in paths)} (pass index_file= or set VAENAS_NB201_CSV)"
            )
        with gzip.open(path, "rt", newline="") as handle:
            rows = [(int(row["index"]), row["arch_str"]) for row in csv.DictReader(handle)]
        if len(rows) != self.num_architectures:
            raise ValueError(f"{self.name}: {path} has {len(rows)} rows, expected {self.num_architectures}")
        indices = torch.tensor([index for index, _ in rows])
        codes = _radix_code(torch.stack([self.from_arch_str(arch_str) for _, arch_str in rows]))
        code_to_index = torch.full((self.num_architectures,), -1, dtype=torch.long)
        code_to_index[codes] = indices
        if bool((code_to_index < 0).any()) or sorted(indices.tolist()) != list(range(self.num_architectures)):
            raise ValueError(f"{self.name}: {path} does not list every architecture exactly once")
        index_to_code = torch.empty_like(code_to_index)
        index_to_code[code_to_index] = torch.arange(self.num_architectures)
        self._code_to_index, self._index_to_code = code_to_index, index_to_code
        logger.debug("loaded the NAS-Bench-201 index order from %s", path)

    def index_of(self, archs: Tensor) -> Tensor:
        """LongTensor[N]: the official NAS-Bench-201 index of each row of archs [N, 6]."""
        archs = self.check_tokens(archs)
        if self._code_to_index is None:
            self._load_index_table()
        return self._code_to_index[_radix_code(archs)]

    def from_index(self, indices: Tensor) -> Tensor:
        """LongTensor[N, 6]: the architectures with the official indices [N] (inverse of index_of)."""
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if bool(((indices < 0) | (indices >= self.num_architectures)).any()):
            raise ValueError(f"{self.name}: indices must lie in 0..{self.num_architectures - 1}")
        if self._index_to_code is None:
            self._load_index_table()
        return _radix_decode(self._index_to_code[indices])

    # --- serialisation ------------------------------------------------------------------------
    def to_json(self, arch: Tensor) -> dict:
        return {"space": self.name, "arch_str": self.to_arch_str(arch)}

    def from_json(self, data: dict | str) -> Tensor:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.name}: not valid JSON: {error}") from None
        if not isinstance(data, dict) or "arch_str" not in data:
            raise ValueError(f"{self.name}: expected an object with key 'arch_str', got {data!r}")
        if data.get("space", self.name) != self.name:
            raise ValueError(f"{self.name}: the JSON describes an architecture of space {data['space']!r}")
        return self.from_arch_str(data["arch_str"])

    # --- child networks -----------------------------------------------------------------------
    def build_child(self, arch: Tensor, **options: Any) -> nn.Module:
        """NASBench201Network of one architecture [6]; options: channels=16, cells_per_stage=5,
        num_classes=10 (CIFAR-10; 100 for CIFAR-100, 120 for ImageNet16-120)."""
        return NASBench201Network(self.validate(arch).tolist(), **options)

    def example_input(self, batch_size: int = 1) -> Tensor:
        return torch.randn(batch_size, 3, 32, 32)

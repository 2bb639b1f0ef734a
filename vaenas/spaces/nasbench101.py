"""The NAS-Bench-101 search space (paper appendix A.5; Ying et al. 2019).

26 tokens: 21 edge bits of the 7x7 upper-triangular adjacency matrix (row-major: (0,1), (0,2), ...,
(0,6), (1,2), ..., (5,6)), then the ops of vertices 1..5 as NAS-Bench-101 labels (0 conv3x3-bn-relu,
1 conv1x1-bn-relu, 2 maxpool3x3). Valid: at most 9 edges and a path from the input (vertex 0) to
the output (vertex 6). Identical networks share the NAS-Bench-101 graph hash (canonical_key).

Graph helpers live in nasbench101_graph, the network in nasbench101_network.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vaenas import _extension
from vaenas.spaces import nasbench101_graph as graph
from vaenas.spaces.base import DecodeConstraints, SearchSpace
from vaenas.spaces.nasbench101_network import NASBench101Network

logger = logging.getLogger(__name__)

_E = graph.NUM_EDGE_BITS
_MAX_TRIES = 100  # retries of the rejection loops; the fallbacks below are then taken


def _uniform_pick(mask: Tensor, generator: torch.Generator | None) -> Tensor:
    """LongTensor[N]: one index drawn uniformly among the True entries of each row of mask [N, K].

    A row without True entries gets an arbitrary index; callers mask those rows out.
    """
    scores = torch.rand(mask.shape, generator=generator)
    return torch.where(mask, scores, torch.full_like(scores, -1.0)).argmax(dim=1)


class NASBench101Space(SearchSpace):
    """NAS-Bench-101 cells as 26-token strings (see the module docstring)."""

    name = "nasbench101"
    #: distinct cells (graph hashes), as the benchmark counts them
    num_architectures = 423_624
    vocab_sizes = (2,) * graph.NUM_EDGE_BITS + (3,) * graph.NUM_OPS
    #: probability that a mutation moves an edge (the paper's swap) rather than changing one op
    edge_mutation_probability = 0.5

    # --- validity -----------------------------------------------------------------------------
    def is_valid(self, archs: Tensor) -> Tensor:
        """BoolTensor[N]: at most 9 edges and the output reachable from the input."""
        archs = self.check_tokens(archs)
        return (graph.num_edges(archs) <= graph.MAX_EDGES) & graph.is_connected(archs)

    def invalid_reason(self, arch: Tensor) -> str | None:
        arch = torch.as_tensor(arch).reshape(1, -1)
        edges = int(graph.num_edges(arch)[0])
        if edges > graph.MAX_EDGES:
            return f"it has {edges} edges, at most {graph.MAX_EDGES} are allowed"
        if not bool(graph.is_connected(arch)[0]):
            return "it is not connected: no path leads from the input (vertex 0) to the output (vertex 6)"
        return None

    def position_name(self, position: int) -> str:
        if position < _E:
            source, destination = graph.EDGE_PAIRS[position]
            return f"edge {source}->{destination}"
        return f"op of vertex {position - _E + 1}"

    def decode_constraints(self) -> DecodeConstraints:
        budget_mask = torch.zeros(self.length, dtype=torch.bool)
        budget_mask[:_E] = True
        return DecodeConstraints(torch.tensor(self.vocab_sizes, dtype=torch.long), budget_mask, graph.MAX_EDGES)

    def canonical_key(self, archs: Tensor) -> list[Any]:
        """The NAS-Bench-101 hash (32 hex characters) of each row of archs [N, 26].

        Every row must be connected (ValueError otherwise); rows with more than 9 edges are hashed
        like valid ones. The specification is nasbench101_graph.arch_hash (about 45 us per row);
        when vaenas._C is built the batched C++ op vaenas.ops.nb101_hash computes the same
        strings (about 6 us per row on one core, see tests/ops/test_nb101_hash.py). The tabular
        searches hash hundreds of thousands of candidate rows, most of them rejected.
        """
        archs = self.check_tokens(archs).cpu()
        if not _extension.available():
            return [graph.arch_hash(row) for row in archs.tolist()]
        # Imported here: vaenas.ops imports vaenas.spaces.
        from vaenas.ops.nb101_enumerate import hex_fingerprints, nb101_hash

        fingerprints = nb101_hash(archs)
        keys = hex_fingerprints(fingerprints)
        # The op writes zeros for a cell without hash (output unreachable); the reference then
        # raises its ValueError for that row.
        for row in (fingerprints == 0).all(dim=1).nonzero().flatten().tolist():
            keys[row] = graph.arch_hash(archs[row].tolist())
        return keys

    # --- sampling and variation ---------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n cells [n, 26] int64: the top 9 of 21 uniform scores are the edges, rows that are not
        connected are drawn again (paper A.5); ops uniform. Every row has exactly 9 edge bits set."""
        out = torch.empty(n, self.length, dtype=torch.long)
        missing = torch.arange(n)
        while missing.numel() > 0:
            m = missing.numel()
            scores = torch.rand(m, _E, generator=generator)
            drawn = torch.zeros(m, self.length, dtype=torch.long)
            drawn.scatter_(1, scores.topk(graph.MAX_EDGES, dim=1).indices, 1)
            drawn[:, _E:] = torch.randint(0, 3, (m, graph.NUM_OPS), generator=generator)
            connected = graph.is_connected(drawn)
            out[missing[connected]] = drawn[connected]
            missing = missing[~connected]
        return out

    def mutate(self, archs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One mutant of each valid row of archs [N, 26].

        With probability `edge_mutation_probability` the paper's edge move: a random 1-bit and a
        random 0-bit are swapped, drawn again from the parent until the cell is connected; else one
        random op changes to one of the two other ops. A row whose edges admit no connected swap
        (e.g. the single edge 0->6) within the retries gets the op change instead.
        """
        archs = self.check_valid(archs, "mutate")
        n = archs.shape[0]
        children = archs.clone()
        move_edge = torch.rand(n, generator=generator) < self.edge_mutation_probability
        pending = move_edge.nonzero().flatten()
        for _ in range(_MAX_TRIES):
            if pending.numel() == 0:
                break
            edges = archs[pending, :_E]
            one = _uniform_pick(edges == 1, generator)
            zero = _uniform_pick(edges == 0, generator)
            trial = archs[pending].clone()
            rows = torch.arange(pending.numel())
            trial[rows, one], trial[rows, zero] = 0, 1
            connected = graph.is_connected(trial)
            children[pending[connected]] = trial[connected]
            pending = pending[~connected]
        change_op = ~move_edge
        change_op[pending] = True
        rows = change_op.nonzero().flatten()
        if rows.numel() > 0:
            position = _E + torch.randint(0, graph.NUM_OPS, (rows.numel(),), generator=generator)
            shift = torch.randint(1, 3, (rows.numel(),), generator=generator)  # never the same op
            children[rows, position] = (archs[rows, position] + shift) % 3
        return children

    def crossover(self, parents_a: Tensor, parents_b: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One child of each pair of valid rows of parents_a, parents_b [N, 26].

        Edges (paper A.5): the child is a's edges with one pair exchanged, an edge i that a has
        and b lacks removed and an edge j that b has and a lacks added; a disconnected result is
        dropped and another pair drawn. Pairs with no such (i, j), or none connected within the
        retries, keep a's edges. Ops: each op comes from a or b with probability 1/2.
        """
        parents_a = self.check_valid(parents_a, "crossover")
        parents_b = self.check_valid(parents_b, "crossover")
        if parents_a.shape != parents_b.shape:
            raise ValueError(
                f"{self.name}: crossover needs parents of equal shape, got {tuple(parents_a.shape)} "
                f"and {tuple(parents_b.shape)}"
            )
        n = parents_a.shape[0]
        children = parents_a.clone()
        from_b = torch.rand(n, graph.NUM_OPS, generator=generator) < 0.5
        children[:, _E:] = torch.where(from_b, parents_b[:, _E:], parents_a[:, _E:])
        only_a = (parents_a[:, :_E] == 1) & (parents_b[:, :_E] == 0)
        only_b = (parents_a[:, :_E] == 0) & (parents_b[:, :_E] == 1)
        pending = (only_a.any(dim=1) & only_b.any(dim=1)).nonzero().flatten()
        for _ in range(_MAX_TRIES):
            if pending.numel() == 0:
                break
            remove = _uniform_pick(only_a[pending], generator)
            add = _uniform_pick(only_b[pending], generator)
            trial = children[pending].clone()
            rows = torch.arange(pending.numel())
            trial[rows, remove], trial[rows, add] = 0, 1
            connected = graph.is_connected(trial)
            children[pending[connected]] = trial[connected]
            pending = pending[~connected]
        return children

    # --- serialisation ------------------------------------------------------------------------
    def to_json(self, arch: Tensor) -> dict:
        """{"matrix": 7x7 0/1 lists, "ops": ["input", "conv3x3-bn-relu", ..., "output"]} (unpruned)."""
        matrix, labels = graph.to_spec(self.validate(arch).tolist())
        return {"matrix": matrix, "ops": ["input", *(graph.OP_NAMES[label] for label in labels[1:-1]), "output"]}

    def from_json(self, data: dict | str) -> Tensor:
        """LongTensor[26] of a 7-vertex spec, or of a smaller (pruned) spec re-embedded as in
        nasbench101_graph.embed; ValueError naming the problem."""
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, dict) or "matrix" not in data or "ops" not in data:
            raise ValueError(f"{self.name}: expected a dict with 'matrix' and 'ops', got {data!r}")
        matrix, ops = data["matrix"], data["ops"]
        if not isinstance(ops, list) or not isinstance(matrix, list) or not all(isinstance(r, list) for r in matrix):
            raise ValueError(f"{self.name}: 'matrix' must be a list of lists and 'ops' a list, got {data!r}")
        n = len(ops)
        if not 2 <= n <= graph.NUM_VERTICES:
            raise ValueError(f"{self.name}: a cell has 2 to 7 vertices, got {n} ops")
        if len(matrix) != n or any(len(row) != n for row in matrix):
            raise ValueError(f"{self.name}: 'matrix' must be {n}x{n} to match the {n} ops")
        for i in range(n):
            for j in range(n):
                if matrix[i][j] not in (0, 1):
                    raise ValueError(f"{self.name}: matrix[{i}][{j}] = {matrix[i][j]!r}, entries must be 0 or 1")
                if j <= i and matrix[i][j]:
                    raise ValueError(
                        f"{self.name}: matrix[{i}][{j}] is set; the matrix must be strictly upper triangular"
                    )
        if ops[0] != "input" or ops[-1] != "output":
            raise ValueError(f"{self.name}: ops must start with 'input' and end with 'output', got {ops}")
        labels = [graph.INPUT_LABEL]
        for v, op in enumerate(ops[1:-1], start=1):
            if op not in graph.OP_NAMES:
                raise ValueError(
                    f"{self.name}: unknown op {op!r} at vertex {v}: choose one of {', '.join(graph.OP_NAMES)}"
                )
            labels.append(graph.OP_NAMES.index(op))
        labels.append(graph.OUTPUT_LABEL)
        return self.validate(torch.tensor(graph.embed(matrix, labels)))

    # --- child networks and cost --------------------------------------------------------------
    def build_child(self, arch: Tensor, device: torch.device | str | None = None, **options: Any) -> nn.Module:
        """NAS-Bench-101's network of the pruned cell (nasbench101_network.NASBench101Network).

        device: where the parameters are created ("meta" builds the module without memory, e.g.
        to count parameters); options: stem_channels, num_stacks, cells_per_stack, num_classes.
        """
        matrix, labels = graph.prune(*graph.to_spec(self.validate(arch).tolist()))
        return NASBench101Network(matrix, labels, device=device, **options)

    def example_input(self, batch_size: int = 1) -> Tensor:
        """A random CIFAR-10-sized batch [batch_size, 3, 32, 32] float32."""
        return torch.randn(batch_size, 3, 32, 32)


# --- every cell, by hash ------------------------------------------------------------------------


def cache_dir() -> Path:
    """$VAENAS_CACHE_DIR, else ~/.cache/vaenas."""
    return Path(os.environ.get("VAENAS_CACHE_DIR") or Path.home() / ".cache" / "vaenas")


def _encode_cells(matrices: np.ndarray, labels: np.ndarray, num_vertices: np.ndarray) -> np.ndarray:
    """[N, 26] int8 tokens of padded enumeration cells ([N, 7, 7], [N, 7], [N]), re-embedded
    as nasbench101_graph.embed does: output moved to vertex 6, unused vertices empty, op 0."""
    count = matrices.shape[0]
    v = graph.NUM_VERTICES
    place = np.tile(np.arange(v), (count, 1))  # place[c, old vertex] = new vertex
    place[np.arange(count), num_vertices - 1] = v - 1
    full = np.zeros((count, v, v), dtype=np.int8)
    rows, sources, destinations = np.nonzero(matrices)
    full[rows, place[rows, sources], place[rows, destinations]] = 1
    ops = np.where(labels[:, 1 : v - 1] >= 0, labels[:, 1 : v - 1], 0).astype(np.int8)
    edge_rows, edge_cols = zip(*graph.EDGE_PAIRS)
    return np.concatenate([full[:, list(edge_rows), list(edge_cols)], ops], axis=1)


class CellTable(Mapping[str, Tensor]):
    """{NAS-Bench-101 hash: LongTensor[26]} over all cells, backed by one tensor.

    tokens [N, 26] int64 and hashes (N 32-character strings) are the rows in enumeration order;
    looking a hash up gives a view of its row. One dict of row numbers instead of N small tensors
    keeps loading at about 0.5 s.
    """

    def __init__(self, hashes: list[str], tokens: Tensor) -> None:
        self.hashes = hashes
        self.tokens = tokens
        self._rows = {key: row for row, key in enumerate(hashes)}

    def __getitem__(self, key: str) -> Tensor:
        return self.tokens[self._rows[key]]

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self.hashes)

    def __len__(self) -> int:
        return len(self.hashes)


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(fingerprints [N, 16] uint8, tokens [N, 26] int8) from the cache, None if absent or unusable."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            digests, tokens = stored["fingerprints"], stored["tokens"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        logger.warning("ignoring the unreadable cache %s (%s); enumerating the cells again", path, error)
        return None
    if digests.ndim != 2 or digests.shape[1] != 16 or tokens.shape != (digests.shape[0], graph.NUM_EDGE_BITS + graph.NUM_OPS):
        logger.warning("ignoring the cache %s: unexpected shapes %s, %s", path, digests.shape, tokens.shape)
        return None
    return digests, tokens


def _write_cache(path: Path, digests: np.ndarray, tokens: np.ndarray) -> None:
    """Write to a temporary file in the same folder, then rename: a concurrent reader sees either
    no cache or the whole file, and a failed write leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False)
    try:
        with handle:
            np.savez(handle, fingerprints=digests, tokens=tokens)
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates it private
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def cells_by_hash() -> CellTable:
    """Every NAS-Bench-101 cell by its hash: 423,624 entries of LongTensor[26].

    Computed once from the C++ enumeration (vaenas.ops.nb101_enumerate, about 5 s of 2 idle
    cores) and cached at cache_dir()/nb101_cells.npz (18 MB); later calls read the cache (0.3 s).
    """
    path = cache_dir() / "nb101_cells.npz"
    cached = _read_cache(path)
    if cached is not None:
        digests, tokens = cached
    else:
        # The space layer uses vaenas.ops here and in canonical_key: the enumeration is a compiled op.
        from vaenas.ops.nb101_enumerate import nb101_enumerate

        cells = nb101_enumerate(graph.NUM_VERTICES, graph.MAX_EDGES)
        digests = cells.fingerprints.numpy()
        tokens = _encode_cells(cells.matrices.numpy(), cells.labels.numpy(), cells.num_vertices.numpy())
        _write_cache(path, digests, tokens)
        logger.info("cached %d NAS-Bench-101 cells at %s", len(tokens), path)
    text = digests.tobytes().hex()
    hashes = [text[i : i + 32] for i in range(0, len(text), 32)]
    return CellTable(hashes, torch.from_numpy(tokens.astype(np.int64)))

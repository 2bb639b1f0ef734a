"""NAS-Bench-101 cell graphs: the 26-token encoding, connectivity, pruning and the official hash.

Encoding (paper appendix A.5): tokens 0..20 are the edge bits of the upper triangle of the 7x7
adjacency matrix, row-major ((0,1), (0,2), ..., (0,6), (1,2), ..., (5,6)); tokens 21..25 are the
NAS-Bench-101 labels of the intermediate vertices 1..5 (0 conv3x3-bn-relu, 1 conv1x1-bn-relu,
2 maxpool3x3). Vertex 0 is the input (label -1), vertex 6 the output (label -2).

Pruning and hashing follow google-research/nasbench (`nasbench/lib/model_spec.py::_prune`,
`nasbench/lib/graph_util.py::hash_module`) so that keys match the published dataset's hashes.
"""

from __future__ import annotations

import hashlib
import itertools

import torch
from torch import Tensor

NUM_VERTICES = 7
NUM_EDGE_BITS = NUM_VERTICES * (NUM_VERTICES - 1) // 2  # 21
NUM_OPS = NUM_VERTICES - 2  # 5 intermediate vertices
MAX_EDGES = 9
INPUT_LABEL, OUTPUT_LABEL = -1, -2
OP_NAMES = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")

#: (source, destination) of each edge bit, row-major over the upper triangle
EDGE_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (i, j) for i in range(NUM_VERTICES) for j in range(i + 1, NUM_VERTICES)
)
_ROWS = torch.tensor([i for i, _ in EDGE_PAIRS])
_COLS = torch.tensor([j for _, j in EDGE_PAIRS])


def adjacency(archs: Tensor) -> Tensor:
    """Adjacency matrices of LongTensor[N, 26] architectures: BoolTensor[N, 7, 7], upper triangular."""
    matrices = torch.zeros(archs.shape[0], NUM_VERTICES, NUM_VERTICES, dtype=torch.bool, device=archs.device)
    matrices[:, _ROWS, _COLS] = archs[:, :NUM_EDGE_BITS] != 0
    return matrices


def reachability(matrices: Tensor) -> Tensor:
    """Transitive closure of BoolTensor[N, V, V] DAGs: R[n, i, j] = a path of >= 1 edge leads i -> j.

    Squaring doubles the covered path length (1, 2, 4, 8 >= V - 1 after three squarings for V = 7),
    so the closure costs log2(V) batched matmuls instead of V breadth-first steps.
    """
    closure = matrices.float()
    covered = 1
    while covered < matrices.shape[-1] - 1:
        closure = ((closure + closure @ closure) > 0).float()
        covered *= 2
    return closure > 0


def is_connected(archs: Tensor) -> Tensor:
    """BoolTensor[N]: whether the output (vertex 6) is reachable from the input (vertex 0)."""
    return reachability(adjacency(archs))[:, 0, NUM_VERTICES - 1]


def num_edges(archs: Tensor) -> Tensor:
    """LongTensor[N]: number of edges (set edge bits) of each architecture."""
    return (archs[:, :NUM_EDGE_BITS] != 0).sum(dim=1)


def to_spec(arch: list[int]) -> tuple[list[list[int]], list[int]]:
    """The unpruned 7x7 adjacency matrix and 7 labels (-1 input, ops, -2 output) of 26 tokens."""
    matrix = [[0] * NUM_VERTICES for _ in range(NUM_VERTICES)]
    for bit, (i, j) in zip(arch[:NUM_EDGE_BITS], EDGE_PAIRS):
        matrix[i][j] = int(bit != 0)
    return matrix, [INPUT_LABEL, *(int(op) for op in arch[NUM_EDGE_BITS:]), OUTPUT_LABEL]


def embed(matrix: list[list[int]], labels: list[int]) -> list[int]:
    """26 tokens of an n-vertex spec (n <= 7), e.g. a pruned cell.

    Vertices 0..n-2 keep their place, the output moves to vertex 6, the unused vertices get no
    edges and op token 0 (the convention of vaenas' cells_by_hash).
    """
    n = len(labels)
    place = list(range(n - 1)) + [NUM_VERTICES - 1]
    full = [[0] * NUM_VERTICES for _ in range(NUM_VERTICES)]
    for i in range(n):
        for j in range(n):
            if matrix[i][j]:
                full[place[i]][place[j]] = 1
    ops = [0] * NUM_OPS
    for v in range(1, n - 1):
        ops[v - 1] = int(labels[v])
    return [full[i][j] for i, j in EDGE_PAIRS] + ops


def prune(matrix: list[list[int]], labels: list[int]) -> tuple[list[list[int]], list[int]] | None:
    """Remove the vertices not on an input -> output path (nasbench ModelSpec._prune).

    Returns (matrix, labels) of the kept vertices in their original order, or None when the output
    is not reachable from the input.
    """
    n = len(labels)
    from_input, frontier = {0}, [0]
    while frontier:
        top = frontier.pop()
        for v in range(top + 1, n):
            if matrix[top][v] and v not in from_input:
                from_input.add(v)
                frontier.append(v)
    to_output, frontier = {n - 1}, [n - 1]
    while frontier:
        top = frontier.pop()
        for v in range(top):
            if matrix[v][top] and v not in to_output:
                to_output.add(v)
                frontier.append(v)
    kept = sorted(from_input & to_output)
    if len(kept) < 2:
        return None
    return [[matrix[i][j] for j in kept] for i in kept], [labels[v] for v in kept]


def hash_module(matrix: list[list[int]], labels: list[int]) -> str:
    """The NAS-Bench-101 graph hash of a (pruned) cell: 32 hex characters.

    Same computation as nasbench/lib/graph_util.py::hash_module: md5 of str((out_degree,
    in_degree, label)) per vertex, V rounds of refinement with the sorted in- and out-neighbour
    hashes, then md5 of str(sorted(hashes)).
    """
    n = len(labels)
    in_degree = [sum(matrix[i][j] for i in range(n)) for j in range(n)]
    out_degree = [sum(row) for row in matrix]
    hashes = [
        hashlib.md5(str((out_degree[v], in_degree[v], labels[v])).encode("utf-8")).hexdigest() for v in range(n)
    ]
    for _ in range(n):
        hashes = [
            hashlib.md5(
                (
                    "".join(sorted(hashes[w] for w in range(n) if matrix[w][v]))
                    + "|"
                    + "".join(sorted(hashes[w] for w in range(n) if matrix[v][w]))
                    + "|"
                    + hashes[v]
                ).encode("utf-8")
            ).hexdigest()
            for v in range(n)
        ]
    return hashlib.md5(str(sorted(hashes)).encode("utf-8")).hexdigest()


def arch_hash(arch: list[int]) -> str:
    """The NAS-Bench-101 hash of 26 tokens (pruned first); ValueError when not connected."""
    pruned = prune(*to_spec(arch))
    if pruned is None:
        raise ValueError("the output is not reachable from the input: the cell has no NAS-Bench-101 hash")
    return hash_module(*pruned)


def is_full_dag(matrix: list[list[int]]) -> bool:
    """No dangling vertex: every vertex but the output has an out-edge, every one but the input an in-edge."""
    n = len(matrix)
    rows_ok = all(any(matrix[i]) for i in range(n - 1))
    cols_ok = all(any(matrix[i][j] for i in range(n)) for j in range(1, n))
    return rows_ok and cols_ok


def enumerate_reference(max_vertices: int, max_edges: int, num_ops: int = 3) -> dict[str, tuple]:
    """Pure-Python exhaustive enumeration (nasbench's generate_graph.py), for small max_vertices.

    Returns {hash: (matrix, labels)} of the first cell met with each hash, in the order of
    vertex count, adjacency bit mask (nasbench's column-major bit order) and labeling. Cost grows
    as 2^(V(V-1)/2) * num_ops^(V-2): use it for max_vertices <= 5.
    """
    cells: dict[str, tuple] = {}
    for n in range(2, max_vertices + 1):
        pairs = [(x, y) for y in range(n) for x in range(y)]  # bit index x + y(y-1)/2, as gen_is_edge_fn
        for bits in range(2 ** len(pairs)):
            matrix = [[0] * n for _ in range(n)]
            for index, (x, y) in enumerate(pairs):
                matrix[x][y] = (bits >> index) & 1
            if bin(bits).count("1") > max_edges or not is_full_dag(matrix):
                continue
            for ops in itertools.product(range(num_ops), repeat=n - 2):
                labels = [INPUT_LABEL, *ops, OUTPUT_LABEL]
                cells.setdefault(hash_module(matrix, labels), (matrix, labels))
    return cells

"""vaenas.ops.nb101_enumerate: NAS-Bench-101 cells in C++ (CPU): enumeration and graph hash.

- nb101_enumerate: every cell of the space. The specification is the pure-Python port of nasbench's
  generate_graph.py, vaenas.spaces.nasbench101_graph.enumerate_reference (practical up to 5
  vertices); the C++ op (csrc/kernels/nb101_enumerate.cpp) enumerates all 423,624 cells of 7
  vertices / 9 edges in about 11 s on 2 cores.
- nb101_hash: the official graph hash of a batch of 26-token cells. The specification is
  vaenas.spaces.nasbench101_graph.arch_hash (prune, then hash_module).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from vaenas import _extension

MAX_VERTICES = 7


class NB101Cells(NamedTuple):
    """The unique cells, each padded to 7 vertices (its n vertices first, the output at n - 1).

    matrices [N, 7, 7] uint8 (0/1 adjacency), labels [N, 7] int8 (-1 input, 0/1/2 ops, -2 output,
    -3 padding), num_vertices [N] int64, fingerprints [N, 16] uint8 (md5 digest of the official
    NAS-Bench-101 hash; `hex_fingerprints` turns them into the dataset's 32-character keys).
    """

    matrices: Tensor
    labels: Tensor
    num_vertices: Tensor
    fingerprints: Tensor


def nb101_enumerate(max_vertices: int = 7, max_edges: int = 9) -> NB101Cells:
    """All cells of at most `max_vertices` vertices and `max_edges` edges, one per graph hash.

    Cells are ordered by vertex count, then in the order nasbench's generate_graph.py meets them;
    each hash class is represented by the first cell met. (7, 9) gives the 423,624 NAS-Bench-101 cells.
    """
    if not 2 <= max_vertices <= MAX_VERTICES:
        raise ValueError(f"max_vertices must be in [2, {MAX_VERTICES}], got {max_vertices}")
    if not 0 <= max_edges <= MAX_VERTICES * (MAX_VERTICES - 1) // 2:
        raise ValueError(f"max_edges must be in [0, 21], got {max_edges}")
    _extension.load()
    return NB101Cells(*torch.ops.vaenas.nb101_enumerate(int(max_vertices), int(max_edges)))


def nb101_hash(archs: Tensor) -> Tensor:
    """md5 digests [N, 16] uint8 of the NAS-Bench-101 graph hash of archs [N, 26] int64 (CPU).

    archs are in NASBench101Space's encoding: 21 upper-triangle edge bits (0/1, row-major), then
    the op labels (0 conv3x3, 1 conv1x1, 2 maxpool) of vertices 1..5. Each cell is pruned and
    hashed as nasbench's graph_util.hash_module does; hex_fingerprints() of row i equals
    vaenas.spaces.nasbench101_graph.arch_hash(archs[i].tolist()) for every cell whose output is
    reachable from the input, whatever its edge count (cells with more than 9 edges are hashed too,
    as arch_hash does). A cell whose output is not reachable from the input has no hash (arch_hash
    raises): its row is 16 zero bytes. Tokens out of range raise RuntimeError naming the row.
    About 6 us per row on one core (arch_hash: 46 us), rows in parallel (at::parallel_for).
    """
    _extension.load()
    return torch.ops.vaenas.nb101_hash(archs)


def hex_fingerprints(fingerprints: Tensor) -> list[str]:
    """[N, 16] uint8 digests -> N lower-case hex strings (the dataset's `hash` column)."""
    # One hex string sliced in Python: 3x faster than bytes(row).hex() per numpy row at N = 20k.
    text = fingerprints.contiguous().numpy().tobytes().hex()
    return [text[i : i + 32] for i in range(0, len(text), 32)]


def _register_fake() -> None:
    @torch.library.register_fake("vaenas::nb101_enumerate")
    def _(max_vertices: int, max_edges: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # The number of cells is known only after enumerating: a data-dependent size.
        count = torch.library.get_ctx().new_dynamic_size()
        return (
            torch.empty(count, MAX_VERTICES, MAX_VERTICES, dtype=torch.uint8),
            torch.empty(count, MAX_VERTICES, dtype=torch.int8),
            torch.empty(count, dtype=torch.int64),
            torch.empty(count, 16, dtype=torch.uint8),
        )

    @torch.library.register_fake("vaenas::nb101_hash")
    def _(archs: Tensor) -> Tensor:
        torch._check(archs.dim() == 2 and archs.shape[1] == 26, lambda: f"archs must be [N, 26], got {archs.shape}")
        return archs.new_empty((archs.shape[0], 16), dtype=torch.uint8)


# The fake implementation attaches to the schema declared in csrc/ops.cpp, so it needs the
# extension; without it the op cannot run anyway and nb101_enumerate() raises with the reason.
if _extension.available():
    _register_fake()

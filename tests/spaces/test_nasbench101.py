"""The NAS-Bench-101 space: encoding, validity, sampler and variation, hash, JSON, networks, cells."""

from __future__ import annotations

import csv
import gzip
import sys
import time
from pathlib import Path

import pytest
import torch

import vaenas.groundtruth
from vaenas import _extension
from vaenas.ops.nb101_enumerate import hex_fingerprints
from vaenas.spaces import get_space
from vaenas.spaces import nasbench101 as nb101
from vaenas.spaces import nasbench101_graph as graph

# The 1,000 cells with structure, hash and parameter count, committed in tests/fixtures
# (source and licence: tests/fixtures/NOTICE).
SPECS_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "nb101_1k_with_specs.csv.gz"
SAMPLE_FILE = Path(vaenas.groundtruth.__file__).parent / "nb101_sample20k_by_hash.csv.gz"


@pytest.fixture
def space() -> nb101.NASBench101Space:
    return get_space("nasbench101")


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(2024)


@pytest.fixture(scope="module")
def published_cells() -> list[dict]:
    """Rows of nb101_1k_with_specs: hash, pruned matrix, labels, trainable parameters, 26 tokens."""
    cells = []
    with gzip.open(SPECS_FILE, "rt") as handle:
        for row in csv.DictReader(handle):
            n, bits = int(row["num_vertices"]), str(row["adjacency_bits"])
            matrix = [[0] * n for _ in range(n)]
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
            for bit, (i, j) in zip(bits, pairs, strict=True):
                matrix[i][j] = int(bit)
            labels = [int(label) for label in row["ops"].split()]
            cells.append(
                dict(hash=str(row["hash"]), matrix=matrix, labels=labels, params=int(row["trainable_parameters"]),
                     tokens=torch.tensor(graph.embed(matrix, labels)))
            )
    assert len(cells) == 1000
    return cells


def _arch(edges: list[tuple[int, int]], ops: tuple[int, ...] = (0, 1, 2, 0, 1)) -> torch.Tensor:
    arch = torch.zeros(26, dtype=torch.long)
    for edge in edges:
        arch[graph.EDGE_PAIRS.index(edge)] = 1
    arch[21:] = torch.tensor(ops)
    return arch


# --- encoding and validity ----------------------------------------------------------------------


def test_encoding_layout(space):
    assert space.name == "nasbench101" and space.length == 26
    assert space.vocab_sizes == (2,) * 21 + (3,) * 5
    names = [space.position_name(t) for t in range(26)]
    assert names[0] == "edge 0->1" and names[5] == "edge 0->6" and names[6] == "edge 1->2"
    assert names[20] == "edge 5->6"
    assert names[21] == "op of vertex 1" and names[25] == "op of vertex 5"
    constraints = space.decode_constraints()
    assert constraints.vocab_sizes.tolist() == list(space.vocab_sizes)
    assert constraints.budget_mask.tolist() == [True] * 21 + [False] * 5
    assert constraints.budget_max == 9


def test_validity_rules(space):
    chain = _arch([(0, 1), (1, 2), (2, 6)])
    no_path = _arch([(0, 1), (1, 2), (3, 6)])
    too_many = _arch([(0, j) for j in range(1, 7)] + [(1, 2), (2, 3), (3, 4), (4, 5)])  # 10 edges
    assert space.is_valid(torch.stack([chain, no_path, too_many])).tolist() == [True, False, False]
    assert space.invalid_reason(chain) is None
    assert "10 edges, at most 9" in space.invalid_reason(too_many)
    assert "not connected" in space.invalid_reason(no_path)


def test_bad_inputs_name_the_problem(space):
    good = _arch([(0, 6)])
    with pytest.raises(ValueError, match="26 tokens, got shape"):
        space.validate(good[:25])
    bad_edge = good.clone()
    bad_edge[2] = 2
    with pytest.raises(ValueError, match=r"invalid token 2 at position 2 \(edge 0->3\)"):
        space.validate(bad_edge)
    bad_op = good.clone()
    bad_op[22] = 3
    with pytest.raises(ValueError, match=r"invalid token 3 at position 22 \(op of vertex 2\)"):
        space.validate(bad_op)
    with pytest.raises(ValueError, match="10 edges"):
        space.validate(_arch([(0, j) for j in range(1, 7)] + [(1, 2), (2, 3), (3, 4), (4, 5)]))
    with pytest.raises(ValueError, match="not connected"):
        space.validate(_arch([(0, 1), (2, 6)]))
    with pytest.raises(ValueError, match="mutate needs valid architectures; row 1 is not: .*not connected"):
        space.mutate(torch.stack([good, _arch([(0, 1)])]))


# --- sampler and variation ----------------------------------------------------------------------


def test_sample_is_valid_with_exactly_nine_edges(space, generator):
    archs = space.sample(3000, generator)
    assert archs.shape == (3000, 26) and archs.dtype == torch.long
    assert bool(space.is_valid(archs).all())
    assert graph.num_edges(archs).unique().tolist() == [9]
    # every edge and every op value occurs (the sampler is not stuck on part of the space)
    assert bool((archs[:, :21].sum(dim=0) > 0).all())
    assert [int((archs[:, 21:] == op).sum()) > 3000 for op in range(3)] == [True] * 3
    again = space.sample(3000, torch.Generator().manual_seed(2024))
    assert torch.equal(archs, again)


def test_mutate_moves_one_edge_or_changes_one_op(space, generator):
    parents = space.sample(2000, generator)
    children = space.mutate(parents, generator)
    assert bool(space.is_valid(children).all())
    edge_changes = (children[:, :21] != parents[:, :21]).sum(dim=1)
    op_changes = (children[:, 21:] != parents[:, 21:]).sum(dim=1)
    edge_moved = (edge_changes == 2) & (op_changes == 0)
    op_changed = (edge_changes == 0) & (op_changes == 1)
    assert bool((edge_moved | op_changed).all())
    assert torch.equal(graph.num_edges(children), graph.num_edges(parents))
    assert 0.4 < float(edge_moved.float().mean()) < 0.6  # edge_mutation_probability = 0.5
    # a cell whose only connected edge set is itself (the single edge 0->6) still mutates, by an op
    lone = _arch([(0, 6)]).repeat(50, 1)
    mutants = space.mutate(lone, generator)
    assert bool(space.is_valid(mutants).all())
    assert torch.equal(mutants[:, :21], lone[:, :21])
    assert bool(((mutants[:, 21:] != lone[:, 21:]).sum(dim=1) == 1).all())


def test_crossover_exchanges_one_edge_pair_between_parents(space, generator):
    parents_a, parents_b = space.sample(2000, generator), space.sample(2000, generator)
    children = space.crossover(parents_a, parents_b, generator)
    assert bool(space.is_valid(children).all())
    edges_a, edges_b, edges_child = parents_a[:, :21], parents_b[:, :21], children[:, :21]
    removed = (edges_a == 1) & (edges_child == 0)
    added = (edges_a == 0) & (edges_child == 1)
    assert bool((removed.sum(dim=1) == added.sum(dim=1)).all()) and int(removed.sum(dim=1).max()) == 1
    assert bool((edges_b[removed] == 0).all()) and bool((edges_b[added] == 1).all())
    assert float((removed.sum(dim=1) == 1).float().mean()) > 0.9  # most pairs find a connected exchange
    ops = children[:, 21:]
    assert bool(((ops == parents_a[:, 21:]) | (ops == parents_b[:, 21:])).all())
    # identical edge sets: no pair to exchange, the child keeps them
    same = space.crossover(parents_a[:5], parents_a[:5], generator)
    assert torch.equal(same[:, :21], parents_a[:5, :21])


# --- hash, JSON ---------------------------------------------------------------------------------


def test_hash_reproduces_the_dataset_for_1000_cells(space, published_cells):
    keys = space.canonical_key(torch.stack([cell["tokens"] for cell in published_cells]))
    assert keys == [cell["hash"] for cell in published_cells]
    assert [graph.hash_module(c["matrix"], c["labels"]) for c in published_cells] == keys


def test_canonical_key_ignores_dangling_vertices_and_vertex_order(space):
    cell = _arch([(0, 1), (1, 2), (2, 6), (0, 6)], ops=(0, 1, 2, 0, 0))
    dangling = _arch([(0, 1), (1, 2), (2, 6), (0, 6), (0, 3), (1, 4)], ops=(0, 1, 1, 2, 2))
    moved = _arch([(0, 2), (2, 4), (4, 6), (0, 6)], ops=(2, 0, 0, 1, 0))  # same chain on vertices 2, 4
    other_op = _arch([(0, 1), (1, 2), (2, 6), (0, 6)], ops=(1, 1, 2, 0, 0))
    keys = space.canonical_key(torch.stack([cell, dangling, moved, other_op]))
    assert keys[0] == keys[1] == keys[2] != keys[3]


def test_json_round_trip(space, generator):
    archs = space.sample(100, generator)
    for arch in archs:
        data = space.to_json(arch)
        assert len(data["matrix"]) == 7 and data["ops"][0] == "input" and data["ops"][-1] == "output"
        assert torch.equal(space.from_json(data), arch)
        assert torch.equal(space.from_json(space.dumps(arch)), arch)


def test_from_json_embeds_a_pruned_spec(space):
    spec = {"matrix": [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
            "ops": ["input", "maxpool3x3", "conv1x1-bn-relu", "output"]}
    arch = space.from_json(spec)
    assert torch.equal(arch, _arch([(0, 1), (0, 2), (1, 6), (2, 6)], ops=(2, 1, 0, 0, 0)))
    assert space.canonical_key(arch[None]) == [graph.hash_module(spec["matrix"], [-1, 2, 1, -2])]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"matrix": [[0, 1], [0, 0]]}, "expected a dict with 'matrix' and 'ops'"),
        ({"matrix": [[0, 1], [0, 0]], "ops": "input output"}, "'ops' a list"),
        ({"matrix": [[0, 1], [0, 0]], "ops": ["input"]}, "2 to 7 vertices, got 1"),
        ({"matrix": [[0, 1, 0], [0, 0]], "ops": ["input", "maxpool3x3", "output"]}, "must be 3x3"),
        ({"matrix": [[0, 2], [0, 0]], "ops": ["input", "output"]}, r"matrix\[0\]\[1\] = 2"),
        ({"matrix": [[0, 1], [1, 0]], "ops": ["input", "output"]}, "strictly upper triangular"),
        ({"matrix": [[0, 1, 0], [0, 0, 1], [0, 0, 0]], "ops": ["input", "conv5x5", "output"]},
         "unknown op 'conv5x5' at vertex 1"),
        ({"matrix": [[0, 1], [0, 0]], "ops": ["output", "input"]}, "must start with 'input'"),
        ({"matrix": [[0, 1, 0], [0, 0, 0], [0, 0, 0]], "ops": ["input", "maxpool3x3", "output"]}, "not connected"),
    ],
)
def test_from_json_rejects_bad_specs(space, data, message):
    with pytest.raises(ValueError, match=message):
        space.from_json(data)


# --- networks -----------------------------------------------------------------------------------


def test_parameter_counts_match_the_dataset_for_1000_cells(space, published_cells):
    counts = []
    for cell in published_cells:
        model = space.build_child(cell["tokens"], device="meta")  # no memory, no initialisation
        counts.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
    assert counts == [cell["params"] for cell in published_cells]


@pytest.mark.parametrize(
    "edges",
    [
        [(0, 6)],  # input straight to output: one projection
        [(0, 1), (0, 2), (1, 3), (2, 3), (1, 6), (3, 6), (0, 6)],  # concatenation + input projection
        [(0, 1), (0, 2), (1, 2), (1, 6), (2, 6)],  # vertex 1 carries one more channel: truncation
    ],
)
def test_child_network_runs(space, generator, edges):
    arch = _arch(edges, ops=(0, 2, 1, 0, 0))
    model = space.build_child(arch, stem_channels=5, num_stacks=2, cells_per_stack=2)
    logits = model(space.example_input(2))
    assert logits.shape == (2, 10) and bool(torch.isfinite(logits).all())
    assert space.example_input(3).shape == (3, 3, 32, 32)


# --- every cell ---------------------------------------------------------------------------------


@pytest.mark.skipif(not _extension.available(), reason="vaenas._C is not built")
def test_cells_by_hash_covers_the_20k_sample_and_is_cached(space, generator, tmp_path, monkeypatch):
    monkeypatch.setenv("VAENAS_CACHE_DIR", str(tmp_path))
    cells = nb101.cells_by_hash()  # enumerates (11-18 s on 2 cores) and writes the cache
    assert len(cells) == 423_624 and cells.tokens.shape == (423_624, 26)
    assert (tmp_path / "nb101_cells.npz").is_file() and not list(tmp_path.glob("*.tmp"))
    with gzip.open(SAMPLE_FILE, "rt") as handle:
        sample = [str(row["hash"]) for row in csv.DictReader(handle)]
    assert len(sample) == 20_001
    assert [key for key in sample if key not in cells] == []
    # the encodings are valid cells whose hash is their key
    rows = torch.randint(0, len(cells), (2000,), generator=generator).tolist()
    keys = [cells.hashes[row] for row in rows]
    archs = torch.stack([cells[key] for key in keys])
    assert bool(space.is_valid(archs).all())
    assert space.canonical_key(archs) == keys

    # A second call reads the cache: the enumeration op is not called again.
    def no_enumeration(*arguments):
        raise AssertionError("cells_by_hash enumerated again instead of reading its cache")

    # (vaenas.ops re-exports the function under the module's name, so patch the module object)
    monkeypatch.setattr(sys.modules["vaenas.ops.nb101_enumerate"], "nb101_enumerate", no_enumeration)
    started = time.perf_counter()
    cached = nb101.cells_by_hash()
    assert time.perf_counter() - started < 10.0
    assert cached.hashes == cells.hashes and torch.equal(cached.tokens, cells.tokens)


@pytest.mark.skipif(not _extension.available(), reason="vaenas._C is not built")
def test_unreadable_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("VAENAS_CACHE_DIR", str(tmp_path))
    (tmp_path / "nb101_cells.npz").write_bytes(b"not a zip file")
    module = sys.modules["vaenas.ops.nb101_enumerate"]
    small = module.nb101_enumerate(4, 9)  # 91 cells stand in for the full enumeration
    monkeypatch.setattr(module, "nb101_enumerate", lambda max_vertices, max_edges: small)
    cells = nb101.cells_by_hash()
    assert len(cells) == 91 and set(cells) == set(hex_fingerprints(small.fingerprints))
    assert [path.name for path in tmp_path.iterdir()] == ["nb101_cells.npz"]
    assert len(nb101.cells_by_hash()) == 91  # the rewritten cache is read back

"""vaenas.ops.nb101_hash: the C++ NAS-Bench-101 graph hash against nasbench101_graph.arch_hash."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
import torch

from vaenas import _extension
from vaenas.ops import nb101_hash
from vaenas.ops.nb101_enumerate import hex_fingerprints
from vaenas.spaces import get_space
from vaenas.spaces import nasbench101_graph as graph

pytestmark = pytest.mark.skipif(not _extension.available(), reason="vaenas._C is not built")

# The 1,000 published cells, committed in tests/fixtures (source and licence: tests/fixtures/NOTICE).
SPECS_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "nb101_1k_with_specs.csv.gz"


@pytest.fixture
def space():
    return get_space("nasbench101")


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1101)


def _reference(archs: torch.Tensor) -> list[str]:
    return [graph.arch_hash(row) for row in archs.tolist()]


def test_equals_the_reference_on_sampled_and_mutated_cells(space, generator):
    sampled = space.sample(1500, generator)
    mutants = space.mutate(sampled, generator)
    twice = space.mutate(mutants, generator)
    children = space.crossover(sampled, twice, generator)
    archs = torch.cat([sampled, mutants, twice, children])  # 6,000 valid cells, 9 edges or fewer
    fingerprints = nb101_hash(archs)
    assert fingerprints.shape == (6000, 16) and fingerprints.dtype == torch.uint8
    assert hex_fingerprints(fingerprints) == _reference(archs)


def test_equals_the_reference_on_cells_with_fewer_edges_and_dangling_vertices(space, generator):
    # Random edge sets of 1..21 edges, kept when connected: many dangling vertices to prune, and
    # cells with more than 9 edges, which the reference hashes too.
    edges = torch.rand(4000, 21, generator=generator) < torch.rand(4000, 1, generator=generator)
    ops = torch.randint(0, 3, (4000, 5), generator=generator)
    archs = torch.cat([edges.long(), ops], dim=1)
    archs = archs[graph.is_connected(archs)]
    assert len(archs) > 1000 and int(graph.num_edges(archs).max()) > 9 and int(graph.num_edges(archs).min()) <= 3
    assert hex_fingerprints(nb101_hash(archs)) == _reference(archs)


def test_reproduces_the_1000_published_hashes():
    hashes, tokens = [], []
    with gzip.open(SPECS_FILE, "rt") as handle:
        for row in csv.DictReader(handle):
            n, bits = int(row["num_vertices"]), str(row["adjacency_bits"])
            matrix = [[0] * n for _ in range(n)]
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
            for bit, (i, j) in zip(bits, pairs, strict=True):
                matrix[i][j] = int(bit)
            tokens.append(graph.embed(matrix, [int(label) for label in row["ops"].split()]))
            hashes.append(str(row["hash"]))
    assert len(hashes) == 1000
    assert hex_fingerprints(nb101_hash(torch.tensor(tokens))) == hashes


def test_disconnected_cells_give_zero_fingerprints(space, generator):
    valid = space.sample(7, generator)
    no_edges = torch.zeros(1, 26, dtype=torch.long)
    only_input_side = torch.zeros(1, 26, dtype=torch.long)
    only_input_side[0, graph.EDGE_PAIRS.index((0, 1))] = 1
    only_input_side[0, graph.EDGE_PAIRS.index((2, 6))] = 1  # 0->1 and 2->6: no path
    archs = torch.cat([valid[:3], no_edges, valid[3:], only_input_side])
    fingerprints = nb101_hash(archs)
    zero = (fingerprints == 0).all(dim=1)
    assert zero.tolist() == [False] * 3 + [True] + [False] * 4 + [True]
    assert hex_fingerprints(fingerprints[~zero]) == _reference(valid)
    # canonical_key keeps the reference's behaviour for them: ValueError
    with pytest.raises(ValueError, match="not reachable"):
        space.canonical_key(archs)


def test_empty_batch_and_non_contiguous_input(space, generator):
    assert nb101_hash(torch.empty(0, 26, dtype=torch.long)).shape == (0, 16)
    archs = space.sample(50, generator)
    wide = torch.cat([archs, archs], dim=1)[:, :26]  # a strided view
    assert not wide.is_contiguous()
    assert hex_fingerprints(nb101_hash(wide)) == _reference(archs)


@pytest.mark.parametrize(
    "archs, message",
    [
        (torch.zeros(3, 26, dtype=torch.int32), "must be int64"),
        (torch.zeros(3, 26, dtype=torch.float32), "must be int64"),
        (torch.zeros(26, dtype=torch.long), r"must be \[N, 26\]"),
        (torch.zeros(3, 25, dtype=torch.long), r"must be \[N, 26\]"),
        (torch.zeros(2, 3, 26, dtype=torch.long), r"must be \[N, 26\]"),
    ],
)
def test_bad_shapes_and_dtypes_raise(archs, message):
    with pytest.raises(RuntimeError, match=message):
        nb101_hash(archs)


@pytest.mark.parametrize("position, value, what", [(4, 2, "an edge bit"), (0, -1, "an edge bit"), (23, 3, "an op label"),
                                                   (25, -1, "an op label")])
def test_tokens_out_of_range_raise_naming_the_row(space, generator, position, value, what):
    archs = space.sample(5, generator)
    archs[3, position] = value
    with pytest.raises(RuntimeError, match=f"row 3, token {position} \\({what}\\) is {value}"):
        nb101_hash(archs)


def test_opcheck(space, generator):
    archs = space.sample(37, generator)
    torch.library.opcheck(torch.ops.vaenas.nb101_hash.default, (archs,))
    torch.library.opcheck(torch.ops.vaenas.nb101_hash.default, (torch.empty(0, 26, dtype=torch.long),))


def test_canonical_key_uses_the_op_and_agrees_with_the_reference(space, generator, monkeypatch):
    archs = space.sample(300, generator)
    with_op = space.canonical_key(archs)
    monkeypatch.setattr(_extension, "available", lambda: False)
    assert space.canonical_key(archs) == with_op == _reference(archs)

"""vaenas.ops.nb101_enumerate: the C++ enumeration against the Python port of generate_graph.py."""

from __future__ import annotations

import pytest
import torch

from vaenas import _extension
from vaenas.ops.nb101_enumerate import hex_fingerprints, nb101_enumerate
from vaenas.spaces import nasbench101_graph as graph

pytestmark = pytest.mark.skipif(not _extension.available(), reason="vaenas._C is not built")


@pytest.fixture(scope="module")
def all_cells():
    """The full enumeration (7 vertices, 9 edges): 11-18 s on 2 cores, run once per module."""
    return nb101_enumerate(7, 9)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(101)


def test_full_enumeration_finds_the_published_423624_cells(all_cells):
    matrices, labels, num_vertices, fingerprints = all_cells
    assert matrices.shape == (423_624, 7, 7) and matrices.dtype == torch.uint8
    assert labels.shape == (423_624, 7) and labels.dtype == torch.int8
    assert num_vertices.shape == (423_624,) and num_vertices.dtype == torch.int64
    assert fingerprints.shape == (423_624, 16) and fingerprints.dtype == torch.uint8
    # cells per vertex count 2..7; the 2..5 counts are checked against Python in the test below
    assert torch.bincount(num_vertices, minlength=8)[2:].tolist() == [1, 6, 84, 2441, 62010, 359082]
    assert len(set(hex_fingerprints(fingerprints))) == 423_624


def test_cells_are_padded_pruned_dags_with_at_most_9_edges(all_cells):
    matrices, labels, num_vertices, _ = all_cells
    n = num_vertices[:, None]
    vertex = torch.arange(7)[None]
    inside = vertex < n
    assert torch.equal(matrices.triu(1), matrices)  # upper triangular, no self loop
    assert int(matrices.sum(dim=(1, 2)).max()) <= 9
    assert not bool(matrices[~inside].any()) and not bool(matrices.transpose(1, 2)[~inside].any())
    has_out = matrices.sum(dim=2) > 0
    has_in = matrices.sum(dim=1) > 0
    output = vertex == n - 1
    assert bool((has_out | ~inside | output).all()), "a vertex other than the output has no out-edge"
    assert bool((has_in | ~inside | (vertex == 0)).all()), "a vertex other than the input has no in-edge"
    assert bool((labels[:, 0] == -1).all())
    assert bool((labels[output] == -2).all())
    assert bool((labels[~inside] == -3).all())
    interior = inside & ~output & (vertex > 0)
    assert bool(((labels[interior] >= 0) & (labels[interior] <= 2)).all())


def test_fingerprints_are_the_official_hash_of_their_cell(all_cells, generator):
    matrices, labels, num_vertices, fingerprints = all_cells
    hexes = hex_fingerprints(fingerprints)
    for index in torch.randint(0, len(hexes), (300,), generator=generator).tolist():
        n = int(num_vertices[index])
        matrix = matrices[index, :n, :n].tolist()
        assert graph.hash_module(matrix, labels[index, :n].tolist()) == hexes[index]


@pytest.mark.parametrize("max_vertices, max_edges", [(2, 9), (3, 9), (4, 9), (5, 9), (5, 4), (4, 2), (3, 1)])
def test_small_limits_match_the_python_reference(max_vertices, max_edges):
    reference = graph.enumerate_reference(max_vertices, max_edges)
    matrices, labels, num_vertices, fingerprints = nb101_enumerate(max_vertices, max_edges)
    hexes = hex_fingerprints(fingerprints)
    assert set(hexes) == set(reference)
    assert len(hexes) == len(reference)
    # Same representative per class and same order as generate_graph.py (first met is kept).
    assert hexes == list(reference)
    for index, key in enumerate(hexes):
        n = int(num_vertices[index])
        assert (matrices[index, :n, :n].tolist(), labels[index, :n].tolist()) == reference[key]


@pytest.mark.parametrize("arguments", [(4, 9), (3, 2)])
def test_opcheck(arguments):
    torch.library.opcheck(torch.ops.vaenas.nb101_enumerate.default, arguments)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"max_vertices must be in \[2, 7\], got 8"):
        nb101_enumerate(8, 9)
    with pytest.raises(ValueError, match=r"max_edges must be in \[0, 21\], got -1"):
        nb101_enumerate(7, -1)
    # the C++ checks, reached by calling the op directly
    with pytest.raises(RuntimeError, match=r"max_vertices must be in \[2, 7\], got 1"):
        torch.ops.vaenas.nb101_enumerate(1, 9)
    with pytest.raises(RuntimeError, match=r"max_edges must be in \[0, 21\], got 22"):
        torch.ops.vaenas.nb101_enumerate(7, 22)

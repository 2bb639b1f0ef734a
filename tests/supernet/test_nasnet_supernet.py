"""The NASNet-like (DARTS) supernet: G-group forward, unchosen ops, export, bad input.

Tiny networks (C = 4, 3 cells, 16 px, 2 images per group, float64, one thread) keep the file at a
few seconds.
"""

import pytest
import torch
from supernet_checks import (
    check_bad_inputs,
    check_export_after_recalibration,
    check_groups_equal_separate_forwards,
    check_only_chosen_candidates_get_gradient,
    images,
    print_speed_against_the_child,
)

from vaenas.spaces.nasnet import EDGES_PER_CELL, OPS, AuxiliaryHeadCIFAR, NASNetSpace, reduction_cells
from vaenas.supernet import get_supernet
from vaenas.supernet.layers import segmented
from vaenas.supernet.nasnet import EDGE_NAMES, NASNetSupernet

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {"C": 4, "layers": 3, "num_classes": 5}
SIZE, ROWS = 16, 2


def cell(ops_of_nodes: list[list[str]]) -> list[int]:
    """The 14 tokens of a cell given per node as the ops from c_{k-2}, c_{k-1}, node 0, ..."""
    return [OPS.index(op) for ops in ops_of_nodes for op in ops]


# Neither cell reads c_{k-2} (no preprocess0 runs, the child has none), sum of several inputs at node 3.
CHAIN = cell(
    [
        ["none", "sep_conv_3x3"],
        ["none", "none", "max_pool_3x3"],
        ["none", "avg_pool_3x3", "dil_conv_3x3", "none"],
        ["none", "skip_connect", "sep_conv_5x5", "none", "skip_connect"],
    ]
)
# Every edge a skip connection: FactorizedReduce on the reduction cell's input edges.
SKIPS = [OPS.index("skip_connect")] * EDGES_PER_CELL


@pytest.fixture(scope="module")
def space():
    return NASNetSpace()


def supernet(space: NASNetSpace, **options) -> NASNetSupernet:
    return get_supernet(space, **{**OPTIONS, **options}).double()


def architectures(space: NASNetSpace, generator: torch.Generator, count: int) -> torch.Tensor:
    """`count` architectures: CHAIN normal + SKIPS reduce, the other way round, then random ones."""
    special = torch.tensor([CHAIN + SKIPS, SKIPS + CHAIN])
    return torch.cat([special, space.sample(count, generator)])[:count]


def chosen(net: NASNetSupernet):
    """Whether parameter `name` belongs to a module that archs [G, 28] run."""

    def predicate(name: str, archs: torch.Tensor) -> bool:
        parts = name.split(".")
        if parts[0] != "cells":
            return True  # stem and classifier
        cell = net.cells[int(parts[1])]
        tokens = archs[:, EDGES_PER_CELL:] if cell.reduction else archs[:, :EDGES_PER_CELL]
        if parts[2].startswith("preprocess"):
            source = int(parts[2][-1])
            reads = [EDGE_NAMES.index(edge) for edge in EDGE_NAMES if edge.endswith(f"from{source}")]
            return bool((tokens[:, reads] != 0).any())
        assert parts[2] == "edges"
        return bool((tokens[:, EDGE_NAMES.index(parts[3])] == int(parts[4])).any())

    return predicate


@pytest.mark.parametrize("num_groups", [1, 3])
def test_group_forward_equals_separate_forwards(space, generator, num_groups):
    net = supernet(space)
    archs = architectures(space, generator, num_groups)
    check_groups_equal_separate_forwards(net, archs, images(generator, num_groups * ROWS, SIZE), generator)


@pytest.mark.parametrize("num_groups", [1, 3])
def test_unchosen_ops_and_unread_inputs_get_no_gradient(space, generator, num_groups):
    net = supernet(space)
    archs = architectures(space, generator, num_groups)
    check_only_chosen_candidates_get_gradient(net, archs, images(generator, num_groups * ROWS, SIZE), chosen(net))
    # CHAIN alone never reads c_{k-2} in a normal cell (cell 0): its preprocess0 did not run
    net(images(generator, ROWS, SIZE), archs[:1]).sum().backward()
    assert net.cells[0].preprocess0[1].weight.grad is None and net.cells[0].preprocess1[1].weight.grad is not None


@pytest.mark.parametrize("reductions", [None, (1,)])
def test_export_child_gives_the_same_logits_after_recalibration(space, generator, reductions):
    net = supernet(space, reductions=reductions)
    archs = architectures(space, generator, 3)
    calibration = [images(generator, ROWS, SIZE), images(generator, ROWS, SIZE)]
    check_export_after_recalibration(net, archs, calibration, images(generator, 3, SIZE))


def test_bad_input_is_a_value_error(space, generator):
    net = supernet(space)
    archs = architectures(space, generator, 2)
    check_bad_inputs(net, archs, images(generator, 2 * ROWS, SIZE))
    archs[1, 9:14] = 0  # node 3 of the normal cell has no input
    with pytest.raises(ValueError, match="row 1 .*normal cell, node 3 has no input"):
        net(images(generator, 2 * ROWS, SIZE), archs)


def test_options_reductions_registry_and_segmented_blocks(space):
    net = NASNetSupernet(space, C=2, layers=4, reductions=[3, 1])
    assert net.reductions == (1, 3) and [cell.reduction for cell in net.cells] == [False, True, False, True]
    assert reduction_cells(8) == (2, 5) and reduction_cells(20) == (6, 13)  # DARTS's default
    for bad in ([], [1, 1], [6]):
        with pytest.raises(ValueError, match="reductions must be distinct"):
            NASNetSupernet(space, C=2, layers=6, reductions=bad)
    with pytest.raises(ValueError, match="auxiliary"):
        get_supernet(space, auxiliary=True)
    with pytest.raises(TypeError, match="AuxiliaryHeadCIFAR calls a batch norm in its own forward"):
        segmented(AuxiliaryHeadCIFAR(8, 10))  # blocks with their own forward need a hand-written version


def test_speed_against_the_exported_child(space, generator):
    net = get_supernet(space, **OPTIONS)
    x = torch.randn(32, 3, 32, 32, generator=generator)
    print_speed_against_the_child(net, space.sample(1, generator)[0], x)

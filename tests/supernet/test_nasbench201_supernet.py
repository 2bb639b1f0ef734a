"""The NAS-Bench-201 supernet: G-group forward, unchosen ops, export, bad input.

Tiny networks (4 channels, 1 cell per stage, 16 px, 2 images per group, float64, one thread).
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

from vaenas.spaces.nasbench201 import OPS, NASBench201Space
from vaenas.supernet import get_supernet
from vaenas.supernet.nasbench201 import NASBench201Supernet, SearchCell

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {"channels": 4, "cells_per_stage": 1, "num_classes": 5}
SIZE, ROWS = 16, 2
# every edge into node 3 `none`: the cell's output is zero for that group
ALL_NONE = [0] * 6


@pytest.fixture(scope="module")
def space():
    return NASBench201Space()


def supernet(space: NASBench201Space, **options) -> NASBench201Supernet:
    return get_supernet(space, **{**OPTIONS, **options}).double()


def architectures(space: NASBench201Space, generator: torch.Generator, count: int) -> torch.Tensor:
    """Random architectures, the second one all `none` (zero cells) when count >= 2."""
    archs = space.sample(count, generator)
    if count >= 2:
        archs[1] = torch.tensor(ALL_NONE)
    return archs


def reaching_output(space: NASBench201Space, generator: torch.Generator, count: int) -> torch.Tensor:
    """Random architectures whose edges into node 3 are not `none`: every op reaches the logits,
    so a parameter gets a gradient exactly when its op is chosen."""
    archs = space.sample(count, generator)
    archs[:, 3:] = torch.randint(1, len(OPS), (count, 3), generator=generator)
    return archs


def chosen(net: NASBench201Supernet):
    def predicate(name: str, archs: torch.Tensor) -> bool:
        parts = name.split(".")
        if parts[0] != "cells" or not isinstance(net.cells[int(parts[1])], SearchCell):
            return True  # stem, residual blocks, last batch norm, classifier
        return bool((archs[:, int(parts[3])] == int(parts[4])).any())

    return predicate


@pytest.mark.parametrize("cell_affine", [True, False])
@pytest.mark.parametrize("num_groups", [1, 3])
def test_group_forward_equals_separate_forwards(space, generator, num_groups, cell_affine):
    net = supernet(space, cell_affine=cell_affine)
    archs = architectures(space, generator, num_groups)
    check_groups_equal_separate_forwards(net, archs, images(generator, num_groups * ROWS, SIZE), generator)


@pytest.mark.parametrize("num_groups", [1, 3])
def test_unchosen_ops_get_no_gradient(space, generator, num_groups):
    net = supernet(space)
    archs = reaching_output(space, generator, num_groups)
    check_only_chosen_candidates_get_gradient(net, archs, images(generator, num_groups * ROWS, SIZE), chosen(net))


@pytest.mark.parametrize("cell_affine", [True, False])
def test_export_child_gives_the_same_logits_after_recalibration(space, generator, cell_affine):
    # affine-free cell batch norms export as the child's affine ones with weight 1, bias 0
    net = supernet(space, cell_affine=cell_affine)
    archs = architectures(space, generator, 3)
    calibration = [images(generator, ROWS, SIZE), images(generator, ROWS, SIZE)]
    check_export_after_recalibration(net, archs, calibration, images(generator, 3, SIZE))


def test_bad_input_is_a_value_error(space, generator):
    net = supernet(space)
    archs = architectures(space, generator, 2)
    check_bad_inputs(net, archs, images(generator, 2 * ROWS, SIZE))
    archs[0, 5] = -1
    with pytest.raises(ValueError, match="invalid token -1 at position 5"):
        net(images(generator, 2 * ROWS, SIZE), archs)


def test_speed_against_the_exported_child(space, generator):
    net = get_supernet(space, **{**OPTIONS, "num_classes": 10})
    x = torch.randn(32, 3, 32, 32, generator=generator)
    print_speed_against_the_child(net, space.sample(1, generator)[0], x)


def test_cell_batch_norms_are_affine_free_by_default(space):
    # SPOS and NAS-Bench-201's search cells: affine-free batch norms inside the choice points only
    net = get_supernet(space, **OPTIONS)
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            in_cell = name.startswith("cells.") and isinstance(net.cells[int(name.split(".")[1])], SearchCell)
            assert module.affine is not in_cell, name

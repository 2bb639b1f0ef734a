"""The ShuffleNet-like SPOS supernet: G-group forward, unchosen blocks, export, small input, bad input.

Tiny networks (width 0.2: stages of 16, 32, 64, 128 channels; 32 px small-input variant; 2 images
per group; float64; one thread) keep the file at a few seconds.
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

from vaenas.spaces.shufflenet import CHOICES, ShuffleNetSpace
from vaenas.supernet import get_supernet
from vaenas.supernet.shufflenet import ShuffleNetSupernet

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {"num_classes": 5, "width": 0.2, "dropout": 0.0, "small_input": True}
SIZE, ROWS = 32, 2


@pytest.fixture(scope="module")
def space():
    return ShuffleNetSpace()


def supernet(space: ShuffleNetSpace, **options) -> ShuffleNetSupernet:
    return get_supernet(space, **{**OPTIONS, **options}).double()


def architectures(space: ShuffleNetSpace, generator: torch.Generator, count: int) -> torch.Tensor:
    """Random architectures where, with 3 of them, layer 0 is the same block for all (the route
    needs no gather) and layer 1 a different block each (three-way split)."""
    archs = space.sample(count, generator)
    archs[:, 0] = CHOICES.index("shuffle_7x7")
    archs[:, 1] = torch.arange(count) % len(CHOICES)
    return archs


def chosen(name: str, archs: torch.Tensor) -> bool:
    """Whether parameter `name` belongs to a module that archs [G, 20] run."""
    parts = name.split(".")
    if parts[0] != "features":
        return True  # first conv, conv_last, classifier
    return bool((archs[:, int(parts[1])] == int(parts[2])).any())


@pytest.mark.parametrize("num_groups", [1, 3])
def test_group_forward_equals_separate_forwards(space, generator, num_groups):
    net = supernet(space)
    archs = architectures(space, generator, num_groups)
    check_groups_equal_separate_forwards(net, archs, images(generator, num_groups * ROWS, SIZE), generator)


@pytest.mark.parametrize("num_groups", [1, 3])
def test_unchosen_blocks_get_no_gradient(space, generator, num_groups):
    net = supernet(space)
    archs = architectures(space, generator, num_groups)
    check_only_chosen_candidates_get_gradient(net, archs, images(generator, num_groups * ROWS, SIZE), chosen)


def test_export_child_gives_the_same_logits_after_recalibration(space, generator):
    net = supernet(space)
    archs = architectures(space, generator, 3)
    calibration = [images(generator, ROWS, SIZE), images(generator, ROWS, SIZE)]
    check_export_after_recalibration(net, archs, calibration, images(generator, 3, SIZE))


def test_input_sizes_of_both_variants(space, generator):
    """small_input: 32 px reach conv_last at 2x2; the ImageNet stem halves first (64 px -> 2x2 too).
    The child of the small-input option has the same parameters as the default child."""
    arch = architectures(space, generator, 1)
    for small_input, size in ((True, 32), (False, 64)):
        net = supernet(space, small_input=small_input)
        seen = []
        net.conv_last.register_forward_hook(lambda module, inputs, output: seen.append(output.shape[-2:]))
        assert net(images(generator, 2, size), arch).shape == (2, OPTIONS["num_classes"])
        assert seen == [(2, 2)]
    small = space.build_child(arch[0], **OPTIONS)
    default = space.build_child(arch[0], **{**OPTIONS, "small_input": False})
    assert [p.shape for p in small.parameters()] == [p.shape for p in default.parameters()]
    assert small.first_conv[0].stride == (1, 1) and default.first_conv[0].stride == (2, 2)
    assert ShuffleNetSpace(small_input=True).example_input(1).shape == (1, 3, 32, 32)
    assert space.example_input(1).shape == (1, 3, 224, 224) and "small_input" in space.child_options


def test_bad_input_is_a_value_error(space, generator):
    net = supernet(space)
    archs = architectures(space, generator, 2)
    check_bad_inputs(net, archs, images(generator, 2 * ROWS, SIZE))
    archs[1, 3] = len(CHOICES)
    with pytest.raises(ValueError, match="invalid token 4 at position 3"):
        net(images(generator, 2 * ROWS, SIZE), archs)
    with pytest.raises(ValueError, match="unexpected keyword argument 'channels'"):
        get_supernet(space, channels=8)


def test_speed_against_the_exported_child(space, generator):
    net = get_supernet(space, **{**OPTIONS, "num_classes": 10})
    x = torch.randn(32, 3, SIZE, SIZE, generator=generator)
    print_speed_against_the_child(net, space.sample(1, generator)[0], x)

"""Scoring architectures on a supernet (vaenas.supernet.evaluation) and the recalibration under it
(vaenas.supernet.base.recalibrate), on all four supernets.

A score depends only on the weights and the images: not on G or on the architectures it shares a
pass with; a calibration batch counts by the images it holds (the last batch of an EvalLoader is
smaller). Tiny float64 networks, so that 1e-10 separates a real difference from rounding.
"""

from __future__ import annotations

import pytest
import torch

from vaenas.spaces import get_space
from vaenas.supernet import SegmentedBatchNorm2d, get_supernet, recalibrate
from vaenas.supernet.base import segmented_batch_norms
from vaenas.supernet.evaluation import evaluate_architectures

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = 5
#: (supernet options, image size) of a tiny supernet of each space
SUPERNETS = {
    "nasbench201": ({"channels": 4, "cells_per_stage": 1}, 16),
    "nasnet": ({"C": 4, "layers": 3}, 16),
    "shufflenet": ({"width": 0.2, "dropout": 0.1, "small_input": True}, 16),
    "nasbench101": ({"stem_channels": 8, "num_stacks": 1, "cells_per_stack": 1}, 16),
}


def batches(generator: torch.Generator, sizes: list[int], size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(images float64 [b, 3, size, size], labels [b]) for each b in sizes."""
    return [
        (torch.randn(b, 3, size, size, generator=generator, dtype=torch.float64),
         torch.randint(CLASSES, (b,), generator=generator))
        for b in sizes
    ]


def trained_supernet(name: str, generator: torch.Generator):
    """A tiny float64 supernet of `name` after two train-mode SGD steps (so that running and
    recalibrated statistics differ), its space and its image size."""
    options, size = SUPERNETS[name]
    space = get_space(name)
    net = get_supernet(space, num_classes=CLASSES, **options).double()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(2):
        archs = space.sample(2, generator)
        (images, labels), = batches(generator, [4], size)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(images, archs), labels).backward()
        optimizer.step()
    return space, net, size


def test_recalibrated_statistics_are_those_of_the_union_of_uneven_batches(generator):
    """Batches of 5, 5, 3 rows per group at 4x4 and one of 2 rows at 3x3: each group's statistics
    are the mean and biased variance over every row and pixel it saw, whatever the batch sizes."""
    groups, channels = 2, 3
    norm = SegmentedBatchNorm2d(channels).double()
    shapes = [(5, 4), (5, 4), (3, 4), (2, 3)]  # (rows per group, pixels per side)
    seen = [[] for _ in range(groups)]  # per group: [C, rows * pixels] of each batch
    with recalibrate(norm, groups):
        for rows, side in shapes:
            x = torch.randn(groups * rows, channels, side, side, generator=generator, dtype=torch.float64)
            x = x * torch.arange(1, groups * rows + 1, dtype=torch.float64).view(-1, 1, 1, 1)  # uneven moments
            norm(x, torch.arange(groups))
            for g, part in enumerate(x.chunk(groups)):
                seen[g].append(part.transpose(0, 1).flatten(1))
    for g in range(groups):
        var, mean = torch.var_mean(torch.cat(seen[g], dim=1), dim=1, unbiased=False)
        torch.testing.assert_close(norm.group_mean[g], mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(norm.group_var[g], var, rtol=1e-12, atol=1e-12)


def recalibrated(net, archs: torch.Tensor, calibration: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mean [G, C], E[x^2] [G, C]) of every batch norm of net after recalibrating archs [G, T] on the
    calibration batches (each replicated once per group)."""
    with recalibrate(net, len(archs)):
        for images in calibration:
            net(images.repeat(len(archs), 1, 1, 1), archs)
    return [(norm.group_mean, norm.group_var + norm.group_mean**2) for norm in segmented_batch_norms(net)]


@pytest.mark.parametrize("name", list(SUPERNETS))
def test_a_small_last_calibration_batch_counts_by_its_images(name, generator):
    """Recalibrating on batches of 8 and 3 images gives every batch norm the moments of recalibrating
    on each alone, weighted 8 : 3 (the images each batch holds), not 1 : 1. (Inside a recalibration a
    batch is normalised with its own statistics, as in SPOS, so a deeper layer's inputs depend on the
    batch; the weighting is what makes each value count once.)"""
    space, net, size = trained_supernet(name, generator)
    archs = space.sample(2, generator)
    (first, _), (last, _) = batches(generator, [8, 3], size)
    both = recalibrated(net, archs, [first, last])
    alone = zip(recalibrated(net, archs, [first]), recalibrated(net, archs, [last]))
    for (mean, square), (first_moments, last_moments) in zip(both, alone):
        for moment, a, b in zip((mean, square), first_moments, last_moments):
            torch.testing.assert_close(moment, (8 * a + 3 * b) / 11, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(SUPERNETS))
def test_scores_do_not_depend_on_group_size_or_batch_mates(name, generator):
    space, net, size = trained_supernet(name, generator)
    archs = space.sample(3, generator)
    calibration, holdout = batches(generator, [6, 2], size), batches(generator, [5, 3], size)
    alone = evaluate_architectures(net, archs, calibration, holdout, group_size=1)
    together = evaluate_architectures(net, archs, calibration, holdout, group_size=3)
    torch.testing.assert_close(together.loss, alone.loss, rtol=1e-10, atol=1e-12)
    assert torch.equal(together.accuracy, alone.accuracy)
    other_mates = torch.cat([space.sample(1, generator), archs[:1]])
    mixed = evaluate_architectures(net, other_mates, calibration, holdout, group_size=2)
    torch.testing.assert_close(mixed.loss[1], alone.loss[0], rtol=1e-10, atol=1e-12)
    assert net.training  # evaluation restored train mode


def test_a_long_evaluation_reports_its_progress_per_chunk():
    from vaenas.spaces import get_space
    from vaenas.supernet import get_supernet
    from vaenas.supernet.evaluation import evaluate_architectures

    space = get_space("nasbench201")
    supernet = get_supernet(space, channels=2, cells_per_stage=1)
    generator = torch.Generator().manual_seed(0)
    images = [(torch.randn(4, 3, 8, 8, generator=generator), torch.randint(10, (4,), generator=generator))]
    seen = []
    evaluate_architectures(supernet, space.sample(7, generator), images, images, group_size=3,
                           progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 7), (6, 7), (7, 7)]

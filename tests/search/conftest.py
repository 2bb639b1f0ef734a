"""Fixtures of the search tests: the NAS-Bench-201 CIFAR-10 table and a seeded generator."""

import pytest
import torch

from vaenas.groundtruth import nasbench201


@pytest.fixture(scope="module")
def nb201():
    return nasbench201("cifar10")


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def supernet_logits():
    """supernet_logits(search, arch [T], images) -> the logits of the search's supernet for arch
    in eval mode, batch norm recalibrated for it on the search's calibration images (what its
    export_child must reproduce)."""
    from vaenas.supernet import clear_group_statistics, recalibrate

    def logits(search, arch, images):
        with recalibrate(search.supernet, 1):
            for batch, _ in search.data.calibration:
                search.supernet(batch, arch[None])
        search.supernet.eval()
        try:
            with torch.no_grad():
                return search.supernet(images, arch[None])
        finally:
            clear_group_statistics(search.supernet)

    return logits

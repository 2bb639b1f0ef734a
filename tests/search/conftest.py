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

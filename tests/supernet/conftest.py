"""Fixtures of the supernet tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run the test on one intra-op thread: the networks here are tiny, and on a loaded 2-core
    machine two OpenMP threads waiting for each other make a small convolution ~100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def generator():
    """Seeds the supernets' initialisation and gives a generator for images and architectures."""
    torch.manual_seed(2026)
    return torch.Generator().manual_seed(20261128)

"""Fixtures of the supernet tests."""

import pytest
import torch


@pytest.fixture
def generator():
    """Seeds the supernets' initialisation and gives a generator for images and architectures."""
    torch.manual_seed(2026)
    return torch.Generator().manual_seed(20261128)

"""Fixtures of tests/data: data sets written into tmp_path (helpers in datafiles.py)."""

import pytest
from datafiles import write_cifar, write_image_tree


@pytest.fixture
def cifar10(tmp_path):
    return tmp_path, write_cifar(tmp_path, "cifar10")


@pytest.fixture
def image_tree(tmp_path):
    return write_image_tree(tmp_path / "tree")

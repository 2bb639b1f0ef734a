"""Shared fixtures of the sampler tests: a seeded generator and the real NAS-Bench-201 table."""

import csv
import gzip
from pathlib import Path

import pytest
import torch

import vaenas.groundtruth

from vaenas.spaces.nasbench201 import EDGES, NASBench201Space

# The real NAS-Bench-201 table as shipped in the package (a copy of ../shared/data/nasbench201).
NB201_CSV = Path(vaenas.groundtruth.__file__).parent / "nb201_test_acc_200ep.csv.gz"


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def nb201_space():
    return NASBench201Space(index_file=NB201_CSV)


@pytest.fixture(scope="session")
def nb201_table():
    """(archs LongTensor[15625, 6] in official index order, CIFAR-10 test accuracy float[15625])."""
    with gzip.open(NB201_CSV, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    archs = torch.tensor([[int(row[f"op_e{s}{t}"]) for s, t in EDGES] for row in rows])
    accuracy = torch.tensor([float(row["cifar10_test"]) for row in rows], dtype=torch.float64)
    return archs, accuracy

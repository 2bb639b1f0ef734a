"""Fixtures of the retraining tests: a small CIFAR-10 set in its real file format (tests/data/datafiles.py),
one architecture JSON per space, and the command line run in this process at one thread."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.append(str(Path(__file__).resolve().parents[1] / "data"))
from datafiles import write_cifar  # noqa: E402
from retrain_helpers import ARCHITECTURES  # noqa: E402


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, "cifar10")
    return root


@pytest.fixture
def arch_file(tmp_path):
    """arch_file(space) -> the path of a JSON file with that space's architecture."""

    def write(space: str, document: dict | None = None) -> Path:
        path = tmp_path / f"{space}.json"
        path.write_text(json.dumps(document or ARCHITECTURES[space]))
        return path

    return write


@pytest.fixture
def retrain(capsys):
    """retrain(*arguments) -> (exit status, stdout, stderr) of `python -m vaenas.train` in this process."""
    from vaenas.train.cli import main

    def run(*arguments: str) -> tuple[int, str, str]:
        previous = torch.get_num_threads()
        try:
            status = main([str(a) for a in arguments])
        finally:
            torch.set_num_threads(previous)
        out, err = capsys.readouterr()
        return status, out, err

    return run

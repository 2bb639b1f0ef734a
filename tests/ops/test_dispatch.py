"""Backend selection of vaenas.ops (DESIGN §2): fastest by default, forced ones explain refusals."""

import pytest
import torch

from vaenas.ops._dispatch import choose_backend

ALL = ("reference", "cpu", "cuda", "triton")


def test_cpu_tensors_get_the_compiled_cpu_backend_by_default(monkeypatch):
    monkeypatch.delenv("VAENAS_BACKEND", raising=False)
    assert choose_backend("op", torch.device("cpu"), None, ALL) == "cpu"
    assert choose_backend("op", torch.device("cpu"), None, ("reference",)) == "reference"


def test_argument_and_environment_force_a_backend(monkeypatch):
    monkeypatch.setenv("VAENAS_BACKEND", "reference")
    assert choose_backend("op", torch.device("cpu"), None, ALL) == "reference"
    assert choose_backend("op", torch.device("cpu"), "cpu", ALL) == "cpu"


def test_forced_backend_that_cannot_run_lists_its_reasons(monkeypatch):
    monkeypatch.delenv("VAENAS_BACKEND", raising=False)
    with pytest.raises(RuntimeError, match="CUDA backend takes CUDA tensors, got cpu"):
        choose_backend("vae_decode", torch.device("cpu"), "cuda", ALL)
    with pytest.raises(RuntimeError, match="has no triton implementation"):
        choose_backend("vae_decode", torch.device("cpu"), "triton", ("reference", "cpu"))


def test_unknown_backend_is_named(monkeypatch):
    monkeypatch.setenv("VAENAS_BACKEND", "fastest")
    with pytest.raises(ValueError, match="unknown backend 'fastest'.*reference, aten, cpu, cuda, triton"):
        choose_backend("vae_decode", torch.device("cpu"), None, ALL)

"""Session setup shared by all tests: how Triton kernels run, and the one_thread fixture.

- No GPU: TRITON_INTERPRET=1. Triton reads it when a kernel is decorated (at the import of
  vaenas.kernels.*), so it must be set before any test module imports one; a conftest at the
  root of tests/ runs before every test module is collected. With a GPU it stays unset.
- VAENAS_TRITON_AUTOTUNE=0: one block-size config instead of autotuning each shape variant
  (see kernels/vae_decode.py::_configs); tests check results, bench/ measures speed.
A value set by the user is kept either way.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("VAENAS_TRITON_AUTOTUNE", "0")


@pytest.fixture
def one_thread():
    """Run the test on one intra-op thread: the networks here are tiny, and on a loaded 2-core
    machine two OpenMP threads waiting for each other make a small convolution ~100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

"""Every global random state of a process, as a checkpoint-safe tree (DESIGN §6: bit-for-bit resume).

`rng_state()` captures torch's CPU generator, every CUDA device's generator, Python's `random`
and NumPy's legacy global generator; `set_rng_state(state)` restores them. The tree holds only
tensors, ints, floats, strings and tuples, so it survives save_checkpoint/load_checkpoint
(weights_only=True). Explicit torch.Generator objects a loop owns are not global: checkpoint
them with their own `get_state()`.
"""

from __future__ import annotations

import random
from typing import Any

import torch


def rng_state() -> dict[str, Any]:
    """The global random states of this process (see the module docstring)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy
    except ImportError:
        return state
    kind, keys, position, has_gauss, cached = numpy.random.get_state(legacy=True)
    # an ndarray would need an allow-listed global under weights_only; a tensor does not
    state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), int(position), int(has_gauss), float(cached))
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() captured. CUDA states are restored when this process has CUDA."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))  # a checkpoint may turn tuples into lists
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy

        kind, keys, position, has_gauss, cached = state["numpy"]
        numpy.random.set_state((kind, keys.numpy().astype("uint32"), position, has_gauss, cached))

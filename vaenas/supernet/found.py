"""The network a weight-sharing search found, as a run folder keeps it, and rebuilt from there.

A one-shot or gradient run writes `architecture.json` (its summary, with a "network" entry made by
`network_description`) and `child.pt` (the exported child's state_dict, BN recalibrated for it).
The "network" entry is everything `build_child` needs besides the weights:

    {"space": "nasbench201", "tokens": [3, 1, 2, 1, 4, 3],
     "options": {"channels": 8, "cells_per_stage": 1, "num_classes": 10}, "image_size": 16}

`options` are the supernet's child_options (num_classes from the data included); `image_size` is
the side of the images the supernet was trained and scored on (the cost is counted there).
`load_found_network(run_dir)` rebuilds the network with its weights; retraining starts from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vaenas.runtime.files import load_checkpoint
from vaenas.spaces import get_space
from vaenas.supernet.base import Supernet

ARCHITECTURE_FILE, WEIGHTS_FILE = "architecture.json", "child.pt"


class FoundNetworkError(ValueError):
    """A run folder lacks the found network or holds a broken description of it."""


def network_description(supernet: Supernet, arch: Tensor, image_size: int) -> dict[str, Any]:
    """The "network" entry of architecture.json for arch [T] of `supernet` (see the module docstring)."""
    tokens = supernet.space.validate(arch).tolist()
    options = {key: list(value) if isinstance(value, tuple) else value for key, value in supernet.child_options().items()}
    return {"space": supernet.space.name, "tokens": tokens, "options": options, "image_size": int(image_size)}


def build_network(description: dict[str, Any]) -> nn.Module:
    """The untrained network of a "network" entry: space.build_child(tokens, **options)."""
    try:
        space = get_space(description["space"])
        return space.build_child(torch.tensor(description["tokens"]), **description["options"])
    except KeyError as error:
        raise FoundNetworkError(f"the network description lacks {error}") from None
    except (TypeError, ValueError) as error:
        raise FoundNetworkError(f"the network description does not build: {error}") from None


def load_found_network(run_dir: str | Path) -> nn.Module:
    """The network a one-shot or gradient run found, with the weights it exported (child.pt), in
    eval mode. FoundNetworkError (or CheckpointError for child.pt) naming the file and the problem."""
    run_dir = Path(run_dir)
    path = run_dir / ARCHITECTURE_FILE
    if not path.is_file():
        raise FoundNetworkError(f"{path}: no such file (the run has not finished its search)")
    try:
        description = json.loads(path.read_text())["network"]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FoundNetworkError(f"{path}: not JSON: {error}") from None
    except (KeyError, TypeError):
        raise FoundNetworkError(f"{path}: no 'network' entry (written by an older vaenas?)") from None
    try:
        network = build_network(description)
    except FoundNetworkError as error:
        raise FoundNetworkError(f"{path}: {error}") from None
    weights = load_checkpoint(run_dir / WEIGHTS_FILE)
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise FoundNetworkError(f"{run_dir / WEIGHTS_FILE} does not fit the network of {path}: {first}") from None
    return network.eval()

"""The child network a retraining trains: the space's build_child with the recipe's options, checked to run.

- `network_options`: the `network.<space>` section with num_classes from the data and, for NASNet
  children, auxiliary / drop_path on when train.auxiliary_weight / train.drop_path are above 0
  (those regularisers belong to NASNet children only: ConfigError for another space);
- `build_network`: the network, ConfigError naming the section for options it does not take, and a
  one-line ConfigError when a training-mode forward of two images of the data's size fails (e.g. an
  auxiliary head whose input is not 8x8, or images too small for the network's reductions);
- `set_drop_path`: the probability a network with drop path (a `drop_path_prob` buffer) applies;
- `set_bn_momentum`: one momentum for every batch-norm layer's running statistics;
- `deployed_cost`: params and FLOPs of the network as deployed, on one image of the data's size.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from vaenas.config import ConfigError
from vaenas.train.architecture import Architecture
from vaenas.train.config import RetrainConfig

#: child options a retraining derives itself, per space (the key that sets them instead)
DERIVED = {"num_classes": "the data (its number of classes)", "auxiliary": "train.auxiliary_weight",
           "drop_path": "train.drop_path"}


def network_options(config: RetrainConfig, space: str, num_classes: int) -> dict[str, Any]:
    """The build_child options of `space`'s child for this config and a data set of `num_classes` classes."""
    options = dict(getattr(config.network, space))
    derived = sorted(options.keys() & DERIVED.keys())
    if derived:
        raise ConfigError(f"network.{space}.{derived[0]}: set by {DERIVED[derived[0]]}, not here")
    options["num_classes"] = num_classes
    regularisers = {"auxiliary": config.train.auxiliary_weight, "drop_path": config.train.drop_path}
    for key, value in regularisers.items():
        if space == "nasnet":
            options[key] = value > 0
        elif value > 0:
            raise ConfigError(f"{DERIVED[key]}: only NASNet children have {key.replace('_', ' ')}; this "
                              f"architecture is of {space} (set it to 0)")
    return options


def build_network(architecture: Architecture, options: dict[str, Any], image_size: int) -> nn.Module:
    """The child of `architecture` with `options`, checked to run on images [2, 3, S, S] in training mode."""
    space = architecture.search_space()
    try:
        model = space.build_child(architecture.tensor(), **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"network.{architecture.space}: {error}") from None
    check_runs(model, image_size, f"network.{architecture.space}")
    return model


def check_runs(model: nn.Module, image_size: int, key: str) -> None:
    """ConfigError with the first line of torch's message unless a training-mode forward of two images of
    side `image_size` works (on a copy, under no_grad, the CPU random stream restored: `model` is untouched)."""
    probe = copy.deepcopy(model).train()
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            probe(torch.zeros(2, 3, image_size, image_size, device=device))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ConfigError(f"{key}: the network does not run on {image_size} px images: {first}") from None


def set_drop_path(model: nn.Module, probability: float) -> None:
    """Set the drop-path probability of a network that has drop path (its 0-dim `drop_path_prob` buffer,
    vaenas.spaces.nasnet.NASNetNetwork); ValueError for one without."""
    buffer = getattr(model, "drop_path_prob", None)
    if not isinstance(buffer, torch.Tensor):
        raise ValueError(f"{type(model).__name__} has no drop path")
    buffer.fill_(probability)


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Set the momentum of every batch-norm layer's running statistics (torch's convention: the weight of
    the new batch's statistic)."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)):
            module.momentum = momentum


def deployed_cost(architecture: Architecture, options: dict[str, Any], image_size: int) -> dict[str, float]:
    """{'params', 'flops'} of the network as it is deployed (no auxiliary head, no drop path) on one image of
    side `image_size`: the space's cost model (SearchSpace.cost) with this network's options."""
    deployed = {**options, **({"auxiliary": False, "drop_path": False} if architecture.space == "nasnet" else {})}
    return architecture.search_space().cost(architecture.tensor(), image_size, **deployed)

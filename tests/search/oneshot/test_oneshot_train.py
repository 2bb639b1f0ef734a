"""The one-shot training step: unused candidates untouched, decay groups, a supernet that learns,
scores independent of G and of batch mates."""

from __future__ import annotations

import re

import pytest
import torch

from vaenas.data import DataConfig, build_search_data
from vaenas.runtime.optim import learning_rate, parameter_groups
from vaenas.search.oneshot.train import Trainer
from vaenas.spaces import get_space
from vaenas.supernet import get_supernet
from vaenas.supernet.evaluation import evaluate_architectures


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _supernet(seed: int = 0, channels: int = 4):
    space = get_space("nasbench201")
    torch.manual_seed(seed)
    return space, get_supernet(space, channels=channels, cells_per_stage=1)


def _candidate(name: str, op: int) -> bool:
    """Whether parameter `name` belongs to candidate op `op` of a cell edge."""
    return re.search(rf"\.edges\.\d\.{op}\.", name) is not None


def _trainer(supernet, **options):
    settings = dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.1, label_smoothing=0.1, steps=100,
                    schedule="linear", device=torch.device("cpu"), bf16=True)
    return Trainer(supernet, **{**settings, **options})


def test_unused_candidates_are_bit_for_bit_unchanged_by_a_step():
    space, supernet = _supernet()
    trainer = _trainer(supernet)
    images, labels = torch.randn(8, 3, 8, 8), torch.randint(10, (8,))
    conv3x3, conv1x1 = 3, 2
    first = torch.tensor([[conv3x3] * 6])
    second = torch.tensor([[conv1x1] * 6])
    for step in range(2):  # momentum buffers now exist for the 3x3 convolutions
        trainer.step(step, images, labels, first)
    unused = {name: p.detach().clone() for name, p in supernet.named_parameters() if _candidate(name, conv3x3)}
    momentum = {name: trainer.optimizer.state[p]["momentum_buffer"].clone()
                for name, p in supernet.named_parameters() if _candidate(name, conv3x3)}
    used_before = {name: p.detach().clone() for name, p in supernet.named_parameters() if _candidate(name, conv1x1)}
    assert unused and used_before
    trainer.step(2, images, labels, second)
    params = dict(supernet.named_parameters())
    for name, before in unused.items():
        assert params[name].grad is None, name
        assert torch.equal(params[name].detach(), before), f"{name} moved although its op was not sampled"
        assert torch.equal(trainer.optimizer.state[params[name]]["momentum_buffer"], momentum[name]), name
    assert any(not torch.equal(params[n].detach(), b) for n, b in used_before.items())
    # a candidate never used has no optimizer state at all (no zero-gradient momentum, no decay)
    never = [p for name, p in params.items() if _candidate(name, 1) or _candidate(name, 4)]
    assert all(p not in trainer.optimizer.state for p in never)


def test_no_weight_decay_on_batch_norm_and_biases():
    _, supernet = _supernet()
    decay, no_decay = parameter_groups(supernet, 4e-5)
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decay["params"]) and all(p.dim() <= 1 for p in no_decay["params"])
    names = {id(p): n for n, p in supernet.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} >= {"classifier.bias", "stem.1.weight", "stem.1.bias"}
    assert learning_rate(0.5, 0, 10, "linear") == 0.5 and learning_rate(0.5, 5, 10, "linear") == 0.25


def _digits(**options):
    config = DataConfig(name="digits", image_size=16, batch_size=32, holdout=200, calibration_images=64,
                        eval_batch_size=200, load_test=False, **options)
    return build_search_data(config)


def test_a_supernet_learns_digits():
    """200 SPOS steps of a tiny supernet: sampled architectures score far above chance (10 %)."""
    data = _digits()
    space, supernet = _supernet(channels=8)
    trainer = _trainer(supernet, lr=0.2, weight_decay=4e-5, steps=200)
    generator = torch.Generator().manual_seed(0)
    for step in range(200):
        images, labels = next(data.train)
        trainer.step(step, images, labels, space.sample(1, generator))
    conv = torch.tensor([[3, 3, 3, 3, 3, 3], [2, 3, 1, 3, 2, 3]])
    scores = evaluate_architectures(supernet, conv, data.calibration, data.holdout, group_size=2).accuracy
    assert float(scores.min()) > 50.0, scores


def test_scores_do_not_depend_on_group_size_or_batch_mates():
    data = _digits()
    space, supernet = _supernet(seed=1)
    archs = space.sample(5, torch.Generator().manual_seed(3))
    alone = evaluate_architectures(supernet, archs, data.calibration, data.holdout, group_size=1)
    together = evaluate_architectures(supernet, archs, data.calibration, data.holdout, group_size=5)
    other_mates = torch.cat([space.sample(2, torch.Generator().manual_seed(9)), archs[:1]])
    mixed = evaluate_architectures(supernet, other_mates, data.calibration, data.holdout, group_size=3)
    torch.testing.assert_close(alone.loss, together.loss, rtol=1e-4, atol=1e-5)
    assert (alone.accuracy - together.accuracy).abs().max() <= 0.5  # at most one image flips at a tie
    torch.testing.assert_close(mixed.loss[2], alone.loss[0], rtol=1e-4, atol=1e-5)

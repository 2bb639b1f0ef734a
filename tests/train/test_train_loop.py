"""The training loop's parts: drop path and the auxiliary head active in training and absent in
evaluation, the drop-path schedule, label smoothing and clipping settings, the optimizers."""

from __future__ import annotations

import pytest
import torch
from retrain_helpers import ARCHITECTURES

from vaenas.config import load_config
from vaenas.runtime import DistributedContext
from vaenas.train import RECIPES, Architecture, RetrainConfig
from vaenas.train.cli import build_trainer
from vaenas.train.optim import RMSpropTF, make_optimizer


@pytest.fixture
def nasnet_trainer(cifar_root, one_thread):
    config = load_config(RECIPES / "cifar10.yaml", [
        "arch=unused", f"data.root={cifar_root}", "network.nasnet={C: 4, layers: 3}", "train.epochs=2",
        "train.batch_size=40", "train.drop_path=0.5", "data.workers=0", "data.eval_batch_size=30", "progress=false",
    ], cls=RetrainConfig)
    architecture = Architecture("nasnet", tuple(ARCHITECTURES["nasnet"]["tokens"]), "test")
    return build_trainer(config, architecture, DistributedContext())


def test_drop_path_and_auxiliary_head_are_active_in_training_and_absent_in_evaluation(nasnet_trainer):
    trainer = nasnet_trainer
    model = trainer.model
    assert model.auxiliary_head is not None and trainer.train_config.auxiliary_weight == 0.4
    trainer.train(until=trainer.steps_per_epoch + 1)  # into the second of 2 epochs
    assert float(model.drop_path_prob) == 0.25  # 0.5 x epoch 1 / 2 epochs
    # training: the auxiliary head was trained (its loss is in the step's), and drop path draws masks
    assert all(p.grad is not None and bool(p.grad.any()) for p in model.auxiliary_head.parameters())
    images, _ = next(iter(trainer.data.test))
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        first, auxiliary = model(images)
        assert auxiliary.shape == first.shape
        assert not torch.allclose(first, model(images)[0])  # other masks, other logits
    # evaluation: logits only, no mask: the same with any drop-path probability
    before = trainer.evaluate(model, trainer.data.test)
    model.drop_path_prob.fill_(0.0)
    assert trainer.evaluate(model, trainer.data.test) == before
    model.eval()
    assert isinstance(model(images), torch.Tensor)


def test_rmsprop_tf_is_tf1s_update():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    optimizer = RMSpropTF([weight], lr=0.2, decay=0.9, momentum=0.9, eps=1.0, weight_decay=1e-2)
    w, ms, mom = weight.detach().clone(), torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    for step in range(3):
        gradient = torch.randn(5, dtype=torch.float64)
        weight.grad = gradient.clone()
        optimizer.param_groups[0]["lr"] = 0.2 / (step + 1)  # a decaying rate scales the new term only
        optimizer.step()
        g = gradient + 1e-2 * w
        ms = 0.9 * ms + 0.1 * g * g
        mom = 0.9 * mom + 0.2 / (step + 1) * g / torch.sqrt(ms + 1.0)
        w = w - mom
        torch.testing.assert_close(weight.detach(), w, rtol=1e-12, atol=1e-12)


def test_weight_decay_groups():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    config = RetrainConfig().train
    groups = make_optimizer(model, config).param_groups
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(2, config.weight_decay), (4, 0.0)]
    config.decay_all, config.optimizer = True, "rmsprop_tf"
    optimizer = make_optimizer(model, config)
    assert isinstance(optimizer, RMSpropTF) and [len(g["params"]) for g in optimizer.param_groups] == [6]


def test_bn_momentum_overrides_the_networks_own(cifar_root, one_thread):
    def momenta(*overrides: str) -> set:
        config = load_config(RECIPES / "nasbench101.yaml", [
            "arch=unused", f"data.root={cifar_root}", "data.holdout=40", "data.workers=0", "progress=false",
            "network.nasbench101={stem_channels: 8, num_stacks: 1, cells_per_stack: 1}", "train.batch_size=40",
            *overrides], cls=RetrainConfig)
        architecture = Architecture("nasbench101", tuple(read_architecture_tokens()), "test")
        model = build_trainer(config, architecture, DistributedContext()).model
        return {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert momenta() == {1.0 - 0.997}  # TF's batch norm, as NAS-Bench-101 trained
    assert momenta("train.bn_momentum=0.1") == {0.1}


def read_architecture_tokens() -> list[int]:
    from vaenas.spaces import get_space

    return get_space("nasbench101").from_json(ARCHITECTURES["nasbench101"]["architecture"]).tolist()

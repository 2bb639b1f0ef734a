"""The NASNet children as retraining uses them: DARTS's drop path and the ImageNet network
(NetworkImageNet), next to the CIFAR network whose state_dict keys stay as they were."""

import pytest
import torch
from test_nasnet import DARTS_V2

from vaenas.spaces.nasnet import OPS, Cell, NASNetImageNet, NASNetSpace, drop_path


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(20261203)


def test_drop_path_zeroes_whole_samples_and_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    out = drop_path(x, torch.tensor(0.25))
    per_sample = out.flatten(1)
    assert bool((per_sample == per_sample[:, :1]).all())  # a sample is kept or dropped whole
    dropped = float((per_sample[:, 0] == 0).float().mean())
    assert abs(dropped - 0.25) < 0.03  # binomial sd 0.007
    assert torch.allclose(per_sample[per_sample[:, 0] != 0], torch.full((1,), 1 / 0.75))
    assert torch.equal(drop_path(x, torch.tensor(0.0)), x)


def test_drop_path_is_active_in_training_and_absent_in_evaluation(generator):
    space = NASNetSpace(C=4, layers=3)
    arch = space.sample(1, generator)[0]
    model = space.build_child(arch, drop_path=True)
    plain = space.build_child(arch)
    plain.load_state_dict(model.state_dict())  # drop path adds no weights and no saved state
    images = torch.randn(6, 3, 32, 32, generator=generator)
    model.drop_path_prob.fill_(0.6)
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(model(images), plain(images))
        model.train(), plain.train()
        torch.manual_seed(1)
        dropped = model(images)
        assert not torch.allclose(dropped, plain(images))
        model.drop_path_prob.fill_(0.0)
        assert torch.allclose(model(images), plain(images), atol=1e-6)


def test_identity_edges_are_never_dropped():
    skips = [OPS.index("skip_connect")] * 14
    cell = Cell(skips, 8, 8, 8, reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(4, 8, 6, 6), torch.randn(4, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(cell(s0, s1, torch.tensor(0.99)), cell(s0, s1))
    convs = [OPS.index("sep_conv_3x3")] * 14
    cell = Cell(convs, 8, 8, 8, reduction=False, reduction_prev=False).train()
    torch.manual_seed(2)
    with torch.no_grad():
        assert not torch.allclose(cell(s0, s1, torch.tensor(0.99)), cell(s0, s1))


def test_the_cifar_child_keeps_its_state_dict_keys(generator):
    space = NASNetSpace(C=4, layers=3)
    arch = space.from_genotype(DARTS_V2)
    keys = list(space.build_child(arch, auxiliary=True).state_dict())
    assert keys == list(space.build_child(arch, auxiliary=True, drop_path=True).state_dict())
    assert keys[:2] == ["stem.0.weight", "stem.1.weight"] and keys[-2:] == ["classifier.weight", "classifier.bias"]
    assert "cells.0.preprocess0.1.weight" in keys and "auxiliary_head.features.2.weight" in keys


def test_imagenet_child_of_darts_v2_is_darts_network():
    space = NASNetSpace(C=48, layers=14, num_classes=1000, stem="imagenet")
    model = space.build_child(space.from_genotype(DARTS_V2), auxiliary=True, drop_path=True)
    assert isinstance(model, NASNetImageNet)
    # DARTS reports 4.7M parameters for DARTS V2 in the ImageNet mobile setting (auxiliary head excluded)
    count = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary"))
    assert count == 4_718_752
    small = space.build_child(space.from_genotype(DARTS_V2), C=8, layers=5, auxiliary=True)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits, auxiliary_logits = small.train()(images)
        assert logits.shape == auxiliary_logits.shape == (2, 1000)
        assert small.eval()(images).shape == (2, 1000)
    assert space.example_input(1).shape == (1, 3, 224, 224)
    with pytest.raises(ValueError, match="unknown stem 'mnist'"):
        space.build_child(space.from_genotype(DARTS_V2), stem="mnist")
    with pytest.raises(ValueError, match="C must be even"):
        space.build_child(space.from_genotype(DARTS_V2), C=5)

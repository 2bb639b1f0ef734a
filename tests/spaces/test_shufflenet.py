"""The ShuffleNet-like space: encoding, sampler, variation, JSON, SPOS-shaped children and their cost."""

import json

import pytest
import torch
from torch import nn

from vaenas.spaces import get_space
from vaenas.spaces.layers import SqueezeExcite
from vaenas.spaces.shufflenet import CHOICES, ShuffleBlock, ShuffleNetSpace


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(20261128)


@pytest.fixture
def space():
    return ShuffleNetSpace()


def test_encoding_is_20_layers_of_4_blocks(space):
    assert space.vocab_sizes == (4,) * 20
    assert CHOICES == ("shuffle_3x3", "shuffle_5x5", "shuffle_7x7", "xception_3x3")
    assert space.position_name(0) == "layer 0 (stage 0, block 0)"
    assert space.position_name(19) == "layer 19 (stage 3, block 3)"
    assert space.position_name(8) == "layer 8 (stage 2, block 0)"
    assert isinstance(get_space("shufflenet"), ShuffleNetSpace)


def test_samples_are_valid_reproducible_and_uniform(space, generator):
    archs = space.sample(20000, generator)
    assert archs.shape == (20000, 20) and archs.dtype == torch.long
    assert space.is_valid(archs).all()
    frequencies = torch.stack([(archs == choice).float().mean(dim=0) for choice in range(4)])
    assert (frequencies - 0.25).abs().max() < 0.015  # 20000 draws per position: std 0.003
    again = [space.sample(8, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*again)


def test_bad_tokens_are_named_by_layer(space):
    with pytest.raises(ValueError, match="20 tokens"):
        space.is_valid(torch.zeros(2, 19, dtype=torch.long))
    arch = torch.zeros(20, dtype=torch.long)
    arch[11] = 4
    with pytest.raises(ValueError, match=r"invalid token 4 at position 11 \(layer 11 \(stage 2, block 3\)\).*0\.\.3"):
        space.validate(arch)
    with pytest.raises(ValueError, match="invalid token -1"):
        space.mutate(-torch.ones(1, 20, dtype=torch.long))


def test_mutants_change_exactly_one_layer_to_another_block(space, generator):
    parents = space.sample(4000, generator)
    before = parents.clone()
    mutants = space.mutate(parents, generator)
    assert torch.equal(parents, before)  # the input is not modified in place
    changed = mutants != parents
    assert (changed.sum(dim=1) == 1).all()
    assert changed.any(dim=0).all()  # every layer gets mutated somewhere
    new_blocks = mutants[changed]
    assert torch.bincount(new_blocks, minlength=4).min() > 800  # every block is proposed


def test_crossover_takes_each_layer_from_a_parent(space, generator):
    a, b = torch.zeros(2000, 20, dtype=torch.long), torch.full((2000, 20), 3)
    children = space.crossover(a, b, generator)
    assert ((children == 0) | (children == 3)).all()
    assert abs((children == 0).float().mean().item() - 0.5) < 0.01
    with pytest.raises(ValueError, match="differ in shape"):
        space.crossover(a, b[:5], generator)


def test_json_round_trip_and_bad_json(space, generator):
    for arch in space.sample(20, generator):
        data = json.loads(space.dumps(arch))
        assert data["layers"][0] in CHOICES and len(data["layers"]) == 20
        assert torch.equal(space.from_json(data), arch)
        assert torch.equal(space.from_json(json.dumps(data)), arch)
    data = space.to_json(space.sample(1, generator)[0])
    data["layers"][13] = "shuffle_9x9"
    with pytest.raises(ValueError, match=r"unknown block 'shuffle_9x9' at layer 13 \(stage 2, block 5\)"):
        space.from_json(data)
    with pytest.raises(ValueError, match="must list 20 block names"):
        space.from_json({"layers": ["shuffle_3x3"] * 19})
    with pytest.raises(ValueError, match="key 'layers'"):
        space.from_json({"blocks": ["shuffle_3x3"] * 20})


def test_blocks_use_swish_and_squeeze_excite_as_in_the_paper():
    for choice, (swish, squeeze_excite) in enumerate([(False, False), (True, False), (True, True), (True, True)]):
        for stride, channels in ((1, (64, 64)), (2, (64, 160))):
            block = ShuffleBlock(*channels, choice, stride)
            # the block's own layers (SqueezeExcite keeps a ReLU inside its gate, as in ShuffleNetV2+)
            branches = list(block.main) + (list(block.projection) if block.projection is not None else [])
            kinds = {type(module) for module in branches}
            assert (nn.SiLU in kinds) == swish and (nn.ReLU in kinds) == (not swish)
            assert (SqueezeExcite in kinds) == squeeze_excite
            kernels = {m.kernel_size[0] for m in block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
            assert kernels == {(3, 5, 7, 3)[choice]}


def test_stride_one_blocks_pass_the_even_channels_through(generator):
    block = ShuffleBlock(32, 32, 2, stride=1).eval()
    x = torch.randn(2, 32, 9, 9, generator=generator)
    with torch.no_grad():
        y = block(x)
    assert y.shape == (2, 32, 9, 9)
    assert torch.equal(y[:, :16], x[:, 0::2])
    with torch.no_grad():
        assert torch.allclose(y[:, 16:], block.main(x[:, 1::2]))


def test_child_follows_the_spos_stages(space, generator):
    model = space.build_child(space.sample(1, generator)[0]).eval()
    shapes = []
    for index in (3, 7, 15, 19):  # last block of each stage
        model.features[index].register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape)))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 224, 224, generator=generator))
    assert logits.shape == (2, 1000)
    assert shapes == [(2, 64, 56, 56), (2, 160, 28, 28), (2, 320, 14, 14), (2, 640, 7, 7)]
    assert [block.projection is not None for block in model.features] == [
        i in (0, 4, 8, 16) for i in range(20)
    ]


def test_small_child_trains_and_width_scales_channels(generator):
    space = ShuffleNetSpace(num_classes=10, width=0.5)
    arch = space.sample(1, generator)[0]
    model = space.build_child(arch).train()
    logits = model(torch.randn(2, 3, 64, 64, generator=generator))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():  # first conv 16 -> 8 channels, stages 64, 160, 320, 640 -> 32, 80, 160, 320
        out_channels = [
            model.features[i](torch.randn(2, c, 8, 8, generator=generator)).shape[1]
            for i, c in ((0, 8), (4, 32), (8, 80), (16, 160))
        ]
    assert out_channels == [32, 80, 160, 320]
    with pytest.raises(ValueError, match="unknown child options \\['C'\\]"):
        space.build_child(arch, C=16)


def test_cost_is_in_the_range_spos_reports(space):
    costs = [space.cost(torch.full((20,), choice)) for choice in range(4)]
    # SPOS's searched ShuffleNetV2 networks: about 300M multiply-adds and 3.3-3.5M parameters; torch counts
    # 2 FLOPs per multiply-add. All-3x3 measured: 591.7M FLOPs, 3.15M parameters.
    assert 500e6 < costs[0]["flops"] < 700e6
    assert 2.8e6 < costs[0]["params"] < 3.6e6
    flops = [cost["flops"] for cost in costs]
    assert flops[0] < flops[1] < flops[2] and flops[0] < flops[3]
    assert costs[2]["params"] > costs[1]["params"] > costs[0]["params"]  # bigger kernel, then SE
    assert space.cost(torch.full((20,), 2)) == costs[2]

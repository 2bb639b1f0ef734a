"""The NASNet-like (DARTS variant) space: encoding, validity, sampler, variation, JSON, genotypes, children."""

import json

import pytest
import torch

from vaenas.spaces import get_space
from vaenas.spaces.nasnet import EDGES_PER_CELL, NODE_OFFSETS, OPS, Genotype, NASNetSpace, edge_position

# Published genotypes (quark0/darts cnn/genotypes.py; PC-DARTS's genotypes.py). DARTS logs
# "param size = 3.349342MB" for DARTS_V2 at C=36, layers=20 (auxiliary head excluded), and lists it at 528M
# multiply-adds; PC-DARTS reports 3.63M parameters.
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)  # fmt: skip
PC_DARTS_CIFAR = Genotype(
    normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
            ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
    normal_concat=range(2, 6),
    reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
    reduce_concat=range(2, 6),
)  # fmt: skip
# P-DARTS uses dil_conv_5x5, which this space does not have.
PDARTS = Genotype(
    normal=[("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
    normal_concat=range(2, 6),
    reduce=[("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
            ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
    reduce_concat=range(2, 6),
)  # fmt: skip


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(20261127)


@pytest.fixture
def space():
    return NASNetSpace()


def sparse_arch(live_predecessor: int = 0, op: int = 4) -> torch.Tensor:
    """The valid architecture [28] closest to invalid: each node has one edge (from live_predecessor, or
    from the last cell input it can reach), carrying op."""
    arch = torch.zeros(2 * EDGES_PER_CELL, dtype=torch.long)
    for cell in range(2):
        for node in range(4):
            arch[edge_position(cell, node, min(live_predecessor, node + 1))] = op
    return arch


def test_encoding_is_28_positions_of_the_papers_8_ops(space):
    assert space.vocab_sizes == (8,) * 28
    assert OPS == ("none", "avg_pool_3x3", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                   "sep_conv_7x7", "dil_conv_3x3")  # fmt: skip
    assert NODE_OFFSETS == (0, 2, 5, 9)
    assert space.position_name(0) == "normal cell, node 0, edge from c_{k-2}"
    assert space.position_name(13) == "normal cell, node 3, edge from node 2"
    assert space.position_name(14 + 6) == "reduce cell, node 2, edge from c_{k-1}"
    assert isinstance(get_space("nasnet"), NASNetSpace)


def test_samples_are_valid_reproducible_and_uniform_over_valid_strings(space, generator):
    archs = space.sample(20000, generator)
    assert archs.shape == (20000, 28) and archs.dtype == torch.long
    assert space.is_valid(archs).all()
    again = [space.sample(50, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*again)
    # Uniform over valid strings: an edge of node 0 (2 edges, not both none) is none with probability
    # (1/8 * 7/8) / (1 - 1/64) = 1/9; an edge of node 3 (5 edges) is none with probability ~1/8.
    node0 = archs[:, [0, 1, 14, 15]]
    assert abs((node0 == 0).float().mean().item() - 1 / 9) < 0.005
    for op in range(1, 8):
        assert abs((node0 == op).float().mean().item() - 8 / 63) < 0.005
    node3 = archs[:, 9:14]
    assert abs((node3 == 0).float().mean().item() - (1 / 8 - 1 / 8**5) / (1 - 1 / 8**5)) < 0.005


def test_a_node_without_inputs_is_invalid_and_named(space):
    arch = sparse_arch()
    assert space.is_valid(arch[None]).tolist() == [True]
    arch[edge_position(1, 2, 0)] = 0
    assert space.is_valid(torch.stack([sparse_arch(), arch])).tolist() == [True, False]
    reason = space.invalid_reason(arch)
    assert reason == "reduce cell, node 2 has no input: all its 4 incoming edges are 'none'"
    with pytest.raises(ValueError, match="reduce cell, node 2 has no input"):
        space.validate(arch)
    with pytest.raises(ValueError, match="reduce cell, node 2 has no input"):
        space.build_child(arch)


def test_bad_tokens_are_named_by_cell_node_and_edge(space):
    with pytest.raises(ValueError, match="28 tokens"):
        space.is_valid(torch.zeros(3, 27, dtype=torch.long))
    arch = space.sample(2, torch.Generator().manual_seed(1))
    arch[1, 14 + 7] = 8
    message = r"invalid token 8 at position 21 \(reduce cell, node 2, edge from node 0\).*0\.\.7"
    with pytest.raises(ValueError, match=message):
        space.is_valid(arch)
    with pytest.raises(ValueError, match="must be integers"):
        space.is_valid(torch.ones(28))


def test_mutants_differ_in_one_edge_and_stay_valid(space, generator):
    parents = torch.cat([space.sample(500, generator), sparse_arch(0).expand(500, -1), sparse_arch(1).expand(500, -1)])
    mutants = space.mutate(parents, generator)
    assert space.is_valid(mutants).all()
    assert ((mutants != parents).sum(dim=1) == 1).all()
    # The sparse parents' live edges do get mutated, but only to another op, never to none.
    sparse, sparse_mutants = parents[500:], mutants[500:]
    changed_live = (sparse != 0) & (sparse_mutants != sparse)
    assert changed_live.any()
    assert (sparse_mutants[changed_live] != 0).all()
    with pytest.raises(ValueError, match="architecture 1 is invalid: normal cell, node 0 has no input"):
        space.mutate(torch.stack([sparse_arch(), torch.zeros(28, dtype=torch.long)]), generator)


def test_crossover_children_take_each_edge_from_a_parent_and_stay_valid(space, generator):
    # Parents whose live edges never coincide: most uniform mixes would leave a node without input.
    a = sparse_arch(0, op=4).expand(1000, -1)
    b = sparse_arch(1, op=6).expand(1000, -1)
    children = space.crossover(a, b, generator)
    assert space.is_valid(children).all()
    assert ((children == a) | (children == b)).all()
    assert ((children != a).any(dim=1) & (children != b).any(dim=1)).any()  # some children mix both
    random_a, random_b = space.sample(200, generator), space.sample(200, generator)
    children = space.crossover(random_a, random_b, generator)
    assert space.is_valid(children).all() and ((children == random_a) | (children == random_b)).all()
    with pytest.raises(ValueError, match="differ in shape"):
        space.crossover(random_a, random_b[:10], generator)


def test_json_round_trip_is_exact_and_readable(space, generator):
    for arch in space.sample(50, generator):
        data = space.to_json(arch)
        assert [len(ops) for ops in data["normal"]] == [2, 3, 4, 5]
        assert torch.equal(space.from_json(json.loads(json.dumps(data))), arch)
        assert torch.equal(space.from_json(space.dumps(arch)), arch)


def test_bad_json_names_the_position(space, generator):
    data = space.to_json(space.sample(1, generator)[0])
    data["reduce"][1][2] = "conv_7x1_1x7"
    message = r"unknown op 'conv_7x1_1x7' at position 18 \(reduce cell, node 1, edge from node 0\)"
    with pytest.raises(ValueError, match=message):
        space.from_json(data)
    data = space.to_json(space.sample(1, generator)[0])
    data["normal"][3] = data["normal"][3][:4]
    with pytest.raises(ValueError, match="normal cell, node 3 must list 5 ops"):
        space.from_json(data)
    with pytest.raises(ValueError, match="keys"):
        space.from_json({"normal": data["normal"]})
    with pytest.raises(ValueError, match="not JSON"):
        space.from_json("{normal:")
    data = space.to_json(sparse_arch())
    data["normal"][1] = ["none"] * 3
    with pytest.raises(ValueError, match="normal cell, node 1 has no input"):
        space.from_json(data)


def test_darts_genotypes_convert_both_ways(space):
    arch = space.from_genotype(DARTS_V2)
    # DARTS node 5 (our node 3) of the normal cell: skip_connect from c_{k-2}, dil_conv_3x3 from node 0.
    assert space.to_json(arch)["normal"][3] == ["skip_connect", "none", "dil_conv_3x3", "none", "none"]
    assert space.to_json(arch)["reduce"][1] == ["none", "max_pool_3x3", "skip_connect"]
    assert (arch != 0).sum() == 16
    for genotype in (DARTS_V2, PC_DARTS_CIFAR, DARTS_V2._asdict()):
        arch = space.from_genotype(genotype)
        back = space.to_genotype(arch)
        assert torch.equal(space.from_genotype(back), arch)
        pairs = genotype["normal"] if isinstance(genotype, dict) else genotype.normal
        for node in range(4):  # same inputs per node; DARTS's order inside a node is not kept
            assert sorted(back.normal[2 * node : 2 * node + 2]) == sorted(pairs[2 * node : 2 * node + 2])


def test_genotypes_outside_the_space_are_refused_with_the_reason(space):
    message = r"op 'dil_conv_5x5' of normal cell, node 3 \(DARTS node 5\) is not in this space"
    with pytest.raises(ValueError, match=message):
        space.from_genotype(PDARTS)
    twice = DARTS_V2._replace(normal=[("sep_conv_3x3", 0), ("sep_conv_5x5", 0)] + DARTS_V2.normal[2:])
    with pytest.raises(ValueError, match="normal cell, node 0 .* two edges from input 0"):
        space.from_genotype(twice)
    with pytest.raises(ValueError, match="reduce_concat is \\[3, 4, 5\\]"):
        space.from_genotype(DARTS_V2._replace(reduce_concat=[3, 4, 5]))
    with pytest.raises(ValueError, match="normal has 10"):
        space.from_genotype(DARTS_V2._replace(normal=DARTS_V2.normal + [("skip_connect", 1)] * 2))
    with pytest.raises(ValueError, match="node 3 \\(DARTS node 5\\) takes input 5, allowed 0..4"):
        space.from_genotype(DARTS_V2._replace(normal=DARTS_V2.normal[:6] + [("skip_connect", 5), ("skip_connect", 1)]))
    with pytest.raises(ValueError, match="no field 'reduce_concat'"):
        space.from_genotype({"normal": DARTS_V2.normal, "normal_concat": [2, 3, 4, 5], "reduce": DARTS_V2.reduce})
    three_inputs = space.from_genotype(DARTS_V2)
    three_inputs[edge_position(0, 2, 2)] = OPS.index("max_pool_3x3")
    with pytest.raises(ValueError, match="normal cell, node 2 has 3 inputs"):
        space.to_genotype(three_inputs)


def expected_parameters(arch: torch.Tensor, C: int, layers: int, num_classes: int) -> int:
    """Parameter count of the child, from DARTS's channel bookkeeping and per-op formulas (BN: 2 per channel)."""
    tokens = arch.tolist()

    def op_params(op: str, c: int, stride: int) -> int:
        separable = lambda k: c * k * k + c * c + 2 * c  # noqa: E731 (depthwise k x k, pointwise, BN)
        return {
            "none": 0, "avg_pool_3x3": 0, "max_pool_3x3": 0,
            "skip_connect": 0 if stride == 1 else c * c + 2 * c,  # FactorizedReduce: two C x C/2 convs
            "sep_conv_3x3": 2 * separable(3), "sep_conv_5x5": 2 * separable(5), "sep_conv_7x7": 2 * separable(7),
            "dil_conv_3x3": separable(3),
        }[op]  # fmt: skip

    total = 3 * 3 * C * 9 + 2 * 3 * C  # stem conv + BN
    prev_prev = prev = 3 * C
    current = C
    for index in range(layers):
        reduction = index in (layers // 3, 2 * layers // 3)
        current *= 2 if reduction else 1
        cell = 1 if reduction else 0
        used = set()
        for node in range(4):
            for predecessor in range(2 + node):
                op = OPS[tokens[edge_position(cell, node, predecessor)]]
                if op != "none":
                    used.add(predecessor)
                    total += op_params(op, current, 2 if reduction and predecessor < 2 else 1)
        # preprocessing (1x1 conv or FactorizedReduce: both in_channels * C weights) + BN, for read inputs only
        total += sum(channels * current + 2 * current for p, channels in ((0, prev_prev), (1, prev)) if p in used)
        prev_prev, prev = prev, 4 * current
    return total + prev * num_classes + num_classes


def test_darts_v2_child_has_darts_published_parameter_count(space):
    model = space.build_child(space.from_genotype(DARTS_V2), auxiliary=True)
    assert sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary")) == 3_349_342
    pc_darts = space.build_child(space.from_genotype(PC_DARTS_CIFAR))
    assert round(sum(p.numel() for p in pc_darts.parameters()) / 1e6, 2) == 3.63
    cost = space.cost(space.from_genotype(DARTS_V2))
    assert cost["params"] == 3_349_342
    assert abs(cost["flops"] / 2 / 1e6 - 528) < 3  # torch counts 2 FLOPs per multiply-add


def test_child_parameters_match_the_cell_by_cell_count(generator):
    space = NASNetSpace(C=8, layers=5)
    archs = torch.cat([space.sample(6, generator), sparse_arch(1)[None], space.from_genotype(DARTS_V2)[None]])
    for arch in archs:
        model = space.build_child(arch)
        assert sum(p.numel() for p in model.parameters()) == expected_parameters(arch, 8, 5, 10)
    assert space.cost(archs[0])["params"] == expected_parameters(archs[0], 8, 5, 10)


def test_child_forward_backward_and_auxiliary_head(generator):
    space = NASNetSpace(C=8, layers=3)
    arch = space.sample(1, generator)[0]
    images = torch.randn(2, 3, 32, 32, generator=generator)
    model = space.build_child(arch, auxiliary=True, num_classes=7).train()
    logits, auxiliary_logits = model(images)
    assert logits.shape == (2, 7) and auxiliary_logits.shape == (2, 7)
    (logits.sum() + auxiliary_logits.sum()).backward()
    # every weight is used: none-edges and unread cell inputs build nothing
    assert all(p.grad is not None for p in model.parameters())
    # the head reads the last cell's output here (layers=3) and must leave the main logits alone
    plain = space.build_child(arch, num_classes=7).train()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("auxiliary")})
    assert torch.allclose(plain(images), model(images)[0])
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (2, 7)
    assert space.build_child(arch).train()(images).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown child options \\['width'\\]"):
        space.build_child(arch, width=2)


def test_cost_grows_with_the_convolution_size():
    space = NASNetSpace(C=8, layers=3)
    costs = [space.cost(torch.full((28,), OPS.index(op))) for op in ("max_pool_3x3", "sep_conv_3x3", "sep_conv_7x7")]
    assert costs[0]["flops"] < costs[1]["flops"] < costs[2]["flops"]
    assert costs[0]["params"] < costs[1]["params"] < costs[2]["params"]
    assert space.cost(torch.full((28,), 4)) == costs[1]  # cached, and a copy

"""NAS-Bench-201 space: official strings and indices against the benchmark file, operators, child."""

import csv
import gzip
import json
from pathlib import Path

import pytest
import torch

import vaenas.groundtruth
from vaenas.spaces import get_space
from vaenas.spaces.nasbench201 import EDGES, OPS, NASBench201Space

# The packaged table (source and licence: vaenas/groundtruth/NOTICE).
DATA = Path(vaenas.groundtruth.__file__).parent / "nb201_test_acc_200ep.csv.gz"
BEST_CIFAR10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(201)


@pytest.fixture(scope="module")
def rows():
    with gzip.open(DATA, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def space():
    return NASBench201Space(index_file=DATA)


def test_registry_and_protocol(space):
    assert isinstance(get_space("nasbench201"), NASBench201Space)
    assert space.vocab_sizes == (5,) * 6 and space.length == 6
    assert space.position_name(2) == "edge e12"


def test_every_official_string_round_trips_and_matches_the_op_columns(space, rows):
    assert len(rows) == 15_625
    archs = torch.stack([space.from_arch_str(row["arch_str"]) for row in rows])
    columns = torch.tensor([[int(row[f"op_e{s}{t}"]) for s, t in EDGES] for row in rows])
    assert torch.equal(archs, columns)
    assert all(space.to_arch_str(arch) == row["arch_str"] for arch, row in zip(archs, rows))
    assert len({tuple(a) for a in archs.tolist()}) == 15_625
    assert bool(space.is_valid(archs).all())
    # index_of gives the row's official index; from_index inverts it
    indices = torch.tensor([int(row["index"]) for row in rows])
    assert torch.equal(space.index_of(archs), indices)
    assert torch.equal(space.from_index(indices), archs)


def test_best_cifar10_cell_string_and_index(space, rows):
    arch = space.from_arch_str(BEST_CIFAR10)
    assert arch.tolist() == [3, 3, 3, 1, 3, 2]
    assert space.to_arch_str(arch) == BEST_CIFAR10
    assert int(space.index_of(arch[None])[0]) == 6111
    assert rows[6111]["arch_str"] == BEST_CIFAR10


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "2 nodes"),
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "'conv_5x5'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "'none~1'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "must have 2 inputs"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "'none~0|'"),
    ],
)
def test_bad_arch_str_names_the_bad_part(space, bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        space.from_arch_str(bad)


def test_json_round_trip_and_errors(space, generator):
    for arch in space.sample(20, generator):
        assert torch.equal(space.from_json(space.dumps(arch)), arch)
        assert torch.equal(space.from_json(space.to_json(arch)), arch)
    with pytest.raises(ValueError, match="arch_str"):
        space.from_json({"ops": [1, 2]})
    with pytest.raises(ValueError, match="nasbench101"):
        space.from_json(json.dumps({"space": "nasbench101", "arch_str": BEST_CIFAR10}))
    with pytest.raises(ValueError, match="not valid JSON"):
        space.from_json("{oops")


def test_sample_is_uniform_over_ops(space, generator):
    archs = space.sample(20_000, generator)
    assert archs.shape == (20_000, 6) and archs.dtype == torch.long
    frequencies = torch.bincount(archs.flatten(), minlength=5).float() / archs.numel()
    assert torch.allclose(frequencies, torch.full((5,), 0.2), atol=0.01)
    # positions are independent: pairs of edges cover all 25 combinations about equally
    pairs = torch.bincount(archs[:, 0] * 5 + archs[:, 5], minlength=25).float() / len(archs)
    assert torch.allclose(pairs, torch.full((25,), 0.04), atol=0.01)


def test_mutate_changes_exactly_one_edge_to_each_other_op(space, generator):
    parents = space.sample(5_000, generator)
    children = space.mutate(parents, generator)
    changed = children != parents
    assert bool((changed.sum(dim=1) == 1).all())
    # the new op is uniform over the 4 others: the shift mod 5 takes values 1..4 equally often
    shift = ((children - parents) % 5)[changed]
    counts = torch.bincount(shift, minlength=5).float() / len(shift)
    assert counts[0] == 0 and torch.allclose(counts[1:], torch.full((4,), 0.25), atol=0.03)
    assert torch.bincount(changed.float().argmax(dim=1), minlength=6).min() > 700


def test_crossover_takes_each_edge_from_one_parent(space, generator):
    a, b = space.sample(4_000, generator), space.sample(4_000, generator)
    child = space.crossover(a, b, generator)
    assert bool(((child == a) | (child == b)).all())
    differs = a != b
    from_a = ((child == a) & differs).sum() / differs.sum()
    assert abs(float(from_a) - 0.5) < 0.03
    with pytest.raises(ValueError, match="same shape"):
        space.crossover(a[:3], b[:4], generator)


def test_bad_tokens_are_rejected_with_the_edge_name(space):
    with pytest.raises(ValueError, match="edge e13"):
        space.index_of(torch.tensor([[0, 0, 0, 0, 5, 0]]))
    with pytest.raises(ValueError, match="6 tokens"):
        space.to_arch_str(torch.tensor([1, 2, 3]))


def _conv_bn(c_in, c_out, k):
    return c_in * c_out * k * k + 2 * c_out


def test_child_network_structure_and_parameter_count(space, generator):
    """Parameters counted from the NAS-Bench-201 skeleton by hand: stem conv3x3 16 + BN, cells at
    16/32/64 channels, two residual reductions (two ReLUConvBN 3x3 + avgpool/1x1 shortcut), BN, FC."""
    skeleton = 3 * 16 * 9 + 2 * 16  # stem
    for c_in, c_out in ((16, 32), (32, 64)):
        skeleton += _conv_bn(c_in, c_out, 3) + _conv_bn(c_out, c_out, 3) + c_in * c_out
    skeleton += 2 * 64 + 64 * 10 + 10  # lastact BN, classifier
    per_op = {0: 0, 1: 0, 2: 1, 3: 3, 4: 0}  # kernel size of the op's conv, 0: no parameters

    arch = space.sample(1, generator)[0]
    expected = skeleton + sum(
        5 * _conv_bn(c, c, per_op[op]) for c in (16, 32, 64) for op in arch.tolist() if per_op[op]
    )
    model = space.build_child(arch)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert space.cost(arch)["params"] == expected
    # the best CIFAR-10 cell: 1,073,466 parameters (NAS-Bench-201 lists 1.07 MB for index 6111)
    assert space.cost(space.from_arch_str(BEST_CIFAR10))["params"] == 1_073_466
    assert space.cost(torch.zeros(6, dtype=torch.long))["params"] == skeleton


def test_child_forward_and_cell_semantics(space, generator):
    torch.manual_seed(0)
    model = space.build_child(space.from_arch_str(BEST_CIFAR10), num_classes=100).eval()
    logits = model(space.example_input(3))
    assert logits.shape == (3, 100) and bool(torch.isfinite(logits).all())
    # skip chain x -> node1 -> node2 -> node3, every other edge none: the cell is the identity
    cell_model = space.build_child(torch.tensor([1, 0, 1, 0, 0, 1]))
    x = torch.randn(2, 16, 8, 8, generator=generator)
    assert torch.allclose(cell_model.cells[0](x), x)
    cell = space.build_child(torch.tensor([1, 1, 1, 0, 0, 1])).cells[0]
    # node1 = x, node2 = x + node1 = 2x, node3 = node2
    assert torch.allclose(cell(x), 2 * x)
    # the all-none cell outputs zeros, and the network still runs (chance accuracy in the benchmark)
    none_cell = space.build_child(torch.zeros(6, dtype=torch.long)).cells[0]
    assert bool((none_cell(x) == 0).all())
    assert [OPS[i] for i in range(5)] == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def test_missing_index_file_is_a_clear_error(tmp_path):
    space = NASBench201Space(index_file=tmp_path / "missing.csv.gz")
    with pytest.raises(FileNotFoundError, match="index_file"):
        space.index_of(torch.zeros(1, 6, dtype=torch.long))

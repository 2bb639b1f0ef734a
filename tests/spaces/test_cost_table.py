"""cost_model(space, image_size, **options): table lookups equal the built child's params and FLOPs
exactly (space.cost counts the built module), for every space, several option sets, random
architectures; the expected cost of independent positions is the exact expectation."""

from __future__ import annotations

import itertools

import pytest
import torch

from vaenas.spaces import get_space
from vaenas.spaces.cost_table import COST_KEYS, CostTable, cost_model

#: (space, build_child options, image size); small networks so that space.cost stays cheap
CASES = [
    ("nasbench201", {"channels": 4, "cells_per_stage": 1, "num_classes": 3}, 8),
    ("nasbench201", {"channels": 8, "cells_per_stage": 2, "num_classes": 100}, 16),
    ("nasnet", {"C": 4, "layers": 3, "num_classes": 5, "reductions": [1, 2]}, 16),
    ("nasnet", {"C": 6, "layers": 5, "auxiliary": True, "num_classes": 10}, 32),
    ("nasnet", {"C": 4, "layers": 4, "stem": "imagenet", "auxiliary": True, "num_classes": 7}, 64),
    ("shufflenet", {"width": 0.25, "small_input": True, "num_classes": 7}, 32),
    ("shufflenet", {"width": 0.5, "num_classes": 11}, 64),
    ("nasbench101", {"stem_channels": 8, "num_stacks": 2, "cells_per_stack": 1, "num_classes": 4}, 8),
    ("nasbench101", {"stem_channels": 6, "num_stacks": 3, "cells_per_stack": 2, "num_classes": 10}, 12),
]


@pytest.mark.parametrize("name, options, size", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_table_costs_equal_the_built_childs(name, options, size):
    space = get_space(name)
    archs = space.sample(4, torch.Generator().manual_seed(len(options) + size))
    table = cost_model(space, size, **options)
    got = table.costs(archs)
    assert got.dtype == torch.float64 and got.shape == (4, len(COST_KEYS))
    for arch, row in zip(archs, got.tolist()):
        built = space.cost(arch, image_size=size, **options)
        assert [built[key] for key in COST_KEYS] == row
        assert table.cost(arch) == built


def test_nasbench101_many_cells_match_the_built_network():
    # the closed form has branches (pruning, the remainder of the channel split, max over successors,
    # input -> output projections): 40 random cells plus the input -> output-only cell
    space = get_space("nasbench101")
    options = {"stem_channels": 7, "num_stacks": 2, "cells_per_stack": 1, "num_classes": 3}
    archs = space.sample(40, torch.Generator().manual_seed(3))
    direct = torch.zeros(26, dtype=torch.long)
    direct[5] = 1  # the edge 0 -> 6 alone
    archs = torch.cat([archs, direct[None]])
    got = cost_model(space, 8, **options).costs(archs)
    for arch, row in zip(archs, got.tolist()):
        built = space.cost(arch, image_size=8, **options)
        assert [built["params"], built["flops"]] == row


def test_nasnet_cell_inputs_no_edge_reads():
    # a cell input that no edge reads gets no preprocessing: the table's group terms
    space = get_space("nasnet")
    arch = space.sample(1, torch.Generator().manual_seed(0))[0]
    arch[[0, 2, 5, 9]] = 0  # no edge of the normal cell reads c_{k-2} ...
    arch[[1, 3, 6, 10]] = 4  # ... every node reads c_{k-1}
    arch[[15, 17, 20, 24]] = 0  # no edge of the reduction cell reads c_{k-1} ...
    arch[[14, 16, 19, 23]] = 5  # ... every node reads c_{k-2}
    assert space.is_valid(arch[None])[0]
    options = {"C": 6, "layers": 6, "num_classes": 10}
    assert cost_model(space, 32, **options).cost(arch) == space.cost(arch, image_size=32, **options)


def test_cost_models_are_cached_per_setting_and_reject_bad_architectures():
    space = get_space("nasnet")
    options = {"C": 4, "layers": 3, "reductions": [1, 2]}
    table = cost_model(space, 16, **options)
    assert cost_model(space, 16, **{**options, "reductions": (1, 2)}) is table
    assert cost_model(space, 32, **options) is not table
    invalid = torch.zeros(1, 28, dtype=torch.long)
    with pytest.raises(ValueError, match="no input"):
        table.costs(invalid)
    with pytest.raises(ValueError, match="invalid token 9"):
        table.costs(torch.full((1, 28), 9))
    with pytest.raises(ValueError, match="unknown child options"):
        cost_model(get_space("nasbench101"), 8, width=2)


def _enumerated_expectation(table: CostTable, probabilities: torch.Tensor, free: list[int]) -> torch.Tensor:
    """Σ over every token combination of the free positions (the others one-hot) of P · cost."""
    base = probabilities.argmax(dim=1)
    total = torch.zeros(len(COST_KEYS), dtype=torch.float64)
    supports = [probabilities[t].nonzero().flatten().tolist() for t in free]
    for tokens in itertools.product(*supports):
        arch = base.clone()
        arch[free] = torch.tensor(tokens)
        weight = torch.prod(torch.stack([probabilities[t, k] for t, k in zip(free, tokens)]))
        total += weight * table.costs(arch[None], check=False)[0]
    return total


@pytest.mark.parametrize("name, options, size", [CASES[0], CASES[2], CASES[5]], ids=["nb201", "nasnet", "shufflenet"])
def test_expected_cost_is_the_exact_expectation(name, options, size):
    space = get_space(name)
    table = cost_model(space, size, **options)
    generator = torch.Generator().manual_seed(1)
    vocab = space.vocab_sizes[0]
    probabilities = torch.zeros(space.length, vocab, dtype=torch.float64)
    probabilities[torch.arange(space.length), torch.randint(1, vocab, (space.length,), generator=generator)] = 1.0
    # NASNet: the free positions are both inputs of nodes 0 and 1 (the groups of c_{k-2}, c_{k-1})
    free = [0, 1, 2, 3, 4] if name == "nasnet" else [0, 2, 5]
    for t in free:
        support = torch.tensor([0, 1, vocab - 1])
        probabilities[t] = 0.0
        probabilities[t, support] = torch.rand(3, generator=generator, dtype=torch.float64) + 0.1
        probabilities[t] /= probabilities[t].sum()
    expected = table.expected(probabilities)
    torch.testing.assert_close(expected, _enumerated_expectation(table, probabilities, free), rtol=1e-12, atol=0)
    one_hot = torch.nn.functional.one_hot(probabilities.argmax(1), vocab).double()
    assert table.expected(one_hot).tolist() == table.costs(probabilities.argmax(1)[None])[0].tolist()


def test_nasbench101_has_no_expected_cost():
    space = get_space("nasbench101")
    with pytest.raises(ValueError, match="no expected cost"):
        cost_model(space, 8, stem_channels=8).expected(torch.full((26, 3), 1 / 3))


def test_counting_a_table_leaves_the_global_rng_as_it_was():
    # probe children initialise weights from it; a search's streams must not depend on the table cache
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    cost_model(get_space("shufflenet"), 32, width=0.25, small_input=True, num_classes=2)
    assert torch.equal(torch.random.get_rng_state(), before)

"""The one-shot final search: limits checked before any evaluation, duplicates never evaluated."""

from __future__ import annotations

import torch

from vaenas.search.oneshot.final_search import Evolution, SupernetOracle, cost_limit
from vaenas.spaces import get_space


def _oracle(space, evaluated: list):
    def evaluate(archs):
        evaluated.append(archs.clone())
        return archs.sum(dim=1).double()  # a score that prefers larger tokens

    return SupernetOracle(space, evaluate)


def test_cost_limit_matches_the_space_cost_model():
    space = get_space("nasbench201")
    archs = space.sample(6, torch.Generator().manual_seed(0))
    params = torch.tensor([space.cost(a)["params"] for a in archs])
    limit = float(params.median())
    accept = cost_limit(space, max_params=limit, max_flops=None)
    assert torch.equal(accept(archs), params <= limit)
    assert cost_limit(space, None, None) is None


def test_evolution_respects_the_limit_and_skips_duplicates():
    space = get_space("nasbench201")
    # a params limit that rejects a good share of the space: at most 2 of the 6 edges a 3x3 conv
    conv3x3 = 3
    accept = lambda archs: (archs == conv3x3).sum(dim=1) <= 2  # noqa: E731
    evaluated: list = []
    oracle = _oracle(space, evaluated)
    generator = torch.Generator().manual_seed(0)
    evolution = Evolution(space, oracle, population=6, parents=3, mutation_fraction=0.5,
                          generator=generator, accept=accept)
    seeds = space.sample(40, torch.Generator().manual_seed(1))
    seeds = seeds[accept(seeds)][:6]
    evolution.seed(torch.cat([seeds, seeds[:2]]))  # duplicated seeds are scored once
    for _ in range(4):
        evolution.step()
    every = torch.cat(evaluated)
    assert bool(accept(every).all()), "an architecture over the limit was evaluated"
    keys = space.canonical_key(every)
    assert len(keys) == len(set(keys)), "an architecture was evaluated twice"
    assert len(evolution.archs) == 6 + 4 * 6
    assert evolution.curve == sorted(evolution.curve)  # best so far never decreases


def test_evolution_resumes_bit_for_bit():
    space = get_space("nasbench201")

    def make():
        return Evolution(space, _oracle(space, []), population=5, parents=3, mutation_fraction=0.4,
                         generator=torch.Generator().manual_seed(2))

    seeds = space.sample(5, torch.Generator().manual_seed(4))
    straight = make()
    straight.seed(seeds)
    for _ in range(4):
        straight.step()
    first = make()
    first.seed(seeds)
    first.step()
    first.step()
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    resumed.step()
    resumed.step()
    assert torch.equal(straight.archs, resumed.archs) and torch.equal(straight.scores, resumed.scores)

"""The one-shot final search: limits checked before any evaluation, duplicates never evaluated."""

from __future__ import annotations

import pytest
import torch

from vaenas.search.oneshot.final_search import MUTATIONS, Evolution, SupernetOracle, cost_limit
from vaenas.spaces import get_space


def _oracle(space, evaluated: list):
    def evaluate(archs):
        evaluated.append(archs.clone())
        return archs.sum(dim=1).double()  # a score that prefers larger tokens

    return SupernetOracle(space, evaluate)


def test_cost_limit_matches_the_cost_model():
    space = get_space("nasbench201")
    archs = space.sample(6, torch.Generator().manual_seed(0))
    params = torch.tensor([space.cost(a)["params"] for a in archs])
    limit = float(params.median())
    accept = cost_limit(space.cost, max_params=limit, max_flops=None)
    assert torch.equal(accept(archs), params <= limit)
    assert cost_limit(space.cost, None, None) is None


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_evolution_respects_the_limit_and_skips_duplicates(mutation):
    space = get_space("nasbench201")
    # a params limit that rejects a good share of the space: at most 2 of the 6 edges a 3x3 conv
    conv3x3 = 3
    accept = lambda archs: (archs == conv3x3).sum(dim=1) <= 2  # noqa: E731
    evaluated: list = []
    oracle = _oracle(space, evaluated)
    generator = torch.Generator().manual_seed(0)
    evolution = Evolution(space, oracle, population=6, parents=3, mutation_fraction=0.5,
                          generator=generator, accept=accept, mutation=mutation)
    seeds = space.sample(40, torch.Generator().manual_seed(1))
    seeds = seeds[accept(seeds)][:6]
    evolution.seed(torch.cat([seeds, seeds[:2]]))  # 8 rows, 6 distinct: each scored once ...
    assert torch.equal(evolution.archs[:6], seeds)
    assert len(evolution.archs) == 8 and evolution.uniform_topups == 2  # ... and refilled uniformly (SPOS)
    for _ in range(4):
        evolution.step()
    every = torch.cat(evaluated)
    assert bool(accept(every).all()), "an architecture over the limit was evaluated"
    keys = space.canonical_key(every)
    assert len(keys) == len(set(keys)), "an architecture was evaluated twice"
    assert len(evolution.archs) == 8 + 4 * 6
    assert evolution.curve == sorted(evolution.curve)  # best so far never decreases


def test_seeds_are_refilled_to_the_size_asked_for():
    """SPOS fills its population with random candidates: 3 distinct seeds of 5 give 2 uniform ones."""
    space = get_space("nasbench201")
    evolution = Evolution(space, _oracle(space, []), population=4, parents=2, mutation_fraction=0.5,
                          generator=torch.Generator().manual_seed(0))
    seeds = space.sample(3, torch.Generator().manual_seed(1))
    evolution.seed(torch.cat([seeds, seeds[:1], seeds[2:]]), size=7)
    keys = space.canonical_key(evolution.archs)
    assert len(evolution.archs) == 7 and len(set(keys)) == 7 and evolution.uniform_topups == 4
    assert torch.equal(evolution.archs[:3], seeds)


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_evolution_resumes_bit_for_bit(mutation):
    """...with the mutation rule it started with, whatever the evolution it is loaded into says."""
    space = get_space("nasbench201")

    def make(rule):
        return Evolution(space, _oracle(space, []), population=5, parents=3, mutation_fraction=0.4,
                         generator=torch.Generator().manual_seed(2), mutation=rule)

    other = MUTATIONS[1 - MUTATIONS.index(mutation)]
    seeds = space.sample(5, torch.Generator().manual_seed(4))
    straight = make(mutation)
    straight.seed(seeds)
    for _ in range(4):
        straight.step()
    first = make(mutation)
    first.seed(seeds)
    first.step()
    first.step()
    resumed = make(other)
    resumed.load_state_dict(first.state_dict())
    resumed.step()
    resumed.step()
    assert torch.equal(straight.archs, resumed.archs) and torch.equal(straight.scores, resumed.scores)
    assert resumed.mutation == mutation


def test_the_two_mutation_rules_breed_different_children():
    """spos: mutants that differ from their parent in one position or more (SPOS: m_prob = 0.1 per
    position); one_position: in exactly one."""
    space = get_space("shufflenet")
    parent = space.sample(1, torch.Generator().manual_seed(0))
    changed = {}
    for mutation in MUTATIONS:
        evolution = Evolution(space, _oracle(space, []), population=30, parents=1, mutation_fraction=1.0,
                              generator=torch.Generator().manual_seed(1), mutation=mutation)
        evolution.seed(parent)
        evolution.step()
        mutants = evolution.archs[1 : 1 + 30 - evolution.uniform_topups]  # then the uniform top-up, if any
        assert len(mutants) >= 25
        changed[mutation] = (mutants != parent).sum(dim=1)
    assert bool((changed["one_position"] == 1).all())
    assert int(changed["spos"].min()) >= 1 and float((changed["spos"] >= 2).float().mean()) > 0.2

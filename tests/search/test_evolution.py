"""Search strategies on NAS-Bench-201: oracle accounting, random search, regularized and SPOS evolution, breeding."""

from __future__ import annotations

import pytest
import torch

from vaenas.search.evolution import (
    Generation,
    TabularOracle,
    breed,
    random_search,
    regularized_evolution,
    spos_evolution,
    uniform_from_universe,
)


def _check_run(oracle: TabularOracle, budget: int) -> None:
    """Budget spent exactly, each query a distinct architecture of the universe, curve monotone."""
    archs, _ = oracle.history()
    assert oracle.used == budget and len(archs) == budget
    assert len(set(oracle.space.canonical_key(archs))) == budget
    assert bool(oracle.benchmark.contains(archs).all())
    curve = oracle.curve()
    assert curve.shape == (budget,)
    assert bool((curve[1:] >= curve[:-1]).all())
    assert float(curve[-1]) == pytest.approx(float(oracle.benchmark.accuracy(archs).max()))


def test_oracle_charges_each_distinct_architecture_once(nb201, generator):
    oracle = TabularOracle(nb201, budget=5, noise_std=0.0, generator=generator)
    archs = nb201.universe[[3, 3, 7]]
    scores = oracle.query(archs)
    assert oracle.used == 2 and scores[0] == scores[1]
    assert torch.equal(scores, nb201.accuracy(archs))
    oracle.query(nb201.universe[[7, 3]])  # repeats are free
    assert oracle.used == 2
    assert len(oracle.novel(nb201.universe[[3, 9, 9, 11]])) == 2
    with pytest.raises(ValueError, match="exceed the remaining budget"):
        oracle.query(nb201.universe[10:14])


def test_oracle_noise_is_seen_but_not_reported(nb201, generator):
    oracle = TabularOracle(nb201, budget=27, noise_std=0.5, generator=generator)
    archs = nb201.universe[:27]
    observed = oracle.query(archs)
    true = nb201.accuracy(archs)
    assert not torch.allclose(observed, true)
    assert torch.equal(oracle.query(archs), observed)  # fixed per architecture
    assert float(oracle.curve()[-1]) == pytest.approx(float(true.max()))


@pytest.mark.parametrize("budget", [1, 31, 120])
def test_random_search(nb201, generator, budget):
    oracle = TabularOracle(nb201, budget, 0.0, generator)
    random_search(oracle)
    _check_run(oracle, budget)


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_regularized_evolution(nb201, generator, noise):
    oracle = TabularOracle(nb201, 120, noise, generator)
    regularized_evolution(oracle, population=20, sample_size=5, generator=generator)
    _check_run(oracle, 120)


def test_spos_evolution_beats_its_seeds(nb201, generator):
    oracle = TabularOracle(nb201, 150, 0.0, generator)
    seeds = uniform_from_universe(nb201, 20, generator)
    spos_evolution(oracle, seeds, population=20, parents=5, mutation_fraction=0.5, generator=generator)
    _check_run(oracle, 150)
    curve = oracle.curve()
    assert float(curve[-1]) >= float(curve[19])


def _from_a_pair(child: torch.Tensor, parents: torch.Tensor) -> bool:
    """Whether every token of child [T] comes from one of two distinct rows of parents [P, T]."""
    matches = parents == child  # [P, T]
    return any(bool((matches[i] | matches[j]).all()) for i in range(len(parents)) for j in range(len(parents)) if i != j)


def test_breed_meets_each_operator_quota_with_new_accepted_children(nb201, generator, monkeypatch):
    space = nb201.space
    parents = uniform_from_universe(nb201, 10, generator).unique(dim=0)
    seen = set(space.canonical_key(torch.cat([parents, uniform_from_universe(nb201, 200, generator)])))
    crossed = []
    crossover = space.crossover

    def recording_crossover(parents_a, parents_b, generator=None):
        crossed.append((parents_a, parents_b))
        return crossover(parents_a, parents_b, generator=generator)

    monkeypatch.setattr(space, "crossover", recording_crossover)
    # copies=1: most first draws are rejected, so each operator must draw again for its own quota
    mutants, crossovers = breed(space, parents, 30, 20, generator, seen=seen, accept=lambda a: a[:, 0] != 0,
                                copies=1, rounds=50)
    assert mutants.shape == (30, 6) and crossovers.shape == (20, 6)
    children = torch.cat([mutants, crossovers])
    assert bool((children[:, 0] != 0).all())
    keys = space.canonical_key(children)
    assert len(set(keys)) == 50 and not set(keys) & seen
    # provenance: a mutant differs from some parent in one edge, a crossover mixes two distinct parents
    assert bool(((mutants[:, None] != parents[None]).sum(dim=2) == 1).any(dim=1).all())
    assert all(_from_a_pair(child, parents) for child in crossovers)
    assert len(crossed) > 1  # drawn again
    for parents_a, parents_b in crossed:
        assert not bool((parents_a == parents_b).all(dim=1).any()), "a parent crossed with itself"


def test_breed_never_fills_one_operator_quota_with_the_other(nb201, generator):
    """One parent cannot be crossed (not with itself): no crossovers, and no extra mutants."""
    parent = uniform_from_universe(nb201, 1, generator)
    mutants, crossovers = breed(nb201.space, parent, 5, 5, generator)
    assert mutants.shape == (5, 6) and crossovers.shape == (0, 6)
    mutants, crossovers = breed(nb201.space, parent, 0, 0, generator)
    assert mutants.shape == crossovers.shape == (0, 6)


@pytest.mark.parametrize(("fraction", "split"), [(0.5, (25, 25)), (0.2, (10, 40))])
def test_spos_evolution_queries_mutants_and_crossovers_by_mutation_fraction(nb201, generator, fraction, split):
    oracle = TabularOracle(nb201, 300, 0.0, generator)
    seeds = nb201.universe[torch.randperm(len(nb201), generator=generator)[:50]]
    generations = spos_evolution(oracle, seeds, population=50, parents=10, mutation_fraction=fraction,
                                 generator=generator)
    _check_run(oracle, 300)
    assert len(generations) == 5
    # mutants always fill their quota; crossovers fill theirs until the top-10 has converged so far
    # that its pairs have no new child left (measured: 1 new cell among all crossovers of a late
    # top-10), then the shortfall is uniform, never more mutants
    assert generations[:2] == [Generation(*split, uniform=0)] * 2
    assert all(g.mutants == split[0] and g.crossovers <= split[1] and sum(g) == 50 for g in generations)
    # check the provenance of what was queried: each generation's mutants, then its crossovers
    archs, _ = oracle.history()
    for number, generation in enumerate(generations):
        start = 50 * (number + 1)
        parents = archs[:start][oracle.benchmark.accuracy(archs[:start]).argsort(descending=True)[:10]]
        mutants = archs[start : start + generation.mutants]
        crossovers = archs[start + generation.mutants : start + generation.mutants + generation.crossovers]
        assert bool(((mutants[:, None] != parents[None]).sum(dim=2) == 1).any(dim=1).all())
        assert all(_from_a_pair(child, parents) for child in crossovers)


def test_spos_evolution_in_a_small_universe(nb201, generator):
    """When children keep leaving a 300-cell universe, generations are topped up uniformly."""
    from vaenas.groundtruth import TabularBenchmark

    rows = torch.randperm(len(nb201), generator=generator)[:300]
    small = TabularBenchmark("small", nb201.space, nb201.universe[rows], nb201.accuracies[rows],
                             key=lambda archs: nb201.space.index_of(archs).tolist())
    oracle = TabularOracle(small, 100, 0.0, generator)
    generations = spos_evolution(oracle, uniform_from_universe(small, 10, generator), 10, 3, 0.5, generator)
    _check_run(oracle, 100)
    assert sum(g.uniform for g in generations) > 0
    assert all(g.mutants <= 5 and g.crossovers <= 5 and sum(g) <= 10 for g in generations)

"""Search strategies on a tabular benchmark, all counting queries the same way.

- `UniverseSampler`: uniform over a benchmark's universe (the uniform baseline of the study).
- `TabularOracle`: answers accuracy queries from a TabularBenchmark, counts each distinct
  architecture (space.canonical_key) once against a budget, optionally adds Gaussian noise to what
  the search sees, and records the any-time curve (best TRUE accuracy after q queries).
- `random_search`: distinct architectures uniformly from the universe.
- `breed`: one SPOS generation's children (mutants and crossovers of the top-k, each operator
  with its own quota), independent of the oracle: the one-shot search reuses it with supernet
  scores and a FLOPs/params `accept`. Mutation: the space's (one position changed, the tabular
  study's) or `spos_mutation` (every position with probability 0.1, SPOS's own rule).
- `spos_evolution`: the evolutionary search of SPOS (Guo et al. 2019) that VAENAS seeds
  (paper Algorithm 2, line 15): each generation breeds mutants and crossovers of the top-k of
  everything queried so far.
- `regularized_evolution`: aging evolution (Real et al. 2019): tournament of `sample_size`
  members, mutate the winner, remove the oldest.

Every child is restricted to the benchmark's universe (the architectures with ground truth).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Container, Hashable
from typing import NamedTuple

import torch
from torch import Tensor

from vaenas.groundtruth import TabularBenchmark
from vaenas.sampler.distinct import draw_new, first_new
from vaenas.sampler.uniform import AcceptFn, accepted_rows
from vaenas.spaces.base import SearchSpace

logger = logging.getLogger(__name__)

#: candidates drawn per wanted child when variation must land in an accepted set (a benchmark's
#: universe). NAS-Bench-101's universe holds 4.7 % of the space, so about 1 mutant in 21 lands in
#: it; 32 copies x 4 rounds miss with probability (1 - 0.047)^128 ~ 0.2 %.
_COPIES = 32
_ROUNDS = 4
#: draws of a sampler before a round of new architectures is topped up uniformly (fill_with_new)
DRAW_ROUNDS = 8


class TabularOracle:
    """Accuracy queries against a benchmark under a budget of distinct architectures.

    The search sees `observed` = true accuracy + N(0, noise_std^2) (fixed per architecture);
    the curve records the best TRUE accuracy among the architectures queried so far, so it is
    non-decreasing. A repeated architecture returns its first observation and costs nothing.
    """

    def __init__(self, benchmark: TabularBenchmark, budget: int, noise_std: float, generator: torch.Generator) -> None:
        self.benchmark = benchmark
        self.space = benchmark.space
        self.budget = budget
        self.noise_std = noise_std
        self.generator = generator
        self._observed: dict[Hashable, float] = {}
        self._archs: list[Tensor] = []  # queried architectures [T], in query order
        self._true: list[float] = []  # their true accuracies (%)
        self._scores: list[float] = []  # what the search saw

    @property
    def used(self) -> int:
        return len(self._archs)

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def novel(self, archs: Tensor, limit: int | None = None) -> Tensor:
        """The rows of archs [M, T] never queried, first occurrence only, at most `limit` (default: remaining)."""
        limit = self.remaining if limit is None else min(limit, self.remaining)
        return first_new(archs, self.space.canonical_key(archs), self._observed, limit)

    def query(self, archs: Tensor) -> Tensor:
        """FloatTensor[M] (float64): observed accuracy of archs [M, T]; new ones are charged.

        ValueError if the new distinct architectures exceed the remaining budget; KeyError if one
        is not in the benchmark.
        """
        keys = self.space.canonical_key(archs)
        new_rows, seen = [], set()
        for row, key in enumerate(keys):
            if key not in self._observed and key not in seen:
                seen.add(key)
                new_rows.append(row)
        if len(new_rows) > self.remaining:
            raise ValueError(f"{len(new_rows)} new architectures exceed the remaining budget of {self.remaining}")
        if new_rows:
            index = torch.tensor(new_rows, dtype=torch.long)
            true = self.benchmark.accuracy(archs[index])
            noisy = true + self.noise_std * torch.randn(len(index), generator=self.generator, dtype=torch.float64)
            for row, accuracy, score in zip(new_rows, true.tolist(), noisy.tolist()):
                self._observed[keys[row]] = score
                self._archs.append(archs[row].clone())
                self._true.append(accuracy)
                self._scores.append(score)
        return torch.tensor([self._observed[key] for key in keys], dtype=torch.float64)

    def queried_keys(self) -> Container[Hashable]:
        """The canonical keys of every queried architecture (a live view)."""
        return self._observed.keys()

    def history(self) -> tuple[Tensor, Tensor]:
        """(archs [Q, T], observed scores [Q]) of every queried architecture, in query order."""
        if not self._archs:
            return torch.empty(0, self.space.length, dtype=torch.long), torch.empty(0, dtype=torch.float64)
        return torch.stack(self._archs), torch.tensor(self._scores, dtype=torch.float64)

    def top(self, k: int) -> Tensor:
        """The k queried architectures [k', T] with the best observed scores (k' = min(k, used))."""
        archs, scores = self.history()
        return archs[scores.argsort(descending=True)[:k]]

    def curve(self) -> Tensor:
        """FloatTensor[Q]: best true accuracy (%) among the first q queries, q = 1..Q."""
        return torch.tensor(self._true, dtype=torch.float64).cummax(0).values

    def best(self) -> tuple[Tensor, float]:
        """The queried architecture [T] with the best TRUE accuracy, and that accuracy."""
        row = max(range(self.used), key=self._true.__getitem__)
        return self._archs[row], self._true[row]


class UniverseSampler:
    """Uniform over the benchmark's universe, with the interface of vaenas.sampler.UniformSampler.

    The space's own U(α) would leave the universe (NAS-Bench-101: 95 % of its cells have no
    ground truth) and is not uniform over cells there; this is the uniform baseline of the study.
    """

    def __init__(self, benchmark: TabularBenchmark) -> None:
        self.benchmark = benchmark
        self.space = benchmark.space

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        accept: Callable[[Tensor], Tensor] | None = None,
        max_rounds: int = 100,
    ) -> Tensor:
        """n rows of the universe, LongTensor[n, T], uniformly with replacement; `accept` filters as
        in UniformSampler (a row of the universe is always in it)."""
        kept, have = [], 0
        for _ in range(max_rounds):
            if have >= n:
                break
            archs = self.benchmark.universe[torch.randint(len(self.benchmark), (n - have,), generator=generator)]
            if accept is not None:
                archs = archs[torch.as_tensor(accept(archs), dtype=torch.bool)]
            kept.append(archs)
            have += len(archs)
        if have < n:
            raise RuntimeError(f"UniverseSampler: only {have} of {n} architectures accepted after {max_rounds} rounds")
        return torch.cat(kept) if kept else torch.empty(0, self.space.length, dtype=torch.long)


def uniform_from_universe(benchmark: TabularBenchmark, n: int, generator: torch.Generator) -> Tensor:
    """n architectures [n, T] drawn uniformly, with replacement, from the benchmark's universe."""
    return benchmark.universe[torch.randint(len(benchmark), (n,), generator=generator)]


def fill_with_new(oracle: TabularOracle, draw: Callable[[int], Tensor], n: int, rounds: int) -> Tensor:
    """Up to n distinct never-queried architectures [n', T] from draw(m) (rows in the universe).

    Samplers that concentrate (a fitted VAE) return repeats; draw again, `rounds` times at most
    (new_from), then top up uniformly from the universe so that every method spends the same
    budget. The rows from draw come first.
    """
    return top_up_uniformly(oracle, new_from(oracle, draw, n, rounds), n)


def new_from(
    oracle: TabularOracle, draw: Callable[[int], Tensor], n: int, rounds: int, factor: int = 2,
    found: Tensor | None = None,
) -> Tensor:
    """At most n distinct never-queried rows [n', T] of draw(m): up to `rounds` draws of `factor`
    rows per still-missing architecture (fill_with_new without the top-up; vaenas.sampler.draw_new
    at one temperature). `found` (distinct, never queried) are kept first and count towards n."""
    return draw_new(lambda m, _: draw(m), min(n, oracle.remaining), oracle.space, rounds=rounds, factor=factor,
                    seen=oracle.queried_keys(), found=found)


def top_up_uniformly(oracle: TabularOracle, found: Tensor, n: int) -> Tensor:
    """found [F, T] (distinct, never queried) followed by new architectures drawn uniformly from
    the universe, up to n rows in all (fewer only if the universe runs out)."""
    n = min(n, oracle.remaining)
    if len(found) >= n:
        return found[:n]
    logger.debug("%d of %d new architectures found; the rest are uniform", len(found), n)
    universe = oracle.benchmark.universe
    order = torch.randperm(len(universe), generator=oracle.generator)
    # in chunks: hashing the whole NB101-20k universe for one child cost 0.12 s per call
    chunk = max(4 * n, 256)
    for start in range(0, len(order), chunk):
        found = oracle.novel(torch.cat([found, universe[order[start : start + chunk]]]), limit=n)
        if len(found) >= n:
            break
    return found


def _vary_within(
    benchmark: TabularBenchmark, vary: Callable[[Tensor], Tensor], parents: Tensor
) -> tuple[Tensor, Tensor]:
    """vary(parents) restricted to the universe: (children [M, T], found [M] bool).

    Each parent is varied _COPIES times per round; the first child inside the universe is kept.
    """
    children = parents.clone()
    found = torch.zeros(len(parents), dtype=torch.bool)
    for _ in range(_ROUNDS):
        pending = (~found).nonzero().flatten()
        if len(pending) == 0:
            break
        copies = pending.repeat_interleave(_COPIES)
        candidates = vary(copies)
        inside = benchmark.contains(candidates).view(len(pending), _COPIES)
        hit = inside.any(dim=1)
        first = inside.long().argmax(dim=1)
        chosen = candidates.view(len(pending), _COPIES, -1)[torch.arange(len(pending)), first]
        children[pending[hit]] = chosen[hit]
        found[pending[hit]] = True
    return children, found


def mutate_within(benchmark: TabularBenchmark, parents: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One mutant in the universe of each row of parents [M, T]: (children [M, T], found [M] bool)."""
    space = benchmark.space
    return _vary_within(benchmark, lambda rows: space.mutate(parents[rows], generator=generator), parents)


#: mutate(archs [M, T], generator) -> one mutant of each row [M, T] (rows may be invalid: breed filters)
Mutation = Callable[[Tensor, torch.Generator], Tensor]
#: SPOS's per-position mutation probability (megvii-model/SinglePathOneShot src/Search/search.py, m_prob)
SPOS_MUTATION_PROBABILITY = 0.1


def spos_mutation(space: SearchSpace, probability: float = SPOS_MUTATION_PROBABILITY) -> Mutation:
    """SPOS's mutation: every position independently, with `probability`, takes a token drawn
    uniformly from its whole vocabulary (its own token included), as SPOS's get_mutation does.

    A row that comes out unchanged is its parent, already evaluated, and so rejected by breed (SPOS:
    is_legal refuses a visited candidate): the mutants kept differ in at least one position. Rows
    may be invalid in spaces with constraints (NASNet, NAS-Bench-101); breed drops them, as SPOS
    drops illegal candidates. With T = 6 (NAS-Bench-201), 61 % of the rows come out unchanged;
    breed draws `copies` candidates per missing child, enough for that."""
    vocab = torch.tensor(space.vocab_sizes, dtype=torch.float64)

    def mutate(archs: Tensor, generator: torch.Generator) -> Tensor:
        archs = space.check_tokens(archs)
        chosen = torch.rand(archs.shape, generator=generator, dtype=torch.float64) < probability
        tokens = (torch.rand(archs.shape, generator=generator, dtype=torch.float64) * vocab).long()
        return torch.where(chosen, tokens, archs)

    return mutate


def breed(
    space: SearchSpace,
    parents: Tensor,
    n_mutants: int,
    n_crossovers: int,
    generator: torch.Generator,
    seen: Container[Hashable] = (),
    accept: AcceptFn | None = None,
    copies: int = _COPIES,
    rounds: int = _ROUNDS,
    mutate: Mutation | None = None,
) -> tuple[Tensor, Tensor]:
    """One SPOS generation bred from `parents` [P, T] (distinct architectures, e.g. the top-k so
    far): (mutants [m, T], crossovers [c, T]). It knows no oracle; the caller says what is taken.

    Contract:
    - A mutant is mutate(parents, generator) of a parent drawn uniformly (default space.mutate: one
      position changed; spos_mutation: SPOS's rule); a crossover is space.crossover of two
      parents drawn uniformly among the pairs of distinct parents (never a parent with itself).
    - Every child is space.is_valid, accepted by accept(archs [M, T]) -> BoolTensor[M] when given
      (a benchmark's universe, a FLOPs or params limit), and new: its space.canonical_key is not in
      `seen` (e.g. everything already evaluated) nor shared with another child of this call.
    - Each operator has its own quota, m <= n_mutants and c <= n_crossovers, and its own top-up:
      when its children are rejected it draws again, up to `rounds` rounds of `copies` candidates
      per missing child, and never fills the other operator's quota. A shortfall (m < n_mutants
      or c < n_crossovers; c = 0 with fewer than two parents) means those rounds found no more;
      the caller decides how to top up (SPOS adds random architectures).
    - All randomness comes from `generator`; mutants are bred before crossovers, so a child that
      both operators produce counts as a mutant.
    """
    taken: set[Hashable] = set()  # keys of the children kept so far, of both operators

    def children_of(vary: Callable[[int], Tensor], wanted: int) -> Tensor:
        kept: list[Tensor] = []
        missing = wanted
        for _ in range(rounds):
            if missing <= 0:
                break
            candidates = vary(copies * missing)
            candidates = candidates[space.is_valid(candidates)]
            if accept is not None and len(candidates):
                candidates = candidates[accepted_rows(accept, candidates)]
            rows = []
            for row, key in enumerate(space.canonical_key(candidates)):
                if len(rows) == missing:
                    break
                if key not in seen and key not in taken:
                    taken.add(key)
                    rows.append(row)
            kept.append(candidates[rows])
            missing -= len(rows)
        return torch.cat(kept) if kept else torch.empty(0, space.length, dtype=torch.long)

    mutation = mutate if mutate is not None else space.mutate

    def mutants(count: int) -> Tensor:
        picks = torch.randint(len(parents), (count,), generator=generator)
        return mutation(parents[picks], generator)

    def cross(count: int) -> Tensor:
        first = torch.randint(len(parents), (count,), generator=generator)
        # uniform over the other P - 1 parents: draw among them and skip over `first`
        second = torch.randint(len(parents) - 1, (count,), generator=generator)
        second += (second >= first).long()
        return space.crossover(parents[first], parents[second], generator=generator)

    bred = children_of(mutants, n_mutants)
    crossovers = children_of(cross, n_crossovers if len(parents) >= 2 else 0)
    return bred, crossovers


# --- strategies -------------------------------------------------------------------------------


def random_search(oracle: TabularOracle) -> None:
    """Query distinct architectures uniformly from the universe until the budget is spent."""
    universe = oracle.benchmark.universe
    order = torch.randperm(len(universe), generator=oracle.generator)
    oracle.query(oracle.novel(universe[order]))


class Generation(NamedTuple):
    """How many architectures of each provenance one SPOS generation queried."""

    mutants: int
    crossovers: int
    uniform: int  # top-up when the operators could not find enough new children


def spos_evolution(
    oracle: TabularOracle,
    seeds: Tensor,
    population: int,
    parents: int,
    mutation_fraction: float,
    generator: torch.Generator,
) -> list[Generation]:
    """SPOS evolutionary search from `seeds` [S, T] (in the universe) until the budget is spent.

    The new seeds are queried first. Each generation then takes the top `parents` of everything
    queried so far (observed scores) and breeds n = min(population, remaining) new architectures
    of the universe (breed): round(n · mutation_fraction) mutants and the rest crossovers, each
    operator with its own quota. What they cannot find is topped up uniformly from the universe, as
    SPOS fills its population with random candidates, so the whole budget is always used.
    Returns each generation's counts by provenance (queried in that order).
    """
    oracle.query(oracle.novel(seeds, limit=population))
    generations = []
    while oracle.remaining > 0:
        n = min(population, oracle.remaining)
        n_mutants = round(n * mutation_fraction)
        mutants, crossovers = breed(
            oracle.space, oracle.top(parents), n_mutants, n - n_mutants, generator,
            seen=oracle.queried_keys(), accept=oracle.benchmark.contains,
        )
        children = top_up_uniformly(oracle, torch.cat([mutants, crossovers]), n)
        oracle.query(children)
        generations.append(Generation(len(mutants), len(crossovers), len(children) - len(mutants) - len(crossovers)))
    return generations


def regularized_evolution(
    oracle: TabularOracle, population: int, sample_size: int, generator: torch.Generator, draw_rounds: int = 8
) -> None:
    """Aging evolution (Real et al. 2019) from a uniform population until the budget is spent.

    Each cycle samples `sample_size` members without replacement, mutates the one with the best
    observed score into a never-queried child inside the universe, appends the child and removes
    the oldest member. When `draw_rounds` rounds of mutations find no such child, the child is
    drawn uniformly (as fill_with_new tops up every other method): in the sparse NAS-Bench-101-20k
    universe the population otherwise closes in on a few dozen cells and stops spending its budget
    (measured before this rule: 58-87 of 1000 queries, the curve then flat).
    """
    universe = oracle.benchmark.universe
    first = universe[torch.randperm(len(universe), generator=generator)]
    members = oracle.novel(first, limit=population)
    scores = oracle.query(members)
    alive = collections.deque(zip(members, scores.tolist()), maxlen=population)
    while oracle.remaining > 0:
        contestants = torch.randperm(len(alive), generator=generator)[:sample_size].tolist()
        parent = max((alive[i] for i in contestants), key=lambda member: member[1])[0]

        def mutants(count: int) -> Tensor:
            children, found = mutate_within(oracle.benchmark, parent[None].expand(count, -1), generator)
            return children[found]

        child = fill_with_new(oracle, mutants, 1, draw_rounds)
        alive.append((child[0], float(oracle.query(child)[0])))  # maxlen drops the oldest

"""The final search of the one-shot loop (Algorithm 2 lines 13-15): SPOS evolution on supernet scores.

Seeds: N_seeds distinct architectures from the VAE (the paper) or from the uniform sampler
(ablation), repeats redrawn (vaenas.sampler.draw_new) and the rest topped up uniformly, as SPOS
fills its population with random candidates. Each generation breeds mutants and crossovers of
the top-k of everything evaluated so far with vaenas.search.evolution.breed (one quota per
operator, duplicates of anything evaluated skipped, FLOPs / params limits of the exported
network checked by `accept` BEFORE any evaluation), topped up with uniform architectures when
breeding finds too few. Mutation: SPOS's rule by default (every position with probability 0.1),
or one position changed (search.mutation=one_position, the tabular study's rule). Scores come
from a `SupernetOracle`, which evaluates each distinct architecture once (shared by the VAE- and
uniform-seeded runs: the supernet is fixed, so a score is a function of the architecture)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Hashable
from typing import Any

import torch
from torch import Tensor

from vaenas.sampler.distinct import draw_new, first_new
from vaenas.sampler.uniform import AcceptFn, UniformSampler
from vaenas.search.evolution import breed, spos_mutation
from vaenas.spaces.base import SearchSpace

logger = logging.getLogger(__name__)

#: variation candidates per missing child and rounds, for breed: a cost limit rejects some, and
#: each candidate's space.cost builds its child network once (cached), so fewer than the tabular 32
_COPIES, _ROUNDS = 4, 4
#: draws of the uniform top-up (2 candidates per missing architecture each)
_UNIFORM_ROUNDS = 20


#: cost(arch [T]) -> {'params': ..., 'flops': ...} of the network the search exports for arch
CostFn = Callable[[Tensor], dict[str, float]]


def cost_limit(cost: CostFn, max_params: float | None, max_flops: float | None) -> AcceptFn | None:
    """accept(archs [M, T]) -> BoolTensor[M]: rows whose cost(arch) is within the params / FLOPs limits."""
    if max_params is None and max_flops is None:
        return None

    def accept(archs: Tensor) -> Tensor:
        keep = []
        for arch in archs:
            counted = cost(arch)
            keep.append((max_params is None or counted["params"] <= max_params)
                        and (max_flops is None or counted["flops"] <= max_flops))
        return torch.tensor(keep, dtype=torch.bool)

    return accept


class SupernetOracle:
    """Supernet scores (accuracy %, held-out) of architectures, each distinct one evaluated once.

    evaluate(archs [n, T]) -> float64 [n] does the work (split across ranks by the caller).
    """

    def __init__(self, space: SearchSpace, evaluate: Callable[[Tensor], Tensor]) -> None:
        self.space, self.evaluate = space, evaluate
        self.cache: dict[Hashable, float] = {}

    def score(self, archs: Tensor) -> Tensor:
        keys = self.space.canonical_key(archs)
        todo, seen = [], set()
        for row, key in enumerate(keys):
            if key not in self.cache and key not in seen:
                seen.add(key)
                todo.append(row)
        if todo:
            scores = self.evaluate(archs[torch.tensor(todo)])
            for row, value in zip(todo, scores.tolist()):
                self.cache[keys[row]] = value
        return torch.tensor([self.cache[k] for k in keys], dtype=torch.float64)


#: the evolution's mutation rules: SPOS's own (every position with probability 0.1) or one position
MUTATIONS = ("spos", "one_position")


class Evolution:
    """SPOS evolution from given seeds, one generation per `step()`; resumable (state_dict).

    history: every architecture it evaluated [Q, T] and its supernet score [Q], in order;
    curve: best score after each generation (generation 0 = the seeds); uniform_topups: the
    architectures drawn uniformly because the seeds held repeats or breeding found too few.
    mutation: "spos" (vaenas.search.evolution.spos_mutation) or "one_position" (space.mutate).
    """

    def __init__(
        self,
        space: SearchSpace,
        oracle: SupernetOracle,
        *,
        population: int,
        parents: int,
        mutation_fraction: float,
        generator: torch.Generator,
        accept: AcceptFn | None = None,
        mutation: str = "spos",
    ) -> None:
        self.space, self.oracle, self.accept = space, oracle, accept
        self.population, self.parents, self.mutation_fraction = population, parents, mutation_fraction
        self._set_mutation(mutation)
        self.generator = generator
        self.archs = torch.empty(0, space.length, dtype=torch.long)
        self.scores = torch.empty(0, dtype=torch.float64)
        self.curve: list[float] = []
        self.generation = 0
        self.uniform_topups = 0

    def _set_mutation(self, mutation: str) -> None:
        if mutation not in MUTATIONS:
            raise ValueError(f"mutation must be one of {', '.join(MUTATIONS)}, got {mutation!r}")
        self.mutation = mutation
        self.mutate = spos_mutation(self.space) if mutation == "spos" else None  # None: breed uses space.mutate

    def _add(self, archs: Tensor) -> None:
        self.archs = torch.cat([self.archs, archs])
        self.scores = torch.cat([self.scores, self.oracle.score(archs)])
        self.curve.append(float(self.scores.max()))

    def _top_up(self, found: Tensor, n: int, seen: Container[Hashable]) -> Tensor:
        """found [F, T] followed by new (not in `seen`, distinct) accepted uniform architectures,
        up to n rows (SPOS fills its population with random candidates); counted in uniform_topups."""
        uniform = UniformSampler(self.space)
        rows = draw_new(lambda m, _: uniform.sample(m, self.generator, self.accept), n, self.space,
                        rounds=_UNIFORM_ROUNDS, seen=seen, found=found)
        self.uniform_topups += len(rows) - len(found)
        return rows

    def seed(self, seeds: Tensor, size: int | None = None) -> None:
        """Generation 0: the distinct rows of seeds [S, T] (already within the limits), topped up
        uniformly to `size` rows (default S) when they hold repeats, evaluated."""
        size = len(seeds) if size is None else size
        distinct = first_new(seeds, self.space.canonical_key(seeds), (), size)
        self._add(self._top_up(distinct, size, ()))
        self.generation = 1

    def step(self) -> None:
        """One generation: `population` new architectures bred from the top `parents`."""
        top = self.archs[self.scores.argsort(descending=True, stable=True)[: self.parents]]
        n_mutants = round(self.population * self.mutation_fraction)
        seen = set(self.space.canonical_key(self.archs))
        mutants, crossovers = breed(
            self.space, top, n_mutants, self.population - n_mutants, self.generator,
            seen=seen, accept=self.accept, copies=_COPIES, rounds=_ROUNDS, mutate=self.mutate,
        )
        children = self._top_up(torch.cat([mutants, crossovers]), self.population, seen)
        self._add(children)
        self.generation += 1

    def best(self) -> tuple[Tensor, float]:
        row = int(self.scores.argmax())
        return self.archs[row], float(self.scores[row])

    def state_dict(self) -> dict[str, Any]:
        return {
            "archs": self.archs.clone(), "scores": self.scores.clone(), "curve": list(self.curve),
            "generation": self.generation, "uniform_topups": self.uniform_topups,
            "generator": self.generator.get_state(), "mutation": self.mutation,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.archs, self.scores = state["archs"].clone(), state["scores"].clone()
        self.curve, self.generation = list(state["curve"]), int(state["generation"])
        self.uniform_topups = int(state["uniform_topups"])
        self.generator.set_state(state["generator"])
        self._set_mutation(str(state["mutation"]))  # the rule the evolution was started with
        # the evaluated architectures' scores are known: no evaluation repeats after a resume
        for key, value in zip(self.space.canonical_key(self.archs), self.scores.tolist()):
            self.oracle.cache.setdefault(key, value)

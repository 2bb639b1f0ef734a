"""The final search of the one-shot loop (Algorithm 2 lines 13-15): SPOS evolution on supernet scores.

Seeds: N_seeds architectures from the VAE (the paper) or from the uniform sampler (ablation).
Each generation breeds mutants and crossovers of the top-k of everything evaluated so far with
vaenas.search.evolution.breed (one quota per operator, duplicates of anything evaluated skipped,
FLOPs / params limits checked with space.cost by `accept` BEFORE any evaluation), topped up with
uniform architectures when breeding finds too few. Scores come from a `SupernetOracle`, which
evaluates each distinct architecture once (shared by the VAE- and uniform-seeded runs: the
supernet is fixed, so a score is a function of the architecture).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

from vaenas.sampler.uniform import AcceptFn, UniformSampler
from vaenas.search.evolution import breed
from vaenas.spaces.base import SearchSpace

logger = logging.getLogger(__name__)

#: variation candidates per missing child and rounds, for breed: a cost limit rejects some, and
#: each candidate's space.cost builds its child network once (cached), so fewer than the tabular 32
_COPIES, _ROUNDS = 4, 4


def cost_limit(space: SearchSpace, max_params: float | None, max_flops: float | None) -> AcceptFn | None:
    """accept(archs [M, T]) -> BoolTensor[M]: rows within the params / FLOPs limits (space.cost)."""
    if max_params is None and max_flops is None:
        return None

    def accept(archs: Tensor) -> Tensor:
        keep = []
        for arch in archs:
            cost = space.cost(arch)
            keep.append((max_params is None or cost["params"] <= max_params)
                        and (max_flops is None or cost["flops"] <= max_flops))
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


class Evolution:
    """SPOS evolution from given seeds, one generation per `step()`; resumable (state_dict).

    history: every architecture it evaluated [Q, T] and its supernet score [Q], in order;
    curve: best score after each generation (generation 0 = the seeds).
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
    ) -> None:
        self.space, self.oracle, self.accept = space, oracle, accept
        self.population, self.parents, self.mutation_fraction = population, parents, mutation_fraction
        self.generator = generator
        self.archs = torch.empty(0, space.length, dtype=torch.long)
        self.scores = torch.empty(0, dtype=torch.float64)
        self.curve: list[float] = []
        self.generation = 0
        self.uniform_topups = 0

    def _add(self, archs: Tensor) -> None:
        self.archs = torch.cat([self.archs, archs])
        self.scores = torch.cat([self.scores, self.oracle.score(archs)])
        self.curve.append(float(self.scores.max()))

    def _new_uniform(self, n: int, seen: set) -> Tensor:
        """Up to n new (not in `seen`, distinct) accepted architectures from the uniform sampler."""
        rows: list[Tensor] = []
        uniform = UniformSampler(self.space)
        for _ in range(20):
            if len(rows) >= n:
                break
            candidates = uniform.sample(2 * n, self.generator, self.accept)
            for arch, key in zip(candidates, self.space.canonical_key(candidates)):
                if key not in seen and len(rows) < n:
                    seen.add(key)
                    rows.append(arch)
        return torch.stack(rows) if rows else torch.empty(0, self.space.length, dtype=torch.long)

    def seed(self, seeds: Tensor) -> None:
        """Generation 0: the distinct rows of seeds [S, T] (already within the limits), evaluated."""
        keep, seen = [], set()
        for row, key in enumerate(self.space.canonical_key(seeds)):
            if key not in seen:
                seen.add(key)
                keep.append(row)
        self._add(seeds[torch.tensor(keep)])
        self.generation = 1

    def step(self) -> None:
        """One generation: `population` new architectures bred from the top `parents`."""
        top = self.archs[self.scores.argsort(descending=True, stable=True)[: self.parents]]
        n_mutants = round(self.population * self.mutation_fraction)
        seen = set(self.space.canonical_key(self.archs))
        mutants, crossovers = breed(
            self.space, top, n_mutants, self.population - n_mutants, self.generator,
            seen=seen, accept=self.accept, copies=_COPIES, rounds=_ROUNDS,
        )
        children = torch.cat([mutants, crossovers])
        missing = self.population - len(children)
        if missing > 0:  # SPOS tops up a generation with random architectures
            seen.update(self.space.canonical_key(children))
            extra = self._new_uniform(missing, seen)
            self.uniform_topups += len(extra)
            children = torch.cat([children, extra])
        self._add(children)
        self.generation += 1

    def best(self) -> tuple[Tensor, float]:
        row = int(self.scores.argmax())
        return self.archs[row], float(self.scores[row])

    def state_dict(self) -> dict[str, Any]:
        return {
            "archs": self.archs.clone(), "scores": self.scores.clone(), "curve": list(self.curve),
            "generation": self.generation, "uniform_topups": self.uniform_topups,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.archs, self.scores = state["archs"].clone(), state["scores"].clone()
        self.curve, self.generation = list(state["curve"]), int(state["generation"])
        self.uniform_topups = int(state["uniform_topups"])
        self.generator.set_state(state["generator"])
        # the evaluated architectures' scores are known: no evaluation repeats after a resume
        for key, value in zip(self.space.canonical_key(self.archs), self.scores.tolist()):
            self.oracle.cache.setdefault(key, value)

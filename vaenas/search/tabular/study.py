"""The tabular VAENAS study on real ground truth (paper §5.3, Table 4, Fig. 2), plus any-time curves.

Per seed, on a TabularBenchmark (every architecture of `benchmark.universe` has a known accuracy):

1. Paper protocol, for each noise level σ: take `study.n_train` architectures drawn uniformly from
   the universe (one draw per seed, shared by every σ, as are all the level's random streams),
   rank them by accuracy + N(0, σ²), fit the VAE on the top `study.top_fraction`
   (Algorithm 1), then report the best TRUE accuracy among K VAE samples vs K uniform samples
   (both restricted to the universe; the K values are prefixes of one draw of max(K)), and SPOS
   evolution seeded by the VAE vs seeded uniformly, with the same query budget and the same noisy
   fitness. Fig. 2: histograms of the accuracies of `study.histogram_samples` VAE vs uniform samples.
2. Beyond the paper, any-time curves at one budget of distinct queries: random search,
   regularized evolution, the VAENAS loop (a small uniform warm-up, then rounds of N_s new
   architectures from Γ, the VAE refitted warm on the best few of all queries so far; see
   vaenas.search.tabular.loop) and SPOS evolution seeded by a VAE fitted on uniform warm-up queries (counted in
   the budget). The report pairs every method with regularized evolution seed by seed and says
   where the loop's queries went. `study.enabled=false` runs this part alone.

Reported accuracies are always the true ones; noise only changes what the methods decide on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from tqdm import tqdm

from vaenas.groundtruth import TabularBenchmark
from vaenas.sampler import VAESampler
from vaenas.search.evolution import (
    DRAW_ROUNDS,
    TabularOracle,
    UniverseSampler,
    fill_with_new,
    random_search,
    regularized_evolution,
    spos_evolution,
    uniform_from_universe,
)
from vaenas.search.tabular.config import TabularConfig, check_budgets
from vaenas.search.tabular.loop import vaenas_loop
from vaenas.search.tabular.results import Curve, Found, SeedResult, vae_label

logger = logging.getLogger(__name__)


def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent generator per (seed, stream), so that parts do not shift each other's draws."""
    return torch.Generator().manual_seed(1_000_003 * seed + stream)


class TabularStudy:
    """Runs the study of `config` on `benchmark`, one seed at a time (see the module docstring)."""

    def __init__(self, config: TabularConfig, benchmark: TabularBenchmark) -> None:
        self.config = config
        self.benchmark = benchmark
        self.space = benchmark.space
        self.uniform = UniverseSampler(benchmark)
        check_budgets(config, len(benchmark))

    def tasks_per_seed(self) -> int:
        """Progress-bar units of one seed."""
        anytime = len(self.config.anytime.methods) if self.config.anytime.enabled else 0
        return (len(self.config.study.noise) if self.config.study.enabled else 0) + anytime

    def run_seed(self, seed: int, bar: tqdm) -> SeedResult:
        result = SeedResult(seed)
        torch.manual_seed(seed)  # anything that still draws from the global stream
        if self.config.study.enabled:
            self._paper_protocol(seed, result, bar)
        if self.config.anytime.enabled:
            self._anytime(seed, result, bar)
        return result

    # --- paper protocol -----------------------------------------------------------------------
    def _vae_sample(self, vae: VAESampler, n: int, generator: torch.Generator) -> Tensor:
        return vae.sample(n, generator, accept=self.benchmark.contains, max_rounds=self.config.study.max_rounds)

    def _paper_protocol(self, seed: int, result: SeedResult, bar: tqdm) -> None:
        study, evolution = self.config.study, self.config.evolution
        k_max = max(study.ks)
        uniform_accuracy = self.benchmark.accuracy(uniform_from_universe(self.benchmark, k_max, _generator(seed, 1)))
        result.max_of_k += [("uniform", 0.0, k, float(uniform_accuracy[:k].max())) for k in study.ks]
        histogram = seed == study.seed
        if histogram:
            samples = uniform_from_universe(self.benchmark, study.histogram_samples, _generator(seed, 2))
            result.histogram["uniform"] = self.benchmark.accuracy(samples).tolist()

        # Common random numbers: every noise level of a seed fits on the same n_train draw with the
        # same standard-normal noise scaled by σ, then samples and evolves from the same streams, so
        # the rows of Table 4 differ by the noise only, not by sampling variation.
        draw = _generator(seed, 10)
        train = self.benchmark.universe[torch.randperm(len(self.benchmark), generator=draw)[: study.n_train]]
        true = self.benchmark.accuracy(train)
        unit_noise = torch.randn(len(true), generator=draw, dtype=torch.float64)
        for noise in study.noise:
            bar.set_postfix_str(f"seed {seed}: VAE fit, noise {noise:g}")
            generator = _generator(seed, 11)
            observed = true + noise * unit_noise
            vae = VAESampler(self.space, self.config.vae, seed=seed)
            vae.fit_topk(train, observed, top_fraction=study.top_fraction)

            samples = self._vae_sample(vae, k_max, generator)
            accuracy = self.benchmark.accuracy(samples)
            result.max_of_k += [("vae", noise, k, float(accuracy[:k].max())) for k in study.ks]
            best = int(accuracy.argmax())
            found = Found(f"vae_{k_max}_samples", noise, seed, samples[best].tolist(), float(accuracy[best]))
            result.found.append(found)
            if histogram:
                samples = self._vae_sample(vae, study.histogram_samples, generator)
                result.histogram[vae_label(noise)] = self.benchmark.accuracy(samples).tolist()

            bar.set_postfix_str(f"seed {seed}: seeded evolution, noise {noise:g}")
            for stream, (method, draw) in enumerate((
                ("evolution_vae_seeds", lambda m, evolve: self._vae_sample(vae, m, evolve)),
                ("evolution_uniform_seeds", lambda m, evolve: self.uniform.sample(m, evolve)),
            )):
                # each run its own stream: how much the VAE run draws must not shift the uniform run
                evolve = _generator(seed, 12 + stream)
                oracle = TabularOracle(self.benchmark, evolution.budget, noise, _generator(seed, 100))
                seeds = fill_with_new(oracle, lambda m: draw(m, evolve), evolution.population, DRAW_ROUNDS)
                spos_evolution(
                    oracle, seeds, evolution.population, evolution.parents, evolution.mutation_fraction, evolve
                )
                self._record(result, "seeded_evolution", method, noise, seed, oracle)
            bar.update()

    # --- any-time comparison ------------------------------------------------------------------
    def _anytime(self, seed: int, result: SeedResult, bar: tqdm) -> None:
        anytime = self.config.anytime
        for number, method in enumerate(anytime.methods):
            bar.set_postfix_str(f"seed {seed}: any-time {method}")
            generator = _generator(seed, 200 + number)
            oracle = TabularOracle(self.benchmark, anytime.budget, anytime.noise, generator)
            started = time.perf_counter()
            if method == "random":
                random_search(oracle)
            elif method == "regularized_evolution":
                regularized_evolution(oracle, anytime.population, anytime.sample_size, generator)
            elif method == "vaenas":
                result.loop_rounds = vaenas_loop(self.config, oracle, seed, generator)
            elif method == "vae_evolution":
                self._vae_evolution(oracle, seed, generator)
            else:  # config validation lists the methods; this is a programming error
                raise AssertionError(f"unknown any-time method {method!r}")
            self._record(result, "anytime", method, anytime.noise, seed, oracle, time.perf_counter() - started)
            bar.update()

    def _vae_evolution(self, oracle: TabularOracle, seed: int, generator: torch.Generator) -> None:
        """Uniform warm-up queries, a VAE fitted on their top fraction, SPOS evolution from its seeds."""
        anytime, evolution = self.config.anytime, self.config.evolution
        oracle.query(fill_with_new(oracle, lambda m: self.uniform.sample(m, generator), anytime.warmup, DRAW_ROUNDS))
        if oracle.remaining == 0:
            return
        vae = VAESampler(self.space, self.config.vae, seed=seed)
        archs, scores = oracle.history()
        vae.fit_topk(archs, scores, top_fraction=anytime.warmup_top_fraction)
        seeds = fill_with_new(oracle, lambda m: self._vae_sample(vae, m, generator), evolution.population, DRAW_ROUNDS)
        spos_evolution(oracle, seeds, evolution.population, evolution.parents, evolution.mutation_fraction, generator)

    @staticmethod
    def _record(
        result: SeedResult, part: str, method: str, noise: float, seed: int, oracle: TabularOracle,
        seconds: float = 0.0,
    ) -> None:
        result.curves.append(Curve(part, method, noise, seed, oracle.curve().tolist(), seconds))
        arch, accuracy = oracle.best()
        result.found.append(Found(method, noise, seed, arch.tolist(), accuracy))


def run_study(
    config: TabularConfig,
    benchmark: TabularBenchmark,
    seeds: Iterable[int],
    show_progress: bool = True,
    on_result: Callable[[SeedResult], None] | None = None,
) -> list[SeedResult]:
    """The study for each seed, with one progress bar on stderr. `on_result` is called with each
    seed's result as soon as it is done (the CLI saves it there: a killed run loses at most the
    seeds in progress)."""
    study = TabularStudy(config, benchmark)
    seeds = list(seeds)
    total = study.tasks_per_seed() * len(seeds)
    results = []
    with tqdm(total=total, desc=f"tabular {benchmark.name}", unit="task", disable=not show_progress) as bar:
        for seed in seeds:
            results.append(study.run_seed(seed, bar))
            if on_result is not None:
                on_result(results[-1])
    return results



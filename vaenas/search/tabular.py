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
   _vaenas_loop) and SPOS evolution seeded by a VAE fitted on uniform warm-up queries (counted in
   the budget). The report pairs every method with regularized evolution seed by seed and says
   where the loop's queries went. `study.enabled=false` runs this part alone.

Reported accuracies are always the true ones; noise only changes what the methods decide on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from torch import Tensor
from tqdm import tqdm

from vaenas.groundtruth import TabularBenchmark
from vaenas.runtime import RunFolder, write_atomic
from vaenas.sampler import MixtureSampler, VAESampler
from vaenas.search.config import TabularConfig, check_budgets, to_dict
from vaenas.search.evolution import (
    TabularOracle,
    fill_with_new,
    new_from,
    random_search,
    regularized_evolution,
    spos_evolution,
    top_up_uniformly,
    uniform_from_universe,
)

logger = logging.getLogger(__name__)

#: draws of a sampler before a round of new architectures is topped up uniformly
_DRAW_ROUNDS = 8


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


@dataclass
class Curve:
    """best[q - 1]: best true accuracy (%) after q distinct queries."""

    part: str  # "seeded_evolution" (paper protocol) or "anytime"
    method: str
    noise: float
    seed: int
    best: list[float]
    # wall time of the run (any-time part); not part of equality: a resumed run equals a straight one
    seconds: float = field(default=0.0, compare=False)


@dataclass
class LoopRound:
    """Where one round of the VAENAS loop's queries came from (the report's diagnosis table)."""

    queried_before: int  # distinct queries before this round
    new: int  # new architectures queried this round
    from_sampler: int  # of them drawn from Γ; the rest were topped up uniformly
    drawn: int  # rows Γ drew this round
    repeats: int  # of those, rows already queried before this round
    sampler_accuracy: float  # mean true accuracy (%) of the from_sampler rows (nan if none)
    temperature: float  # decoder temperature of the round's last draw at `temperature` (not exploring)


@dataclass
class Found:
    """The best architecture one run found."""

    method: str
    noise: float
    seed: int
    arch: list[int]
    accuracy: float


@dataclass
class SeedResult:
    """Everything one seed produced, in plain Python (it travels between ranks)."""

    seed: int
    max_of_k: list[tuple[str, float, int, float]] = field(default_factory=list)  # (sampler, noise, K, best %)
    curves: list[Curve] = field(default_factory=list)
    found: list[Found] = field(default_factory=list)
    histogram: dict[str, list[float]] = field(default_factory=dict)  # sampler label -> accuracies (first seed)
    loop_rounds: list[LoopRound] = field(default_factory=list)  # the VAENAS loop's rounds (any-time part)

    def to_dict(self) -> dict:
        """A JSON-able dict (floats round-trip exactly through json: Python writes their repr)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict) -> SeedResult:
        """The SeedResult that to_dict described (JSON turns its tuples into lists: undone here)."""
        return cls(
            seed=int(document["seed"]),
            max_of_k=[tuple(entry) for entry in document["max_of_k"]],
            curves=[Curve(**curve) for curve in document["curves"]],
            found=[Found(**found) for found in document["found"]],
            histogram=dict(document["histogram"]),
            loop_rounds=[LoopRound(**entry) for entry in document.get("loop_rounds", [])],
        )


def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent generator per (seed, stream), so that parts do not shift each other's draws."""
    return torch.Generator().manual_seed(1_000_003 * seed + stream)


def _vae_label(noise: float) -> str:
    return f"VAE, noise {noise:g} %"


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
                result.histogram[_vae_label(noise)] = self.benchmark.accuracy(samples).tolist()

            bar.set_postfix_str(f"seed {seed}: seeded evolution, noise {noise:g}")
            for stream, (method, draw) in enumerate((
                ("evolution_vae_seeds", lambda m, evolve: self._vae_sample(vae, m, evolve)),
                ("evolution_uniform_seeds", lambda m, evolve: self.uniform.sample(m, evolve)),
            )):
                # each run its own stream: how much the VAE run draws must not shift the uniform run
                evolve = _generator(seed, 12 + stream)
                oracle = TabularOracle(self.benchmark, evolution.budget, noise, _generator(seed, 100))
                seeds = fill_with_new(oracle, lambda m: draw(m, evolve), evolution.population, _DRAW_ROUNDS)
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
                result.loop_rounds = self._vaenas_loop(oracle, seed, generator)
            elif method == "vae_evolution":
                self._vae_evolution(oracle, seed, generator)
            else:  # config validation lists the methods; this is a programming error
                raise AssertionError(f"unknown any-time method {method!r}")
            self._record(result, "anytime", method, anytime.noise, seed, oracle, time.perf_counter() - started)
            bar.update()

    def _vaenas_loop(self, oracle: TabularOracle, seed: int, generator: torch.Generator) -> list[LoopRound]:
        """The VAENAS loop (Algorithm 2's inner loop with real accuracies) until the budget is spent.

        `loop_warmup` uniform queries; then rounds: fit the VAE on the best `top_fraction` (at least
        `top_min`) of everything queried so far (from scratch the first time, warm started after),
        draw `round_size` new architectures from Γ = (1-ε)U + ε·VAE, step ε.

        Queried architectures are rejected. A VAE fitted on a few architectures mostly repeats them
        (issue 9 measured 80-97 % of draws), so each round draws `draw_factor` rows per missing
        architecture, and each further draw of the round samples hotter (temperature x
        `temperature_growth`); what `draw_rounds` draws cannot find is topped up uniformly (on the
        sparse NB101-20k universe a quarter of the late queries). The last `explore_share` of each
        round is drawn from the same VAE at `explore_temperature`: when the best few sit in a local
        optimum, their close samples stay there (issue 9: one CIFAR-100 seed in 80 stuck for about
        140 queries). Returns each round's provenance.
        """
        anytime, benchmark = self.config.anytime, self.benchmark
        vae_config = dataclasses.replace(self.config.vae, batch_size=anytime.vae_batch_size)
        vae = VAESampler(self.space, vae_config, seed=seed)
        epsilon = 1.0 if anytime.sampler == "vae" else anytime.epsilon
        mixture = MixtureSampler(self.uniform, vae, epsilon, anytime.epsilon_inc)
        oracle.query(fill_with_new(oracle, lambda m: self.uniform.sample(m, generator), anytime.loop_warmup,
                                   _DRAW_ROUNDS))
        rounds: list[LoopRound] = []
        while oracle.remaining > 0:
            archs, scores = oracle.history()
            best_first = torch.sort(scores, descending=True, stable=True).indices  # ties: the earlier query
            top = max(anytime.top_min, math.ceil(anytime.top_fraction * len(archs)))
            vae.fit(archs[best_first[:top]], anytime.first_fit_iters if not rounds else anytime.vae_iters)

            queried = set(oracle.queried_keys())
            drawn, repeats = 0, 0

            def drawing_from(start: float, temperatures: list[float]) -> Callable[[int], Tensor]:
                """draw(m): m rows of Γ, each call of the round `temperature_growth` times hotter
                (its temperatures appended to `temperatures`)."""

                def draw(m: int) -> Tensor:
                    nonlocal drawn, repeats
                    temperatures.append(start * anytime.temperature_growth ** len(temperatures))
                    rows = mixture.sample(m, generator, temperatures[-1], benchmark.contains,
                                          self.config.study.max_rounds)
                    drawn += m
                    repeats += sum(key in queried for key in self.space.canonical_key(rows))
                    return rows

                return draw

            before, size = oracle.used, min(anytime.round_size, oracle.remaining)
            exploring = math.floor(anytime.explore_share * size + 0.5)
            close_temperatures: list[float] = []
            new = new_from(oracle, drawing_from(anytime.temperature, close_temperatures), size - exploring,
                           anytime.draw_rounds, anytime.draw_factor)
            new = new_from(oracle, drawing_from(anytime.explore_temperature, []), len(new) + exploring,
                           anytime.draw_rounds, anytime.draw_factor, found=new)
            accuracy = benchmark.accuracy(new).mean().item() if len(new) else math.nan
            oracle.query(top_up_uniformly(oracle, new, size))
            temperature = close_temperatures[-1] if close_temperatures else anytime.temperature
            rounds.append(LoopRound(before, oracle.used - before, len(new), drawn, repeats, accuracy, temperature))
            mixture.step()
        return rounds

    def _vae_evolution(self, oracle: TabularOracle, seed: int, generator: torch.Generator) -> None:
        """Uniform warm-up queries, a VAE fitted on their top fraction, SPOS evolution from its seeds."""
        anytime, evolution = self.config.anytime, self.config.evolution
        oracle.query(fill_with_new(oracle, lambda m: self.uniform.sample(m, generator), anytime.warmup, _DRAW_ROUNDS))
        if oracle.remaining == 0:
            return
        vae = VAESampler(self.space, self.config.vae, seed=seed)
        archs, scores = oracle.history()
        vae.fit_topk(archs, scores, top_fraction=anytime.warmup_top_fraction)
        seeds = fill_with_new(oracle, lambda m: self._vae_sample(vae, m, generator), evolution.population, _DRAW_ROUNDS)
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


# --- finished seeds in the run folder -----------------------------------------------------------

#: the run folder's group of finished seeds: seeds/seed-<n>.json, one SeedResult each
SEED_GROUP = "seeds"


def save_seed(folder: RunFolder, result: SeedResult) -> None:
    """seeds/seed-<n>.json, written atomically: it is there whole or not at all."""
    folder.save_unit(SEED_GROUP, f"seed-{result.seed}", result.to_dict())


def load_seeds(folder: RunFolder) -> dict[int, SeedResult]:
    """{seed: SeedResult} of every finished seed in the run folder."""
    results = {}
    for name, document in folder.load_units(SEED_GROUP).items():
        result = SeedResult.from_dict(document)
        if name != f"seed-{result.seed}":
            raise ValueError(f"{folder.unit_path(SEED_GROUP, name)} holds seed {result.seed}")
        results[result.seed] = result
    return results


# --- outputs ----------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    return float(tensor.mean()), float(tensor.std()) if len(values) > 1 else 0.0


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean, std = _mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _curves_by(results: list[SeedResult], part: str) -> dict[tuple[str, float], list[list[float]]]:
    grouped: dict[tuple[str, float], list[list[float]]] = defaultdict(list)
    for result in results:
        for curve in result.curves:
            if curve.part == part:
                grouped[(curve.method, curve.noise)].append(curve.best)
    return grouped


def _at(curve: list[float], budget: int) -> float:
    return curve[min(budget, len(curve)) - 1]


def markdown_report(
    config: TabularConfig, benchmark: TabularBenchmark, results: list[SeedResult], elapsed_s: float
) -> str:
    """results.md: Table 4 (max of K samples and seeded evolution), evolution VAE vs uniform, any-time."""
    _, table_best = benchmark.best()
    seeds = [r.seed for r in results]
    parts = [
        f"# Tabular VAENAS study: {benchmark.name}",
        "",
        f"{len(benchmark):,} architectures with ground truth (best {table_best:.2f} %); seeds {seeds}; "
        f"mean ± std over seeds; wall time {elapsed_s:.0f} s. Every number is a TRUE accuracy (%).",
        "",
    ]
    if config.study.enabled:
        parts += _paper_protocol_report(config, results)
    if config.anytime.enabled:
        parts += _anytime_report(config, results)
    return "\n".join(parts)


def _paper_protocol_report(config: TabularConfig, results: list[SeedResult]) -> list[str]:
    study, evolution = config.study, config.evolution
    parts = [
        f"The VAE is fitted on the top {study.top_fraction:g} of {study.n_train} architectures drawn uniformly "
        "from the universe, ranked by accuracy + Gaussian noise.",
        "",
        f"## Best accuracy among K samples (paper Table 4); evolution: {evolution.budget} queries",
        "",
    ]
    by_key: dict[tuple[str, float, int], list[float]] = defaultdict(list)
    for result in results:
        for sampler, noise, k, best in result.max_of_k:
            by_key[(sampler, noise, k)].append(best)
    evolution_curves = _curves_by(results, "seeded_evolution")
    final = {key: [c[-1] for c in curves] for key, curves in evolution_curves.items()}
    rows = [["Random (uniform)"] + [_cell(by_key[("uniform", 0.0, k)]) for k in study.ks]
            + [_cell(final.get(("evolution_uniform_seeds", study.noise[0]), []))]]
    for noise in study.noise:
        rows.append([_vae_label(noise)] + [_cell(by_key[("vae", noise, k)]) for k in study.ks]
                    + [_cell(final.get(("evolution_vae_seeds", noise), []))])
    parts += [_table(["sampler"] + [f"K={k}" for k in study.ks] + ["evolution"], rows), ""]
    if study.noise[0] != 0.0:
        parts += [f"(the Random row's evolution sees noise {study.noise[0]:g} %, like the first VAE row)", ""]

    parts += [
        f"## SPOS evolution seeded by the VAE vs uniformly ({evolution.budget} queries, population "
        f"{evolution.population}, top-{evolution.parents}; the noise is also on the evolution's fitness)",
        "",
    ]
    budgets = sorted({b for b in (evolution.population, evolution.budget // 2, evolution.budget) if b >= 1})
    rows = []
    for noise in study.noise:
        for method, label in (("evolution_vae_seeds", "VAE seeds"), ("evolution_uniform_seeds", "uniform seeds")):
            curves = evolution_curves.get((method, noise), [])
            rows.append([f"{label}, noise {noise:g} %"] + [_cell([_at(c, b) for c in curves]) for b in budgets])
    parts += [_table(["seeds"] + [f"{b} queries" for b in budgets], rows), ""]
    return parts


#: the any-time method every other is compared with, seed by seed
_REFERENCE_METHOD = "regularized_evolution"


def _anytime_report(config: TabularConfig, results: list[SeedResult]) -> list[str]:
    """Any-time table (with wall time), differences paired by seed, and the VAENAS loop's rounds."""
    anytime = config.anytime
    by_method: dict[str, list[Curve]] = defaultdict(list)
    for result in results:
        for curve in result.curves:
            if curve.part == "anytime":
                by_method[curve.method].append(curve)
    budgets = [b for b in anytime.report_at if b <= anytime.budget] or [anytime.budget]
    parts = [f"## Any-time: best accuracy found vs distinct queries (noise {anytime.noise:g} %)", ""]
    rows = [[method] + [_cell([_at(c.best, b) for c in curves]) for b in budgets]
            + [f"{sum(c.seconds for c in curves) / len(curves):.1f} s"] for method, curves in by_method.items()]
    parts += [_table(["method"] + [f"{b} queries" for b in budgets] + ["wall / seed"], rows), ""]

    reference = {c.seed: c for c in by_method.get(_REFERENCE_METHOD, [])}
    others = [m for m in by_method if m != _REFERENCE_METHOD]
    if reference and others and len(results) > 1:
        parts += [f"### Difference from {_REFERENCE_METHOD}, paired by seed (mean ± standard error; "
                  "`wins` = seeds where the method's best is at least as high)", ""]
        rows = []
        for method in others:
            pairs = [(c.best, reference[c.seed].best) for c in by_method[method] if c.seed in reference]
            row = [method]
            for b in budgets:
                differences = torch.tensor([_at(mine, b) - _at(theirs, b) for mine, theirs in pairs])
                error = float(differences.std()) / math.sqrt(len(pairs))
                wins = int((differences >= 0).sum())
                row.append(f"{float(differences.mean()):+.3f} ± {error:.3f} ({wins}/{len(pairs)})")
            rows.append(row)
        parts += [_table(["method"] + [f"{b} queries" for b in budgets], rows), ""]

    loop_rounds = [r for result in results for r in result.loop_rounds]
    if loop_rounds:
        parts += _loop_report(loop_rounds, budgets)
    return parts


def _loop_report(rounds: list[LoopRound], budgets: list[int]) -> list[str]:
    """Where the VAENAS loop's queries went, per window of queries (all seeds together)."""
    parts = [
        "### VAENAS loop: where the queries went (rounds grouped by the queries made before them)",
        "",
    ]
    rows, low = [], 0
    for high in budgets:
        window = [r for r in rounds if low <= r.queried_before < high]
        low_label, low = low, high
        if not window:
            continue
        new = sum(r.new for r in window)
        from_sampler = sum(r.from_sampler for r in window)
        drawn = sum(r.drawn for r in window)
        accuracy = [r.sampler_accuracy * r.from_sampler for r in window if r.from_sampler]
        rows.append([
            f"{low_label}–{high}", str(len(window)), f"{from_sampler / new:.2f}" if new else "–",
            f"{sum(r.repeats for r in window) / drawn:.2f}" if drawn else "–",
            f"{sum(accuracy) / from_sampler:.2f}" if from_sampler else "–",
            f"{sum(r.temperature for r in window) / len(window):.2f}",
        ])
    header = ["queries", "rounds", "share drawn from Γ (rest: uniform top-up)", "drawn rows already queried",
              "mean accuracy of Γ's new queries", "mean last temperature"]
    return parts + [_table(header, rows), ""]


def _curves_csv(results: list[SeedResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["part", "method", "noise", "seed", "queries", "best"])
    for result in results:
        for curve in result.curves:
            for queries, best in enumerate(curve.best, start=1):
                writer.writerow([curve.part, curve.method, curve.noise, curve.seed, queries, f"{best:.6f}"])
    return buffer.getvalue()


def _max_of_k_csv(results: list[SeedResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sampler", "noise", "seed", "k", "best"])
    for result in results:
        for sampler, noise, k, best in result.max_of_k:
            writer.writerow([sampler, noise, result.seed, k, f"{best:.6f}"])
    return buffer.getvalue()


def _best_architectures(benchmark: TabularBenchmark, results: list[SeedResult]) -> str:
    """Per (method, noise): the best architecture over seeds, with space.to_json."""
    best: dict[tuple[str, float], Found] = {}
    for result in results:
        for found in result.found:
            key = (found.method, found.noise)
            if key not in best or found.accuracy > best[key].accuracy:
                best[key] = found
    table_arch, table_accuracy = benchmark.best()
    document = {
        "benchmark": benchmark.name,
        "table_best": {"accuracy": table_accuracy, "architecture": benchmark.space.to_json(table_arch)},
        "found": [
            {"method": f.method, "noise": f.noise, "seed": f.seed, "accuracy": f.accuracy,
             "architecture": benchmark.space.to_json(torch.tensor(f.arch))}
            for f in sorted(best.values(), key=lambda f: (f.method, f.noise))
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def _figure_bytes(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _plot_curves(grouped: dict[tuple[str, float], list[list[float]]], title: str, label_noise: bool) -> bytes:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    low, high = math.inf, -math.inf
    for (method, noise), curves in grouped.items():
        length = min(len(c) for c in curves)
        stacked = torch.tensor([c[:length] for c in curves], dtype=torch.float64)
        mean = stacked.mean(0)
        std = stacked.std(0) if len(curves) > 1 else torch.zeros(length, dtype=torch.float64)
        queries = torch.arange(1, length + 1)
        label = f"{method}, noise {noise:g} %" if label_noise else method
        axes.plot(queries, mean, label=label)
        # a best-so-far curve never leaves [worst, best] of its runs; neither does its band
        axes.fill_between(queries, (mean - std).clamp(min=stacked.min()), (mean + std).clamp(max=stacked.max()),
                          alpha=0.2)
        low = min(low, float(mean[min(length, 10) - 1]))
        high = max(high, float(stacked.max()))
    # the first few queries are far below; the interesting part is the top
    axes.set_ylim(low - 0.5, high + 0.1)
    axes.set_xscale("log")
    axes.set_xlabel("distinct architectures queried")
    axes.set_ylabel("best true accuracy found (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _figure_bytes(figure)


def _plot_histogram(histogram: dict[str, list[float]], benchmark: TabularBenchmark) -> bytes:
    """Fig. 2: one panel per VAE (noise level), each against the uniform samples."""
    import matplotlib.pyplot as plt

    uniform = torch.tensor(histogram["uniform"])
    panels = [label for label in histogram if label != "uniform"]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    everything = torch.cat([torch.tensor(v) for v in histogram.values()])
    # the worst tenth of the uniform samples (down to 10 % on NB201: cells that do not train)
    # would squash the part where the samplers differ
    low, high = float(torch.quantile(uniform, 0.1)), float(everything.max())
    bins = torch.linspace(low, high, 50).tolist()
    for axis, label in zip(axes[0], panels):
        axis.hist(uniform.clamp(min=low).tolist(), bins=bins, alpha=0.6, label="uniform")
        axis.hist(torch.tensor(histogram[label]).clamp(min=low).tolist(), bins=bins, alpha=0.6, label=label)
        axis.set_xlabel(f"true accuracy (%), clipped at {low:.1f}")
        axis.set_title(label)
        axis.legend(fontsize=8)
    axes[0][0].set_ylabel(f"architectures (of {len(uniform)})")
    figure.suptitle(f"{benchmark.name}: VAE vs uniform samples (paper Fig. 2)")
    return _figure_bytes(figure)


def write_run(
    run_dir: Path, config: TabularConfig, benchmark: TabularBenchmark, results: list[SeedResult], elapsed_s: float
) -> str:
    """Write every output of the study into run_dir; returns the markdown report.

    config.yaml (resolved), curves.csv, max_of_k.csv, results.md, best_architectures.json,
    anytime.png, seeded_evolution.png, histogram.png.
    """
    import matplotlib

    matplotlib.use("Agg")
    run_dir.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda r: r.seed)
    report = markdown_report(config, benchmark, results, elapsed_s)
    write_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    write_atomic(run_dir / "curves.csv", _curves_csv(results))
    write_atomic(run_dir / "max_of_k.csv", _max_of_k_csv(results))
    write_atomic(run_dir / "results.md", report)
    write_atomic(run_dir / "best_architectures.json", _best_architectures(benchmark, results))
    evolution = _curves_by(results, "seeded_evolution")
    if evolution:
        write_atomic(
            run_dir / "seeded_evolution.png",
            _plot_curves(evolution, f"{benchmark.name}: SPOS evolution, VAE vs uniform seeds", label_noise=True),
        )
    anytime = _curves_by(results, "anytime")
    if anytime:
        title = f"{benchmark.name}: any-time best accuracy (mean ± std, {len(results)} seeds)"
        write_atomic(run_dir / "anytime.png", _plot_curves(anytime, title, label_noise=False))
    histogram = next((r.histogram for r in results if r.histogram), None)
    if histogram:
        write_atomic(run_dir / "histogram.png", _plot_histogram(histogram, benchmark))
    logger.info("wrote %s", run_dir)
    return report

"""Typed configuration of the tabular study (`method=tabular`, the default): its sections and checks.

Read with vaenas.config.load_config(path, overrides, cls=TabularConfig); packaged configs
(tabular_nb201, tabular_nb101) live in vaenas/search/configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from vaenas.config import ConfigError, option
from vaenas.groundtruth import BENCHMARKS, NB201_DATASETS
from vaenas.sampler import VAEConfig
from vaenas.search import PACKAGED_CONFIGS

#: methods of the any-time comparison (same query budget for all)
ANYTIME_METHODS = ("random", "regularized_evolution", "vaenas", "vae_evolution")


@dataclass
class BenchmarkConfig:
    name: str = option("nasbench201", "tabular benchmark (ground truth)", choices=BENCHMARKS)
    dataset: str = option(
        "cifar10", "dataset of the accuracies (nasbench101_20k: cifar10 only)", choices=tuple(NB201_DATASETS)
    )
    # cost bounds (vaenas.search.tabular.cost_bounds): every method then searches the table's
    # architectures within them; the network is the one the benchmark trained
    max_params: float | None = option(None, "search only architectures whose network has at most this many "
                                      "parameters", above=0)
    max_flops: float | None = option(None, "... at most this many FLOPs (one image at the benchmark's "
                                     "resolution)", above=0)
    min_params: float | None = option(None, "... at least this many parameters (with max_params: a band)", above=0)
    min_flops: float | None = option(None, "... at least this many FLOPs (with max_flops: a band)", above=0)
    latency_table: str = option("", "a latency table (JSON of `python -m vaenas.spaces.latency`) of the "
                                "benchmark's network, for max_latency / min_latency")
    max_latency: float | None = option(None, "... at most this latency (ms) by benchmark.latency_table", above=0)
    min_latency: float | None = option(None, "... at least this latency (ms; with max_latency: a band)", above=0)


@dataclass
class StudyConfig:
    enabled: bool = option(
        True, "run the paper protocol (Table 4, seeded evolution, Fig. 2); false: the any-time comparison only"
    )
    seeds: int = option(10, "number of repetitions (seeds seed, seed+1, ...); results are mean ± std", at_least=1)
    # each (seed, stream) seeds a torch.Generator (64 bits) with 1_000_003 * seed + stream
    seed: int = option(0, "first seed", at_least=0, at_most=2**44)
    n_train: int = option(
        1000, "architectures with ground truth, drawn uniformly from the universe (paper: 6000)", at_least=1
    )
    top_fraction: float = option(
        0.25, "the VAE is fitted (vae.n_iters steps) on this top fraction of them (paper: 1500/6000)",
        above=0, at_most=1,
    )
    noise: list[float] = option(
        [0.0, 0.1, 0.5], "std (absolute %) of Gaussian noise on the accuracies the VAE and the evolution see",
        at_least=0,
    )
    ks: list[int] = option([10, 50, 100, 300], "K: best accuracy among K samples, VAE vs uniform", at_least=1)
    histogram_samples: int = option(5000, "samples per sampler in the Fig. 2 histogram (first seed)", at_least=1)
    max_rounds: int = option(200, "resampling rounds when restricting the VAE's samples to the universe", at_least=1)


@dataclass
class EvolutionConfig:
    # 150, not 300: on NAS-Bench-201 every evolution finds the optimum within 300 queries, which
    # hides the effect of the seeds (measured: 94.37 ± 0.00 for all six variants at 300).
    budget: int = option(
        150, "queries (distinct architectures, seeds included) of the seeded SPOS evolution", at_least=1
    )
    population: int = option(50, "architectures per generation (and seeds drawn from the sampler)", at_least=2)
    parents: int = option(10, "top-k of everything queried so far that breeds the next generation", at_least=2)
    mutation_fraction: float = option(
        0.5, "share of each generation made by mutation (the rest: crossover)", at_least=0, at_most=1
    )


@dataclass
class AnytimeConfig:
    enabled: bool = option(True, "run the any-time comparison (best accuracy vs number of queries)")
    methods: list[str] = option(list(ANYTIME_METHODS), "methods compared at the same budget", choices=ANYTIME_METHODS)
    budget: int = option(300, "queries per method and seed (distinct architectures)", at_least=1)
    noise: float = option(0.0, "std (absolute %) of Gaussian noise on the accuracies the methods see", at_least=0)
    report_at: list[int] = option([25, 50, 100, 200, 300], "budgets shown in results.md", at_least=1)
    # The VAENAS loop's settings: one for every benchmark (issue 9 tuned them on NB201 CIFAR-10 and
    # checked them on NB201 CIFAR-100 and NB101-20k; README "Tabular study" has the ablation).
    loop_warmup: int = option(20, "VAENAS loop: uniform queries before the first VAE fit", at_least=1)
    round_size: int = option(10, "VAENAS loop: N_s new architectures sampled from Γ per round", at_least=1)
    top_fraction: float = option(
        0.05, "VAENAS loop: refit the VAE on this top fraction of all queries so far (the paper's ratio K)",
        above=0, at_most=1,
    )
    top_min: int = option(5, "VAENAS loop: ... but on at least this many of the best queries", at_least=1)
    first_fit_iters: int = option(200, "VAENAS loop: VAE iterations of the first fit (from scratch)", at_least=1)
    vae_iters: int = option(50, "VAENAS loop: VAE iterations per later refit (warm start)", at_least=1)
    vae_batch_size: int = option(16, "VAENAS loop: VAE minibatch size of its fits", at_least=1)
    temperature: float = option(
        1.5, "VAENAS loop: decoder sampling temperature of a round's first draw", above=0
    )
    temperature_growth: float = option(
        1.2, "VAENAS loop: factor on the temperature for each further draw of a round when too few "
        "samples are new (a concentrated VAE mostly repeats what was queried)", at_least=1,
    )
    explore_share: float = option(
        0.1, "VAENAS loop: share of each round's new architectures drawn at explore_temperature (a VAE "
        "fitted on the best few draws near them; when they sit in a local optimum, hotter samples leave it)",
        at_least=0, at_most=1,
    )
    explore_temperature: float = option(
        3.0, "VAENAS loop: decoder temperature of the exploring share's first draw", above=0
    )
    draw_factor: int = option(16, "VAENAS loop: samples drawn per still-missing new architecture", at_least=1)
    draw_rounds: int = option(
        8, "VAENAS loop: draws per round before the rest is topped up uniformly from the universe", at_least=1
    )
    sampler: str = option(
        "mixture", "VAENAS loop: Γ = mixture (1-ε)U + εVAE, or the VAE after the warm-up", choices=("mixture", "vae")
    )
    epsilon: float = option(1.0, "VAENAS loop: ε of the first round after the warm-up", at_least=0, at_most=1)
    epsilon_inc: float = option(0.0, "VAENAS loop: ε increment per round", at_least=0, at_most=1)
    population: int = option(50, "regularized evolution: population (oldest removed)", at_least=2)
    sample_size: int = option(10, "regularized evolution: tournament size", at_least=1)
    warmup: int = option(
        100, "vae_evolution: uniform queries the VAE is fitted on (vae.n_iters) before seeding evolution", at_least=1
    )
    warmup_top_fraction: float = option(
        0.5, "vae_evolution: the VAE is fitted on this top fraction of the warm-up", above=0, at_most=1
    )


@dataclass
class TabularConfig:
    """The tabular VAENAS study (paper §5.3 protocol plus any-time curves)."""

    method: str = option("tabular", "search method: tabular (this study), oneshot or gradient", choices=("tabular",))
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    anytime: AnytimeConfig = field(default_factory=AnytimeConfig)
    # fewer, smaller steps than VAEConfig's defaults: the default study must finish in ~2 min on 2 cores
    vae: VAEConfig = field(default_factory=lambda: VAEConfig(n_iters=300, batch_size=64))
    out: str = option("", "run folder (default: runs/<benchmark>-<time>); also --out")
    progress: bool = option(True, "show progress bars on stderr")

    packaged_configs: ClassVar[Path] = PACKAGED_CONFIGS

    def check(self) -> None:
        """Constraints between options; ConfigError naming the key."""
        if self.benchmark.name == "nasbench101_20k" and self.benchmark.dataset != "cifar10":
            raise ConfigError(
                f"benchmark.dataset: nasbench101_20k has cifar10 accuracies only, not {self.benchmark.dataset!r}"
            )
        if self.evolution.parents > self.evolution.population:
            raise ConfigError(
                f"evolution.parents: {self.evolution.parents} parents exceed the population {self.evolution.population}"
            )
        if self.anytime.sample_size > self.anytime.population:
            raise ConfigError(
                f"anytime.sample_size: {self.anytime.sample_size} exceeds anytime.population {self.anytime.population}"
            )
        if not self.study.ks:
            raise ConfigError("study.ks: give at least one K")
        if not self.study.noise:
            raise ConfigError("study.noise: give at least one noise level (0 for none)")
        if self.anytime.enabled and not self.anytime.methods:
            raise ConfigError("anytime.methods: give at least one method (or anytime.enabled=false)")


def check_budgets(config: TabularConfig, universe_size: int) -> None:
    """Sizes that must fit the benchmark's universe of `universe_size` architectures (and a study
    that runs something)."""
    if not (config.study.enabled or config.anytime.enabled):
        raise ConfigError("study.enabled and anytime.enabled are both false: nothing to run")
    for key, value in (
        ("study.n_train", config.study.n_train),
        ("evolution.budget", config.evolution.budget),
        ("anytime.budget", config.anytime.budget),
    ):
        if value > universe_size:
            raise ConfigError(f"{key}: {value} exceeds the {universe_size} architectures of {config.benchmark.name}")

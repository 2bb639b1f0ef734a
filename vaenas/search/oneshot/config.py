"""Typed configuration of the one-shot search (paper Algorithm 2, "VAENAS-OS"), `method=oneshot`.

Read with vaenas.config.load_config(path, overrides, cls=OneShotConfig) (YAML + key=value
overrides, did-you-mean errors); packaged configs oneshot_* live in vaenas/search/configs. The
defaults are the CPU recipe `oneshot_nb201_digits`: the standard NAS-Bench-201 supernet (C = 16,
N = 5) on the packaged digits at their own 8 px, all of Algorithm 2 in minutes on one CPU thread,
ranked against the packaged digits ground truth (vaenas.groundtruth.nb201_digits). Algorithm 2's inputs map
to keys as follows (paper symbol -> key):

    n_iters^sup  -> train.steps            n_iters^vae -> vae.n_iters
    n_vae        -> vaenas.refit_every     N_s         -> vaenas.n_samples
    ε_inc        -> vaenas.epsilon_inc     K           -> vaenas.top_fraction
    N_seeds      -> search.seeds
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from vaenas.config import ConfigError, check_device, option
from vaenas.data import DataConfig
from vaenas.sampler import VAEConfig
from vaenas.search import PACKAGED_CONFIGS
from vaenas.search.budget import Budget

#: spaces with a supernet (vaenas.supernet.get_supernet)
ONESHOT_SPACES = ("nasbench201", "nasnet", "shufflenet", "nasbench101")
#: the largest run.seed: the random streams are seeded with run.seed + an offset below 10^4, and
#: torch.Generator takes 64-bit seeds
MAX_SEED = 2**63 - 10**4
#: which seeded evolutions the final search runs (paper: vae; uniform is the ablation)
SEEDINGS = ("vae", "uniform", "both")


@dataclass
class NASBench201Options:
    """NAS-Bench-201 supernet (vaenas.supernet.nasbench201); the benchmark's network: 16 channels, 5 cells."""

    channels: int = option(16, "channels of the first stage (doubled at each of the two reductions)", at_least=1)
    cells_per_stage: int = option(5, "search cells per stage (3 stages)", at_least=1)
    cell_affine: bool = option(
        False, "batch norms of the search cells' convolutions learn a scale and shift (false: affine-free, as in "
        "SPOS's choice blocks and NAS-Bench-201's own search cells; measured to train better at full depth)"
    )


@dataclass
class NASNetOptions:
    """NASNet-like (DARTS variant) supernet (vaenas.supernet.nasnet)."""

    C: int = option(16, "channels of the first cells (stem 3C)", at_least=1)
    layers: int = option(8, "cells (at least 2: two of them reduce)", at_least=2)
    reductions: list[int] | None = option(
        None, "indices of the reduction cells (null: layers//3 and 2*layers//3, as DARTS)", at_least=0
    )


@dataclass
class ShuffleNetOptions:
    """ShuffleNet-like supernet (vaenas.supernet.shufflenet)."""

    width: float = option(1.0, "channel multiplier of the first conv and the stages", above=0, at_most=4)
    dropout: float = option(0.1, "dropout before the classifier (SPOS: 0.1)", at_least=0, at_most=0.99)
    small_input: bool = option(False, "stride-1 stem for 32 px images (images a multiple of 16, else of 32)")


@dataclass
class NASBench101Options:
    """NAS-Bench-101 supernet (vaenas.supernet.nasbench101), as the benchmark's network."""

    stem_channels: int = option(128, "channels of the stem convolution", at_least=1)
    num_stacks: int = option(3, "stacks of cells (a downsampling between stacks)", at_least=1)
    cells_per_stack: int = option(3, "cells (the benchmark's modules) per stack", at_least=1)


@dataclass
class SupernetConfig:
    """Constructor options of each space's supernet (num_classes comes from the data); the run
    uses those of its `space`, e.g. supernet.nasnet.C=8."""

    # the standard NB201 supernet, as the digits ground truth's networks (vaenas.groundtruth.nb201_digits)
    nasbench201: NASBench201Options = field(default_factory=NASBench201Options)
    nasnet: NASNetOptions = field(default_factory=NASNetOptions)
    shufflenet: ShuffleNetOptions = field(default_factory=ShuffleNetOptions)
    nasbench101: NASBench101Options = field(default_factory=NASBench101Options)

    def options(self, space: str) -> dict:
        """The keyword arguments of `space`'s supernet constructor (vaenas.supernet.get_supernet)."""
        return dataclasses.asdict(getattr(self, space))


@dataclass
class TrainConfig:
    steps: int = option(3000, "n_iters^sup: supernet training steps (one architecture group per step)", at_least=1)
    group_size: int = option(
        1, "G: architectures trained per step, each on its own 1/G of the batch (1 = SPOS)", at_least=1
    )
    lr: float = option(0.1, "SGD learning rate at the reference batch train.lr_batch (scaled linearly)", above=0)
    lr_batch: int = option(
        64, "global batch (all ranks) for which train.lr is given; lr = train.lr * global batch / lr_batch",
        at_least=1,
    )
    momentum: float = option(0.9, "SGD momentum", at_least=0, at_most=1)
    nesterov: bool = option(False, "Nesterov momentum")
    weight_decay: float = option(4e-5, "weight decay (not on batch-norm parameters and biases)", at_least=0)
    label_smoothing: float = option(0.1, "label smoothing of the training loss", at_least=0, at_most=1)
    schedule: str = option(
        "linear", "learning-rate decay per step: linear to 0 (paper A.1), cosine, or constant",
        choices=("linear", "cosine", "constant"),
    )
    # issue 18 (scripts/supernet_curves.py, NB201 C = 16, N = 5 under uniform paths): warm-up and clipping
    # each took the loss after 600 steps from 1.99 to ~1.87; with affine-free cells and 3000 steps, 1.09
    within_budget: bool = option(
        False, "draw every trained architecture within the search.{min,max}_{params,flops} bounds (SPOS's "
        "constrained uniform sampling: with vaenas.epsilon_inc=0, uniform within a FLOPs band), by rejection on "
        "the cost table; needs a bound",
    )
    warmup_steps: int = option(100, "steps of linear learning-rate warm-up (0: none)", at_least=0)
    grad_clip: float | None = option(5.0, "clip the gradient norm to this (null: no clipping; NB201's "
                                          "random-sampling baseline clips at 5)", above=0)
    device: str = option("auto", "auto (cuda:LOCAL_RANK when available, else cpu), cpu or cuda")
    bf16: bool = option(True, "bf16 autocast and channels-last on a GPU (ignored on the CPU)")
    # 1, not torch's default (all cores): one-shot steps are many small ops, and on a shared 2-core
    # machine 2 threads ran a demo step 4x slower than 1 (OpenMP barriers wait for the busy core)
    threads: int | None = option(1, "intra-op CPU threads per rank (null: torch's default)", at_least=1)


@dataclass
class VAENASConfig:
    epsilon_inc: float = option(
        0.0004, "ε_inc: Γ = (1-ε)U + ε·VAE, ε grows by this per training step from 0 (0 = plain SPOS)",
        at_least=0, at_most=1,
    )
    epsilon_max: float = option(0.8, "cap of ε (keeps some uniform exploration)", above=0, at_most=1)
    refit_every: int = option(250, "n_vae: steps between VAE refits (Algorithm 2 line 5)", at_least=1)
    n_samples: int = option(32, "N_s: architectures sampled from Γ and evaluated at each refit", at_least=2)
    top_fraction: float = option(0.5, "K: the VAE is fitted on this top fraction of the N_s (paper 50 %)",
                                 above=0, at_most=1)
    compare_samples: int = option(
        16, "pure-VAE and pure-uniform samples evaluated at each refit (the paper's Fig. 2 on the supernet); 0: off",
        at_least=0,
    )


@dataclass
class EvalConfig:
    group_size: int = option(16, "architectures scored per forward pass (G-group evaluation)", at_least=1)


@dataclass
class SearchConfig:
    seeds: int = option(16, "N_seeds: architectures drawn from the VAE (or uniformly) to seed the evolution",
                        at_least=1)
    seeding: str = option(
        "both", "vae (paper), uniform (ablation) or both (runs and compares the two)", choices=SEEDINGS
    )
    generations: int = option(4, "evolution generations after the seeds", at_least=0)
    population: int = option(16, "new architectures per generation", at_least=1)
    parents: int = option(8, "top-k of everything evaluated so far that breeds each generation", at_least=1)
    mutation_fraction: float = option(0.5, "share of each generation made by mutation (rest: crossover)",
                                      at_least=0, at_most=1)
    mutation: str = option(
        "spos", "spos (SPOS's rule: every position takes a uniform token with probability 0.1, a mutant differs "
        "in at least one) or one_position (one position changed to another token, the tabular study's rule)",
        choices=("spos", "one_position"),
    )
    max_params: float | None = option(None, "parameter limit of a candidate's exported network (checked before "
                                      "evaluation)", above=0)
    max_flops: float | None = option(None, "FLOPs limit of a candidate's exported network, one image at "
                                     "data.image_size (checked before evaluation)", above=0)
    min_params: float | None = option(None, "lower parameter bound of a candidate's exported network (with "
                                      "max_params: a band, as SPOS searches within a range)", above=0)
    min_flops: float | None = option(None, "lower FLOPs bound of a candidate's exported network, one image at "
                                     "data.image_size (with max_flops: a band, SPOS's FLOPs ranges)", above=0)
    latency_table: str = option(
        "", "a latency table (JSON of `python -m vaenas.spaces.latency`) of the exported network, for "
        "max_latency / min_latency; refused when measured for other child options or image size")
    max_latency: float | None = option(None, "latency limit (ms) of a candidate's exported network by "
                                       "search.latency_table (checked before evaluation)", above=0)
    min_latency: float | None = option(None, "lower latency bound (ms), with max_latency a band", above=0)
    ranked_cells: int = option(
        120, "after the search, this many of the ground truth's architectures (all when it holds fewer; a "
        "fixed draw of seed 0 otherwise) are scored on the final supernet, and the report gives Kendall τ, "
        "Spearman, τ within the true top half and precision@10 against their true accuracies (0: off)", at_least=0,
    )
    ground_truth: str = option(
        "auto", "true accuracies for the report's τ and true-accuracy columns: auto (the packaged table of the "
        "space and data.name: NAS-Bench-201 on cifar10/cifar100, NAS-Bench-101's sample on cifar10; right only "
        "when the images are that dataset's), none, or a CSV file (.csv or .csv.gz) with a header line "
        "`tokens,accuracy` and one row per architecture: its tokens as in architecture.json, space-separated "
        "(e.g. `3 1 2 1 4 3`), and its accuracy in %",
    )


    def budget(self) -> Budget:
        """The cost bounds of the exported network (vaenas.search.budget); ValueError for an empty band."""
        if (self.max_latency is not None or self.min_latency is not None) and not self.latency_table:
            raise ValueError("search.latency_table: search.max_latency / min_latency need a latency table of the "
                             "exported network (python -m vaenas.spaces.latency)")
        return Budget(self.max_params, self.max_flops, self.min_params, self.min_flops, prefix="search",
                      max_latency=self.max_latency, min_latency=self.min_latency)

@dataclass
class RunConfig:
    seed: int = option(0, "seed of the supernet's weights, the architecture stream and the search", at_least=0,
                       at_most=MAX_SEED)
    checkpoint_every: int = option(100, "steps between checkpoints (also one at every phase end); 0: phase ends only",
                                   at_least=0)
    stop_at: int | None = option(
        None, "stop after this training step with a checkpoint (then --resume continues)", at_least=1
    )
    log_every: int = option(10, "steps between training-loss lines in metrics.jsonl", at_least=1)


@dataclass
class OneShotConfig:
    """The one-shot VAENAS search (paper §4.2, Algorithm 2); defaults: the CPU demo."""

    method: str = option("oneshot", "search method: tabular (the study) or oneshot (Algorithm 2)",
                         choices=("oneshot",))
    space: str = option("nasbench201", "search space", choices=ONESHOT_SPACES)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(
        name="digits", batch_size=64, holdout=300, calibration_images=128, eval_batch_size=300,
        load_test=False,
    ))
    train: TrainConfig = field(default_factory=TrainConfig)
    vaenas: VAENASConfig = field(default_factory=VAENASConfig)
    vae: VAEConfig = field(default_factory=lambda: VAEConfig(n_iters=100, batch_size=32))
    eval: EvalConfig = field(default_factory=EvalConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    run: RunConfig = field(default_factory=RunConfig)
    out: str = option("", "run folder (default: runs/oneshot-<space>-<data>-<time>); also --out")
    progress: bool = option(True, "progress bar on rank 0 (stderr)")

    packaged_configs: ClassVar[Path] = PACKAGED_CONFIGS

    def check(self) -> None:
        """Constraints between options; ConfigError naming the key."""
        from vaenas.spaces import get_space  # here: configs are read before the spaces are needed

        distinct = self.search.seeds + self.search.population * self.search.generations
        size = get_space(self.space).num_architectures
        if distinct > size:
            raise ConfigError(f"search.seeds + search.population * search.generations: the final search evaluates "
                              f"{distinct} distinct architectures, and {self.space} has {size:,}")
        if self.search.parents > distinct:
            raise ConfigError(f"search.parents: {self.search.parents} exceeds every architecture the search evaluates")
        if self.data.batch_size % self.train.group_size:
            raise ConfigError(
                f"train.group_size: a batch of {self.data.batch_size} (data.batch_size) does not split into "
                f"{self.train.group_size} equal groups"
            )
        try:
            budget = self.search.budget()
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.train.within_budget and not budget.active and self.method == "oneshot":
            raise ConfigError("train.within_budget: no bound to sample within; set search.max_flops, search.min_flops "
                              "(a band), search.max_params or search.min_params")
        check_device("train.device", self.train.device, allow_auto=True)
        if self.run.stop_at is not None and self.run.stop_at > self.train.steps:
            raise ConfigError(f"run.stop_at: {self.run.stop_at} is after the last step {self.train.steps}")


#: keys a resumed run may change: they do not affect the results (the rest is the checkpoint's
#: config fingerprint, vaenas.runtime.job.fingerprint)
RESUMABLE_KEYS = ("out", "progress", "run.stop_at", "run.checkpoint_every", "train.threads", "data.workers")

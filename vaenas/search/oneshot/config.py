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

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from vaenas.config import ConfigError, option
from vaenas.data import DataConfig
from vaenas.sampler import VAEConfig
from vaenas.search import PACKAGED_CONFIGS

#: spaces with a supernet (vaenas.supernet.get_supernet)
ONESHOT_SPACES = ("nasbench201", "nasnet", "shufflenet", "nasbench101")
#: which seeded evolutions the final search runs (paper: vae; uniform is the ablation)
SEEDINGS = ("vae", "uniform", "both")


@dataclass
class SupernetConfig:
    """Constructor options of each space's supernet (num_classes comes from the data); the run
    uses those of its `space`. Sub-keys merge into the defaults: supernet.nasnet.C=8."""

    # the standard NB201 supernet, as the digits ground truth's networks (vaenas.groundtruth.nb201_digits)
    nasbench201: dict = option({"channels": 16, "cells_per_stage": 5}, "NAS-Bench-201 supernet options "
                               "(channels, cells_per_stage, cell_affine; the standard supernet: 16, 5, false)")
    nasnet: dict = option({}, "NASNet-like supernet options (C, layers, reductions; defaults 16, 8)")
    shufflenet: dict = option({}, "ShuffleNet-like supernet options (width, dropout, small_input)")
    nasbench101: dict = option({}, "NAS-Bench-101 supernet options (stem_channels, num_stacks, cells_per_stack)")

    def options(self, space: str) -> dict:
        return dict(getattr(self, space))


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
    max_params: float | None = option(None, "parameter limit of a candidate (space.cost, checked before evaluation)",
                                      above=0)
    max_flops: float | None = option(None, "FLOPs limit of a candidate (space.cost, checked before evaluation)",
                                     above=0)


@dataclass
class RunConfig:
    seed: int = option(0, "seed of the supernet's weights, the architecture stream and the search", at_least=0)
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
        name="digits", image_size=8, batch_size=64, holdout=300, calibration_images=128, eval_batch_size=300,
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
        if self.search.parents > self.search.seeds + self.search.population * self.search.generations:
            raise ConfigError(f"search.parents: {self.search.parents} exceeds every architecture the search evaluates")
        if self.data.batch_size % self.train.group_size:
            raise ConfigError(
                f"train.group_size: a batch of {self.data.batch_size} (data.batch_size) does not split into "
                f"{self.train.group_size} equal groups"
            )
        if self.train.device not in ("auto", "cpu", "cuda") and not self.train.device.startswith("cuda:"):
            raise ConfigError(f"train.device: {self.train.device!r} is not auto, cpu or cuda")
        if self.run.stop_at is not None and self.run.stop_at > self.train.steps:
            raise ConfigError(f"run.stop_at: {self.run.stop_at} is after the last step {self.train.steps}")
        if "num_classes" in self.supernet.options(self.space):
            raise ConfigError(f"supernet.{self.space}.num_classes: set by the data, not here")


#: keys a resumed run may change: they do not affect the results (the rest is the checkpoint's
#: config fingerprint, vaenas.runtime.job.fingerprint)
RESUMABLE_KEYS = ("out", "progress", "run.stop_at", "run.checkpoint_every", "train.threads", "data.workers")

"""Typed configuration of a retraining, `python -m vaenas.train` (config.yaml's `method: retrain`).

A retraining starts from a packaged recipe, a YAML file in vaenas/train/recipes named by the `recipe`
key (`recipe=cifar10` on the command line is `--config cifar10`), and every value of it can be
overridden (key=value, or a YAML file of one's own with --config). A recipe says which search spaces
(`spaces`) and datasets (`datasets`) it is for; a run whose architecture or data.name it is not for
is refused with the recipes that are (vaenas.train.validate).

The child network is the space's build_child with the options of its `network.<space>` section; the
number of classes comes from the data, and a NASNet child's auxiliary head and drop path are on when
train.auxiliary_weight and train.drop_path are above 0. train.batch_size is the global batch of all
ranks (each rank loads train.batch_size / world size images a step), so a recipe means the same run
on any number of GPUs.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from vaenas.config import ConfigError, check_device, option, read_yaml
from vaenas.data import DATASETS, DataConfig

#: the packaged recipes: vaenas/train/recipes/<name>.yaml
RECIPES = Path(__file__).resolve().parent / "recipes"
#: search spaces with a child network
SPACES = ("nasbench201", "nasnet", "shufflenet", "nasbench101")
OPTIMIZERS = ("sgd", "rmsprop_tf")
#: the largest run.seed: rank r seeds its random streams with run.seed + r
MAX_SEED = 2**63 - 2**16


def recipe_names() -> tuple[str, ...]:
    """The packaged recipes' names, sorted."""
    return tuple(sorted(path.stem for path in RECIPES.glob("*.yaml")))


def recipes_for(key: str, value: str) -> list[str]:
    """The packaged recipes whose `key` list (spaces or datasets) holds `value`."""
    return [name for name in recipe_names() if value in read_yaml(RECIPES / f"{name}.yaml").get(key, [])]


@dataclass
class NetworkConfig:
    """The child network's build_child options, one free-form section per space (num_classes comes from the
    data; auxiliary and drop_path of nasnet from train.auxiliary_weight and train.drop_path)."""

    nasbench201: dict = option({}, "NAS-Bench-201 child: channels, cells_per_stage")
    nasnet: dict = option({}, "NASNet child: C, layers, reductions, stem (cifar: 32 px, imagenet: 224 px)")
    shufflenet: dict = option({}, "ShuffleNet child: width, dropout, small_input (32 px images)")
    nasbench101: dict = option({}, "NAS-Bench-101 child: stem_channels, num_stacks, cells_per_stack")


@dataclass
class TrainConfig:
    epochs: int = option(30, "training epochs (an epoch: the training split once, the last partial batch dropped)",
                         at_least=1)
    batch_size: int = option(64, "global batch: images per step over all ranks (per rank: batch_size / ranks)",
                             at_least=1)
    optimizer: str = option(
        "sgd", "sgd (momentum, optionally Nesterov) or rmsprop_tf (TF1's RMSProp, NAS-Bench-101's optimizer)",
        choices=OPTIMIZERS,
    )
    lr: float = option(0.05, "learning rate at step 0 (for the global batch; not scaled by the number of ranks)",
                       above=0)
    schedule: str = option("cosine", "learning-rate decay per step: cosine, linear (to 0) or constant",
                           choices=("cosine", "linear", "constant"))
    momentum: float = option(0.9, "momentum", at_least=0, at_most=1)
    nesterov: bool = option(False, "Nesterov momentum (sgd)")
    rmsprop_decay: float = option(0.9, "rmsprop_tf: decay of the mean square of the gradients", at_least=0,
                                  at_most=1)
    rmsprop_epsilon: float = option(1.0, "rmsprop_tf: added to the mean square inside the square root", above=0)
    weight_decay: float = option(5e-4, "weight decay (an L2 term of the loss's gradient)", at_least=0)
    decay_all: bool = option(
        False, "weight decay on every parameter, as the NAS-Bench-101/201 trainings do (false: not on batch-norm "
        "parameters and biases)",
    )
    label_smoothing: float = option(0.1, "label smoothing of the training loss", at_least=0, at_most=1)
    grad_clip: float = option(0.0, "clip the gradients' global L2 norm to this (0: no clipping)", at_least=0)
    auxiliary_weight: float = option(
        0.0, "weight of the auxiliary head's loss (NASNet children; > 0 builds the head, DARTS: 0.4)", at_least=0,
    )
    drop_path: float = option(
        0.0, "drop-path probability of the last epoch, increased linearly from 0 over the epochs (NASNet "
        "children, DARTS: 0.2)", at_least=0, at_most=0.95,
    )
    bn_momentum: float | None = option(
        None, "momentum of every batch-norm layer's running statistics (null: the network's own: torch's 0.1, "
        "NAS-Bench-101's 0.003 of TF's 0.997, which needs thousands of steps to settle)", above=0, at_most=1,
    )
    ema_decay: float = option(
        0.0, "exponential moving average of the weights (and BN statistics) with this decay per step, "
        "evaluated beside the weights (0: none; e.g. 0.9998)", at_least=0, at_most=1,
    )
    eval_every: int = option(1, "epochs between evaluations (the last epoch is always evaluated)", at_least=1)
    device: str = option("auto", "auto (cuda:LOCAL_RANK when available, else cpu), cpu or cuda")
    bf16: bool = option(True, "bf16 autocast on a GPU (ignored on the CPU)")
    channels_last: bool = option(True, "channels-last images and weights on a GPU (ignored on the CPU)")
    compile: bool = option(False, "torch.compile the training forward")
    threads: int | None = option(None, "intra-op CPU threads per rank (null: torch's default)", at_least=1)


@dataclass
class RunConfig:
    seed: int = option(0, "seed of the weights and of the dropout / drop-path streams (rank r: seed + r)",
                       at_least=0, at_most=MAX_SEED)
    checkpoint_every: int = option(0, "steps between checkpoints besides the one at every epoch end (0: none)",
                                   at_least=0)
    stop_at: int | None = option(
        None, "stop after this training step with a checkpoint (then --resume continues)", at_least=1
    )
    log_every: int = option(50, "steps between training-loss lines in metrics.jsonl", at_least=1)


@dataclass
class RetrainConfig:
    """A retraining of a found architecture from scratch; defaults: generic, every recipe sets its own."""

    method: str = option("retrain", "the job (retrain)", choices=("retrain",))
    arch: str = option("", "the architecture: a JSON file ({space, tokens} or {space, architecture}) or a "
                           "search run folder (its architecture.json)")
    recipe: str = option("", "the packaged recipe this config starts from (recipe=<name> is --config <name>)")
    spaces: list[str] = option(list(SPACES), "the search spaces the recipe is for", choices=SPACES)
    datasets: list[str] = option(list(DATASETS), "the datasets the recipe is for", choices=tuple(DATASETS))
    network: NetworkConfig = field(default_factory=NetworkConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(name="digits", holdout=0.2, eval_batch_size=500))
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    out: str = option("", "run folder (default: runs/retrain-<recipe>-<time>); also --out")
    progress: bool = option(True, "progress bar on rank 0 (stderr)")

    packaged_configs: ClassVar[Path] = RECIPES
    unused_keys: ClassVar[dict[str, str]] = {
        "data.batch_size": "a retraining sets its global batch with train.batch_size (each rank loads "
                           "train.batch_size / ranks images)",
        "data.calibration_images": "a retraining recalibrates no batch norm (its statistics are trained)",
    }

    def check(self) -> None:
        """Constraints between options that need no data or architecture; ConfigError naming the key."""
        if not self.recipe:
            raise ConfigError(f"recipe: name one, recipe=<name> ({', '.join(recipe_names())}), or give a "
                              "--config file that sets it")
        if not self.arch:
            raise ConfigError("arch: give the architecture to retrain: arch=<architecture JSON or search run folder>")
        if self.data.name not in self.datasets:
            suited = recipes_for("datasets", self.data.name)
            raise ConfigError(f"data.name: recipe {self.recipe} is for {', '.join(self.datasets)}, not "
                              f"{self.data.name} (recipes for {self.data.name}: {', '.join(suited) or 'none'})")
        if self.data.name == "digits" and self.data.holdout == 0:
            raise ConfigError("data.holdout: digits has no test split; a retraining on it is evaluated on "
                              "held-out images, so hold some out (e.g. 0.2)")
        if self.data.holdout == 0 and not self.data.load_test:
            raise ConfigError("data.load_test: false with data.holdout 0 leaves nothing to evaluate on")
        check_device("train.device", self.train.device, allow_auto=True)


def unknown_recipe(name: str) -> ConfigError:
    """The error of a recipe name that is not packaged, with the closest one."""
    names = recipe_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"recipe: unknown recipe {name!r}{hint}; choose one of {', '.join(names)}")


#: keys a resumed run may change: they do not affect the results (the rest is the checkpoint's
#: config fingerprint, vaenas.runtime.job.fingerprint)
RESUMABLE_KEYS = (
    "out", "progress", "run.stop_at", "run.checkpoint_every", "train.threads", "data.workers", "data.eval_cache_mb",
)

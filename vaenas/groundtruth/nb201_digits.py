"""Ground truth of NAS-Bench-201 cells on the packaged digits: standalone training with one recipe.

`DigitsRecipe` is the recipe, `train_standalone(tokens, recipe, seed)` trains one cell's child
network (space.build_child, the network the packaged digits supernet ranks) and returns its test
accuracy, and `nasbench201_digits()` reads the packaged table nb201_digits.csv.gz (written by
scripts/nb201_digits_groundtruth.py; recipe and timings in nb201_digits.json; source and licence
in NOTICE).

Splits of the 1797 digits (all seeded, disjoint): the `search_holdout` images the packaged search
scores candidates on (vaenas.data.splits.holdout_split at data.seed 0, exactly as the one-shot
search draws them) are left out; from the rest, `test_images` are the test split and the next
`train_images` the training split of every standalone network. The supernet scores architectures
on none of the test images, and no standalone network trains on them.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vaenas.data.digits import NUM_IMAGES, read_digits
from vaenas.data.splits import holdout_split
from vaenas.data.transforms import transforms_for
from vaenas.groundtruth.tables import GroundTruthError, TabularBenchmark
from vaenas.runtime.optim import learning_rate, parameter_groups
from vaenas.spaces import get_space
from vaenas.spaces.nasbench201 import OPS

DATA_DIR = Path(__file__).resolve().parent
TABLE_FILE = DATA_DIR / "nb201_digits.csv.gz"
RECIPE_FILE = DATA_DIR / "nb201_digits.json"
#: the split stream of the ground truth (vaenas.data.seeding uses 1-4)
_SPLIT_STREAM = 18


@dataclass(frozen=True)
class DigitsRecipe:
    """How every cell of the table is trained (SGD, cosine to 0, no augmentation, no label smoothing).

    Network: build_child(arch, channels, cells_per_stage, num_classes=10) on image_size px digits.
    """

    image_size: int = 8  # the digits' own resolution (the packaged file is 8 x 8)
    channels: int = 16
    cells_per_stage: int = 5  # the standard NB201 network (C = 16, N = 5)
    search_holdout: int = 300  # data.holdout of oneshot_nb201_digits (data.seed 0): left out
    # a small training set and a short budget separate the cells: on a 14-cell pilot 500 images
    # and 200 steps left 12 of 14 at 96-98.6 %; 300 images and 150 steps spread 16 cells over
    # 81-98 % (IQR 92.9-96.4 %) with a seed-to-seed τ of 0.74, ~13 s CPU per training (one thread)
    test_images: int = 1000
    train_images: int = 300
    steps: int = 150
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    split_seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "DigitsRecipe":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise GroundTruthError(f"recipe has unknown keys {sorted(unknown)} (known: {sorted(known)})")
        return cls(**data)


def digits_split(recipe: DigitsRecipe) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions in the packaged digits (int64 arrays, disjoint, both outside the
    search's held-out images)."""
    search_train, _ = holdout_split(NUM_IMAGES, recipe.search_holdout, 0)
    if recipe.test_images + recipe.train_images > len(search_train):
        raise ValueError(
            f"test_images + train_images = {recipe.test_images + recipe.train_images} exceed the "
            f"{len(search_train)} digits outside the search's held-out images"
        )
    order = np.random.default_rng([recipe.split_seed, _SPLIT_STREAM]).permutation(len(search_train))
    test = search_train[order[: recipe.test_images]]
    train = search_train[order[recipe.test_images : recipe.test_images + recipe.train_images]]
    return train, test


def digits_tensors(image_size: int) -> tuple[Tensor, Tensor]:
    """(images float32 [1797, 3, S, S] normalised as the search serves them, labels int64 [1797])."""
    images, labels = read_digits()
    _, evaluation = transforms_for("digits", image_size)  # digits: the training transform is the same
    return torch.stack([evaluation(image) for image in images]), labels


@torch.no_grad()
def accuracy_of(model: torch.nn.Module, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of model in eval mode on images [N, ...], labels [N]."""
    model.eval()
    correct = sum(int((model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
                  for i in range(0, len(labels), batch_size))
    return 100.0 * correct / len(labels)


def train_standalone(
    tokens: Tensor, recipe: DigitsRecipe, seed: int, data: tuple[Tensor, Tensor] | None = None
) -> float:
    """Train the child of one NB201 cell tokens [6] with `recipe` and seed `seed` (weights and batch
    order); returns its test accuracy (%). data: digits_tensors(recipe.image_size), to reuse."""
    images, labels = data if data is not None else digits_tensors(recipe.image_size)
    train, test = (torch.from_numpy(part) for part in digits_split(recipe))
    space = get_space("nasbench201")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        child = space.build_child(torch.as_tensor(tokens), channels=recipe.channels,
                                  cells_per_stage=recipe.cells_per_stage, num_classes=10)
    optimizer = torch.optim.SGD(parameter_groups(child, recipe.weight_decay), lr=recipe.lr,
                                momentum=recipe.momentum, nesterov=recipe.nesterov)
    generator = torch.Generator().manual_seed(seed)
    batches_per_epoch = len(train) // recipe.batch_size
    order = torch.empty(0, dtype=torch.long)
    child.train()
    for step in range(recipe.steps):
        if step % batches_per_epoch == 0:  # a new epoch: a fresh permutation, the last partial batch dropped
            order = train[torch.randperm(len(train), generator=generator)]
        batch = order[(step % batches_per_epoch) * recipe.batch_size:][: recipe.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe.lr, step, recipe.steps, recipe.schedule)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(child(images[batch]), labels[batch]).backward()
        optimizer.step()
    return accuracy_of(child, images[test], labels[test])


def read_recipe(path: Path = RECIPE_FILE) -> DigitsRecipe:
    """The recipe the packaged table was generated with (nb201_digits.json)."""
    if not path.is_file():
        raise GroundTruthError(f"ground-truth recipe {path} is missing: reinstall vaenas (it ships as package data)")
    return DigitsRecipe.from_json(json.loads(path.read_text())["recipe"])


def read_table(path: Path = TABLE_FILE) -> tuple[Tensor, Tensor]:
    """(archs LongTensor[N, 6], accuracies float64 [N, 2]: seed 0, seed 1 (nan where not trained))."""
    if not path.is_file():
        raise GroundTruthError(f"ground-truth file {path} is missing: reinstall vaenas (it ships as package data)")
    columns = [f"op_e{s}{t}" for s, t in ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))]
    archs, accuracies = [], []
    try:
        with gzip.open(path, "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    archs.append([OPS.index(row[c]) for c in columns])
                    accuracies.append([float(row["acc_seed0"]), float(row["acc_seed1"] or "nan")])
                except (KeyError, TypeError, ValueError) as error:
                    raise GroundTruthError(f"{path}: bad row {dict(row)}: {error!r}") from error
    except (OSError, EOFError, zlib.error, csv.Error, UnicodeDecodeError) as error:
        raise GroundTruthError(f"{path} is corrupt or not a gzip'd CSV file: {error}") from error
    if not archs:
        raise GroundTruthError(f"{path}: no rows")
    return torch.tensor(archs, dtype=torch.long), torch.tensor(accuracies, dtype=torch.float64)


def nasbench201_digits(path: Path = TABLE_FILE) -> TabularBenchmark:
    """The packaged NB201 digits table: each cell's test accuracy (%) of its seed-0 training."""
    archs, accuracies = read_table(path)
    space = get_space("nasbench201")
    return TabularBenchmark("nasbench201-digits", space, archs, accuracies[:, 0],
                            key=lambda rows: space.index_of(rows).tolist())


def seed_pairs(path: Path = TABLE_FILE) -> tuple[Tensor, Tensor]:
    """(accuracy of seed 0, of seed 1) [M] of the cells trained twice (the noise floor)."""
    _, accuracies = read_table(path)
    both = ~torch.isnan(accuracies[:, 1])
    return accuracies[both, 0], accuracies[both, 1]


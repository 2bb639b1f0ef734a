"""From a DataConfig and a rank to the loaders a job reads: `build_search_data` (a one-shot search:
training stream, held-out, calibration and test sets, the same on every rank) and `build_training_data`
(a retraining: training stream, held-out and test sets split across the ranks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vaenas.data import cifar, dali, digits, folder
from vaenas.data.config import DataConfig, DataError
from vaenas.data.datasets import FileImages, TensorImages
from vaenas.data.loaders import EvalLoader, TrainLoader
from vaenas.data.splits import calibration_subset, holdout_split
from vaenas.data.transforms import transforms_for


@dataclass
class SearchData:
    """What a one-shot search reads. Every batch: (images float32 [B, 3, S, S] normalised, labels int64 [B]).

    train:       this rank's endless, sharded, augmented training stream, minus the held-out images
                 (`next(train)`; state_dict / load_state_dict for resume)
    holdout:     the held-out training images that score candidates, fixed order, same on every rank
    calibration: the fixed subset of the training images that recalibrates batch norm, fixed order,
                 deterministic transform, same on every rank
    test:        the dataset's own test split (CIFAR test batch, ImageNet val/), or None (digits, or
                 config.load_test false)
    num_classes, image_size (S), in_channels (3), classes (class names, label order)
    """

    train: TrainLoader
    holdout: EvalLoader
    calibration: EvalLoader
    test: EvalLoader | None
    num_classes: int
    image_size: int
    in_channels: int
    classes: tuple[str, ...]


@dataclass
class TrainingData:
    """What a retraining reads. Every batch: (images float32 [B, 3, S, S] normalised, labels int64 [B]).

    train:   this rank's endless, sharded, augmented training stream (as SearchData.train), minus the
             held-out images
    holdout: this rank's share of the held-out training images (rank r of W: every W-th image from
             the r-th), or None when data.holdout is 0
    test:    this rank's share of the dataset's own test split, or None (digits, or config.load_test false)
    The shares of the ranks are disjoint and cover their set: sums over the ranks (correct answers,
    losses, counts) are the whole set's.
    num_classes, image_size (S), in_channels (3), classes (class names, label order)
    """

    train: TrainLoader
    holdout: EvalLoader | None
    test: EvalLoader | None
    num_classes: int
    image_size: int
    in_channels: int
    classes: tuple[str, ...]


def _check_rank(rank: int, world_size: int) -> None:
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise DataError(f"world size must be an integer >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DataError(f"rank {rank!r} is not in 0..{world_size - 1} (world size {world_size})")


class _Loaders:
    """The loader classes of the configured backend, built with the config's batch, worker and cache settings."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self.pin = torch.cuda.is_available()  # page-locked batches copy to the GPU asynchronously
        self.train_class, self.eval_class = TrainLoader, EvalLoader
        if dali.resolve_backend(config.backend, config.name) == "dali":
            self.train_class, self.eval_class = dali.DaliTrainLoader, dali.DaliEvalLoader

    def train(self, dataset: Dataset, indices: np.ndarray, rank: int, world_size: int) -> TrainLoader:
        config = self.config
        return self.train_class(
            dataset, indices, batch_size=config.batch_size, rank=rank, world_size=world_size,
            seed=config.seed, workers=config.workers, pin_memory=self.pin,
        )

    def evaluation(self, dataset: Dataset, indices: np.ndarray) -> EvalLoader:
        config = self.config
        return self.eval_class(
            dataset, indices, batch_size=config.eval_batch_size, image_size=config.size,
            workers=config.workers, pin_memory=self.pin, cache_bytes=config.eval_cache_mb << 20,
        )


def build_search_data(config: DataConfig, rank: int = 0, world_size: int = 1) -> SearchData:
    """The search data of `config` for global rank `rank` of `world_size` (torchrun's RANK / WORLD_SIZE).

    DataError naming the path or key: missing or malformed data, a hold-out or calibration size the
    training split cannot give (a search needs held-out images: data.holdout 0 is refused), a batch
    size larger than the training split.
    """
    _check_rank(rank, world_size)
    if config.holdout == 0:
        raise DataError("data.holdout: 0 leaves no held-out images to score candidate architectures on; "
                        "a search needs some (a count or a fraction)")
    train_set, test_set, classes = _datasets(config)
    train_idx, holdout_idx = holdout_split(len(train_set), config.holdout, config.seed)
    calibration_idx = calibration_subset(train_idx, config.calibration_images, config.seed)
    loaders = _Loaders(config)
    return SearchData(
        train=loaders.train(train_set, train_idx, rank, world_size),
        holdout=loaders.evaluation(train_set, holdout_idx),
        calibration=loaders.evaluation(train_set, calibration_idx),
        test=None if test_set is None else loaders.evaluation(test_set, np.arange(len(test_set))),
        num_classes=len(classes),
        image_size=config.size,
        in_channels=3,
        classes=classes,
    )


def build_training_data(config: DataConfig, rank: int = 0, world_size: int = 1) -> TrainingData:
    """The retraining data of `config` for global rank `rank` of `world_size`: the training split
    minus data.holdout images (0: the whole split), and this rank's shares of the held-out and test
    sets (TrainingData). The held-out split is the one build_search_data makes with the same config.

    DataError naming the path or key, as build_search_data (data.calibration_images is not used).
    """
    _check_rank(rank, world_size)
    train_set, test_set, classes = _datasets(config)
    train_idx, holdout_idx = holdout_split(len(train_set), config.holdout, config.seed)
    loaders = _Loaders(config)
    holdout = loaders.evaluation(train_set, holdout_idx[rank::world_size]) if len(holdout_idx) else None
    test = None if test_set is None else loaders.evaluation(test_set, np.arange(len(test_set))[rank::world_size])
    return TrainingData(
        train=loaders.train(train_set, train_idx, rank, world_size),
        holdout=holdout,
        test=test,
        num_classes=len(classes),
        image_size=config.size,
        in_channels=3,
        classes=classes,
    )


def _datasets(config: DataConfig) -> tuple[Dataset, Dataset | None, tuple[str, ...]]:
    """(training-split dataset, test-split dataset or None, class names) of the configured dataset."""
    train_tf, eval_tf = transforms_for(config.name, config.size, config.cutout, config.color_jitter)
    root = Path(config.root).expanduser() if config.root else None
    if config.name == "digits":
        images, labels = digits.read_digits()
        classes = tuple(str(i) for i in range(digits.NUM_CLASSES))
        return TensorImages(images, labels, train_tf, eval_tf), None, classes
    if config.name in ("cifar10", "cifar100"):
        images, labels, classes = cifar.read_cifar(root, config.name, "train")
        test = None
        if config.load_test:
            test_images, test_labels, _ = cifar.read_cifar(root, config.name, "test")
            test = TensorImages(test_images, test_labels, train_tf, eval_tf)
        return TensorImages(images, labels, train_tf, eval_tf), test, classes
    train_files = folder.scan_split(root, "train")
    test = None
    if config.load_test:
        test = FileImages(folder.scan_split(root, "val", train_files.classes), train_tf, eval_tf, config.skip_corrupt)
    return FileImages(train_files, train_tf, eval_tf, config.skip_corrupt), test, train_files.classes


def count_classes(config: DataConfig) -> int:
    """The number of classes of the configured dataset without reading its images (an ImageNet-style
    tree: its train/ class folders); DataError naming the folder when it is missing."""
    if config.name == "digits":
        return digits.NUM_CLASSES
    if config.name in ("cifar10", "cifar100"):
        return 10 if config.name == "cifar10" else 100
    folder_path = Path(config.root).expanduser() / "train"
    if not folder_path.is_dir():
        raise DataError(f"{folder_path}: missing folder (expected train/<class>/<image> under data.root={config.root!r})")
    return sum(1 for entry in folder_path.iterdir() if entry.is_dir() and not entry.name.startswith("."))

"""`build_search_data`: the one entry point, from a DataConfig and a rank to the loaders a one-shot search uses."""

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


def build_search_data(config: DataConfig, rank: int = 0, world_size: int = 1) -> SearchData:
    """The search data of `config` for global rank `rank` of `world_size` (torchrun's RANK / WORLD_SIZE).

    DataError naming the path or key: missing or malformed data, a hold-out or calibration size the
    training split cannot give, a batch size larger than the training split.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise DataError(f"world size must be an integer >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DataError(f"rank {rank!r} is not in 0..{world_size - 1} (world size {world_size})")
    train_set, test_set, classes = _datasets(config)
    train_idx, holdout_idx = holdout_split(len(train_set), config.holdout, config.seed)
    calibration_idx = calibration_subset(train_idx, config.calibration_images, config.seed)
    pin = torch.cuda.is_available()  # page-locked batches copy to the GPU asynchronously
    train_loader, eval_loader = TrainLoader, EvalLoader
    if dali.resolve_backend(config.backend, config.name) == "dali":
        train_loader, eval_loader = dali.DaliTrainLoader, dali.DaliEvalLoader

    def evaluation(dataset: Dataset, indices: np.ndarray) -> EvalLoader:
        return eval_loader(
            dataset, indices, batch_size=config.eval_batch_size, image_size=config.size,
            workers=config.workers, pin_memory=pin, cache_bytes=config.eval_cache_mb << 20,
        )

    return SearchData(
        train=train_loader(
            train_set, train_idx, batch_size=config.batch_size, rank=rank, world_size=world_size,
            seed=config.seed, workers=config.workers, pin_memory=pin,
        ),
        holdout=evaluation(train_set, holdout_idx),
        calibration=evaluation(train_set, calibration_idx),
        test=None if test_set is None else evaluation(test_set, np.arange(len(test_set))),
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

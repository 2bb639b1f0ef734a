"""The data configuration of a search (`DataConfig`) and the error every data problem raises (`DataError`).

DataConfig checks its own values in `__post_init__`; checks that need the data (sizes of the splits)
happen in `build_search_data`. Each field carries a `help` text in its metadata, which config systems
above this package (vaenas.search) show in their option listings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: dataset names and the image size each is served at when `image_size` is left unset (digits: their
#: own 8 x 8, as the packaged digits ground truth was trained)
DATASETS = {"digits": 8, "cifar10": 32, "cifar100": 32, "imagenet": 224}
#: the largest image side served (a typo such as 100000 would otherwise allocate tens of GB)
MAX_IMAGE_SIZE = 1024
#: loader implementations: torchvision's DataLoader, NVIDIA DALI (optional package), or "auto" (DALI when
#: importable, else torchvision); vaenas.data.dali resolves "auto" and says how to install DALI
BACKENDS = ("torchvision", "dali", "auto")


class DataError(ValueError):
    """A bad data config value or bad data on disk; the message names the key or the path and the problem."""


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    """What to load and how to split and batch it for a one-shot search.

    Images come out float32 [B, 3, S, S] (S = image_size), normalised with the dataset's mean and std;
    labels int64 [B]. `batch_size` is per rank: a training step of W ranks sees W * batch_size images.
    """

    name: str = _option("digits", "dataset: digits (packaged, no download), cifar10, cifar100, imagenet")
    root: str | None = _option(
        None,
        "data folder: for cifar10/100 the folder holding cifar-10-batches-py / cifar-100-python (or that "
        "folder itself); for imagenet the folder with train/<class>/ and val/<class>/; unused for digits",
    )
    image_size: int | None = _option(
        None, f"side of the square images served, at most {MAX_IMAGE_SIZE} (null: the dataset's: digits 8, "
        "cifar10/100 32, imagenet 224)"
    )
    batch_size: int = _option(64, "training images per rank and step (the last partial batch of an epoch is dropped)")
    eval_batch_size: int = _option(256, "images per batch of the held-out, calibration and test loaders")
    holdout: int | float = _option(
        0.1,
        "training images held out to score candidate architectures: a count (int) or a fraction "
        "in (0, 1) (float) of the training split; chosen by the seed, never trained on (0: none, for a "
        "retraining on the whole split; a search needs some)",
    )
    calibration_images: int = _option(
        1024, "training images (not held out) used to recalibrate batch-norm statistics; fixed by the seed"
    )
    seed: int = _option(0, "seed of the held-out split, the calibration subset, the epoch order and augmentation")
    workers: int = _option(0, "DataLoader worker processes per rank (0: load in the main process)")
    backend: str = _option(
        "torchvision",
        "loader implementation: torchvision (DataLoader), dali (NVIDIA DALI: pip install nvidia-dali-cuda130; "
        "workers = its threads), auto (dali when installed, else torchvision)",
    )
    cutout: int = _option(
        0, "CIFAR training only: side of the Cutout square zeroed in each augmented image (0: none; 16 is the usual "
        "CIFAR-10 retraining recipe)"
    )
    color_jitter: float = _option(
        0.0, "ImageNet training only: brightness, contrast and saturation each scaled by a factor uniform in "
        "[1 - j, 1 + j] per image (0: none; 0.4 is the usual Inception-style value)"
    )
    skip_corrupt: bool = _option(
        False,
        "image files that cannot be decoded are skipped and counted (loader.skipped) instead of stopping the "
        "run; a training batch keeps its size (the bad image is replaced by another of its batch)",
    )
    load_test: bool = _option(
        True, "also load the dataset's own test split (CIFAR test batch, ImageNet val/) as .test; digits has none"
    )
    eval_cache_mb: int = _option(
        512, "held-out / calibration / test sets at most this large (float32) are kept in memory after one pass"
    )

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise DataError(f"data.name: unknown dataset {self.name!r}; choose one of {', '.join(DATASETS)}")
        if self.backend not in BACKENDS:
            raise DataError(f"data.backend: {self.backend!r} is not available; choose one of {', '.join(BACKENDS)}")
        if self.name != "digits" and not self.root:
            raise DataError(f"data.root: the {self.name} dataset needs the folder it is stored in")
        if not isinstance(self.skip_corrupt, bool):
            raise DataError(f"data.skip_corrupt: expected true or false, got {self.skip_corrupt!r}")
        for key in ("batch_size", "eval_batch_size", "calibration_images"):
            _positive_int(key, getattr(self, key))
        if self.image_size is not None:
            _positive_int("image_size", self.image_size)
            if self.image_size > MAX_IMAGE_SIZE:
                raise DataError(f"data.image_size: {self.image_size} is above the maximum {MAX_IMAGE_SIZE}")
        if self.cutout and not self.name.startswith("cifar"):
            raise DataError(f"data.cutout: Cutout is part of the CIFAR recipe only, not of {self.name}")
        _check_color_jitter(self.color_jitter, self.name)
        for key in ("seed", "workers", "eval_cache_mb", "cutout"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataError(f"data.{key}: expected an integer >= 0, got {value!r}")
        _check_holdout(self.holdout)

    @property
    def size(self) -> int:
        """The image side actually served: image_size, or the dataset's default."""
        return DATASETS[self.name] if self.image_size is None else self.image_size


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"data.{key}: expected an integer >= 1, got {value!r}")


def _check_color_jitter(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise DataError(f"data.color_jitter: expected a number in [0, 1), got {value!r}")  # 1 could black out an image
    if value and name != "imagenet":
        raise DataError(f"data.color_jitter: colour jitter is part of the ImageNet recipe only, not of {name}")


def _check_holdout(value: Any) -> None:
    # an int is a count and a float a fraction, so 1 and 1.0 mean different things: say which is allowed
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"data.holdout: expected a count (int >= 0) or a fraction (float in (0, 1)), got {value!r}")
    if isinstance(value, int) and value < 0:
        raise DataError(f"data.holdout: a count must be >= 0 (0: no held-out images), got {value}")
    if isinstance(value, float) and not 0.0 < value < 1.0:
        raise DataError(f"data.holdout: a fraction must lie in (0, 1), got {value}")

"""CIFAR-10 / CIFAR-100 read from the official "python version" pickle batches.

Layout (as unpacked from cifar-10-python.tar.gz / cifar-100-python.tar.gz):

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta (optional)
    cifar-100-python/train, test, meta (optional)

Each batch is a pickled dict (bytes keys in the original Python 2 files) with `data`: uint8
[n, 3072] (the 1024 red, then green, then blue values of a 32x32 image, row-major) and `labels`
(CIFAR-10) or `fine_labels` (CIFAR-100): n ints.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaenas.data.config import DataError


@dataclass(frozen=True)
class _Layout:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str
    num_classes: int
    meta: str
    names_key: str


_LAYOUTS = {
    "cifar10": _Layout(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels", 10,
        "batches.meta", "label_names",
    ),
    "cifar100": _Layout("cifar-100-python", ("train",), ("test",), "fine_labels", 100, "meta", "fine_label_names"),
}

# What a CIFAR batch may reference: numpy array reconstruction (under its numpy 1 and numpy 2 module
# names) and the bytes codec of protocol-2 pickles. Anything else is refused, because unpickling
# an arbitrary global can run arbitrary code and a data folder is not trusted input.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR batch holds only arrays)")
        return super().find_class(module, name)


def cifar_folder(root: str | Path, name: str) -> Path:
    """The batch folder of dataset `name` ('cifar10' | 'cifar100'): root/<folder>, or root itself if it is it."""
    layout, root = _LAYOUTS[name], Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: missing folder (data.root of the {name} dataset)")
    if (root / layout.folder).is_dir():
        return root / layout.folder
    if root.name == layout.folder or (root / layout.train[0]).exists():
        return root
    raise DataError(
        f"{root / layout.folder}: missing folder (expected the {name} python batches, "
        f"e.g. {layout.folder}/{layout.train[0]}, under data.root={str(root)!r})"
    )


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images uint8 [n, 3, 32, 32], labels int64 [n]); DataError naming the path if malformed."""
    if not path.is_file():
        raise DataError(f"{path}: missing CIFAR batch file")
    try:
        with open(path, "rb") as file:
            # bytes keys: the original files are Python 2 pickles; latin1 would turn them into str instead
            batch = _ArrayUnpickler(file, encoding="bytes").load()
    except Exception as error:  # any failure of a foreign file is "not a CIFAR batch"
        raise DataError(f"{path}: not a CIFAR python batch (unpickling failed: {error})") from error
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR python batch (a {type(batch).__name__}, expected a dict)")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"{path}: malformed CIFAR batch: no {key!r} entry (keys: {sorted(map(str, batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(
            f"{path}: malformed CIFAR batch: 'data' must be uint8 [n, 3072], got {type(data).__name__} "
            f"{getattr(data, 'dtype', '')} {shape}"
        )
    labels = np.asarray(batch[label_key])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: malformed CIFAR batch: {label_key!r} must be {data.shape[0]} integers "
            f"(one per image), got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{path}: malformed CIFAR batch: labels outside 0..{num_classes - 1} "
            f"(min {labels.min()}, max {labels.max()})"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar(root: str | Path, name: str, split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Dataset `name` ('cifar10' | 'cifar100'), `split` ('train' | 'test') -> (images, labels, class names).

    images: uint8 [N, 3, 32, 32] (N = 50000 / 10000 for the official files); labels: int64 [N].
    Class names come from the meta file when present, else "0", "1", ...
    """
    layout = _LAYOUTS[name]
    folder = cifar_folder(root, name)
    parts = [read_batch(folder / file, layout.label_key, layout.num_classes) for file in getattr(layout, split)]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return images, labels, _class_names(folder / layout.meta, layout)


def _class_names(path: Path, layout: _Layout) -> tuple[str, ...]:
    fallback = tuple(str(i) for i in range(layout.num_classes))
    if not path.is_file():
        return fallback
    try:
        with open(path, "rb") as file:
            meta = _ArrayUnpickler(file, encoding="bytes").load()
        names = meta.get(layout.names_key.encode()) or meta.get(layout.names_key)
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except Exception:  # the names are cosmetic: a damaged meta file must not stop a run
        return fallback
    return names if len(names) == layout.num_classes else fallback

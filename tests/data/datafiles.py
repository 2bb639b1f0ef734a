"""Small data sets in their real on-disk formats, written by the tests into their tmp_path (nothing outside the repository is read)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_PER_BATCH = {"cifar10": 40, "cifar100": 200}  # images per training batch file; 200 train images either way
CIFAR_TEST = 30


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, label_key: str, extra: dict | None = None) -> None:
    """A batch as the official files hold it: bytes keys, data uint8 [n, 3072] (RGB planes), labels a list."""
    batch = {b"data": images.reshape(len(images), 3072), label_key.encode(): labels.tolist(), **(extra or {})}
    with open(path, "wb") as file:
        pickle.dump(batch, file, protocol=2)


def write_cifar(root: Path, name: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random CIFAR-10 (5 x 40 train, 30 test) or CIFAR-100 (200 train, 30 test) batch files under root.

    -> {"train": (images uint8 [200, 3, 32, 32], labels), "test": (...)} as written, in file order.
    """
    rng = np.random.default_rng(seed)
    classes, folder, files, test_file, key = {
        "cifar10": (10, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels"),
        "cifar100": (100, "cifar-100-python", ["train"], "test", "fine_labels"),
    }[name]
    (root / folder).mkdir(parents=True)
    written = {}
    for split, names, size in (("train", files, CIFAR_PER_BATCH[name]), ("test", [test_file], CIFAR_TEST)):
        parts = []
        for file in names:
            images = rng.integers(0, 256, (size, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, classes, size)
            extra = {b"coarse_labels": (labels // 5).tolist()} if name == "cifar100" else {}
            write_batch(root / folder / file, images, labels, key, extra)
            parts.append((images, labels))
        written[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return written


def write_image_tree(root: Path, classes=("ant", "bee", "cat"), per_class: int = 4, seed: int = 0) -> Path:
    """root/train/<class>/*.JPEG and root/val/<class>/*.JPEG: real JPEGs of gradients plus noise, varied sizes."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", 2)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = int(rng.integers(20, 40)), int(rng.integers(20, 40))
                gradient = np.linspace(0, 255, width)[None, :, None] * np.array([c == 0, c == 1, c == 2])
                noise = rng.integers(0, 60, (height, width, 3))
                pixels = np.clip(gradient + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.JPEG", quality=90)
    return root

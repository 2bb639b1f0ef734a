"""scikit-learn's bundled handwritten digits, packaged with vaenas (digits.csv.gz; source and licence in NOTICE).

1797 grayscale 8x8 images of the digits 0-9: the test set of the UCI "Optical Recognition of
Handwritten Digits" data, as scikit-learn ships it. A demo data set that needs no download.
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np
import torch

from vaenas.data.config import DataError

NUM_IMAGES, NUM_CLASSES = 1797, 10


def read_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """-> (images uint8 [1797, 1, 8, 8] with values 0..255, labels int64 [1797] in 0..9).

    The file's pixel values are counts 0..16 (on-pixels of a 4x4 block); they are scaled to 0..255
    so that every dataset reaches the transforms as ordinary uint8 images.
    """
    source = resources.files("vaenas.data") / "digits.csv.gz"
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if table.shape != (NUM_IMAGES, 65):  # a damaged install, not a user error, but say which file
        raise DataError(f"{source}: expected {NUM_IMAGES} rows of 64 pixels + 1 label, got shape {table.shape}")
    pixels = np.rint(table[:, :64] * (255 / 16)).astype(np.uint8)
    return torch.from_numpy(pixels.reshape(-1, 1, 8, 8)), torch.from_numpy(table[:, 64])

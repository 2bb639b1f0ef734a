"""Which training images the supernet trains on, which are held out to score candidates, which recalibrate BN.

SPOS protocol: candidates are scored on images held out of the training set (never trained on),
chosen by the seed; batch-norm statistics are recalibrated on a fixed subset of the images the
supernet does train on. All index arrays are int64 numpy arrays of positions in the training split.
"""

from __future__ import annotations

import numpy as np

from vaenas.data import seeding
from vaenas.data.config import DataError


def holdout_count(num_images: int, holdout: int | float) -> int:
    """Images to hold out of `num_images`: `holdout` itself (int) or round(holdout * num_images) (float);
    0 (int) holds none out."""
    count = holdout if isinstance(holdout, int) else round(holdout * num_images)
    if holdout == 0 and isinstance(holdout, int):
        return 0
    if not 1 <= count < num_images:
        raise DataError(
            f"data.holdout: {holdout!r} holds out {count} of the {num_images} training images; "
            f"it must leave at least one image on each side"
        )
    return count


def holdout_split(num_images: int, holdout: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held_out) positions of a seeded random split of `num_images` images.

    train: sorted; held_out: in the seeded random order (the order evaluation reads them in).
    Depends on (num_images, holdout, seed) only.
    """
    count = holdout_count(num_images, holdout)
    order = seeding.generator(seed, seeding.HOLDOUT).permutation(num_images)
    return np.sort(order[count:]), order[:count]


def calibration_subset(train: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` positions drawn without replacement from `train`, in seeded random order.

    Random order rather than sorted: in a class-folder tree a sorted subset would put a single
    class in each batch, which skews anything computed per batch.
    """
    if count > len(train):
        raise DataError(
            f"data.calibration_images: {count} exceeds the {len(train)} training images left after the hold-out"
        )
    return train[seeding.generator(seed, seeding.CALIBRATION).permutation(len(train))[:count]]

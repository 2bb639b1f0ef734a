"""Every random choice of vaenas.data derived from the config seed, so that it is a pure function of its inputs.

Nothing here reads a global RNG: results do not depend on worker count, rank count, call order or
what ran before (the property that makes held-out splits stable and resumed runs bit-identical).
Each use draws from its own stream, so changing, say, the calibration size leaves the epoch order alone.
"""

from __future__ import annotations

import numpy as np

# stream ids: one per kind of random choice
HOLDOUT, CALIBRATION, SHUFFLE, AUGMENT = 1, 2, 3, 4

_MASK64 = (1 << 64) - 1


def generator(seed: int, stream: int, *more: int) -> np.random.Generator:
    """A numpy Generator for (seed, stream, *more); SeedSequence mixes the words, so nearby seeds are unrelated."""
    return np.random.default_rng([seed, stream, *more])


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of dataset image `index` in `epoch`.

    A scalar hash rather than a numpy draw because it runs once per image in the loader's hot path
    (about a microsecond); it depends on the image, not on its position, rank or batch.
    """
    x = _splitmix64(seed ^ (AUGMENT << 56))
    x = _splitmix64(x ^ epoch)
    return _splitmix64(x ^ index)


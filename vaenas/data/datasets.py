"""Map-style datasets that turn a sample key into (image float32 [3, S, S], label int).

A key is `(index, aug_seed)`: the image's index in the source, and the seed of its augmentation
(None: evaluation, no randomness). The loaders' samplers compute the seeds, so the datasets hold no
RNG state and give the same sample in any process (DataLoader workers included).
"""

from __future__ import annotations

import random

import torch
from torch.utils.data import Dataset

from vaenas.data.config import DataError
from vaenas.data.folder import ImageFiles, load_image
from vaenas.data.transforms import Transform

Key = tuple[int, "int | None"]


class _Keyed(Dataset):
    def __init__(self, train: Transform, evaluation: Transform) -> None:
        self.train, self.evaluation = train, evaluation

    def image(self, index: int) -> torch.Tensor:
        """The stored image, uint8 [C, H, W]."""
        raise NotImplementedError

    def label(self, index: int) -> int:
        raise NotImplementedError

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int]:
        index, aug_seed = key
        image = self.image(index)
        if aug_seed is None:
            return self.evaluation(image), self.label(index)
        return self.train(image, random.Random(aug_seed)), self.label(index)


class TensorImages(_Keyed):
    """Images held in memory: uint8 [N, C, H, W] with labels int64 [N] (CIFAR, digits)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, train: Transform, evaluation: Transform) -> None:
        super().__init__(train, evaluation)
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> torch.Tensor:
        return self.images[index]

    def label(self, index: int) -> int:
        return int(self.labels[index])


class FileImages(_Keyed):
    """Images decoded from files on every access (class-folder trees).

    skip_corrupt: a file that cannot be decoded gives (None, its path) instead of raising DataError
    (the loaders' collate leaves it out or replaces it).
    """

    def __init__(self, files: ImageFiles, train: Transform, evaluation: Transform, skip_corrupt: bool = False) -> None:
        super().__init__(train, evaluation)
        self.files, self.skip_corrupt = files, skip_corrupt

    def __getitem__(self, key: Key) -> tuple[torch.Tensor | None, int | str]:
        try:
            return super().__getitem__(key)
        except DataError:
            if not self.skip_corrupt:
                raise
            return None, str(self.files.path(key[0]))

    def __len__(self) -> int:
        return len(self.files.labels)

    def image(self, index: int) -> torch.Tensor:
        return load_image(self.files.path(index))

    def label(self, index: int) -> int:
        return int(self.files.labels[index])

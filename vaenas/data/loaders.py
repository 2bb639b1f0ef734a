"""Batch iterators over a dataset's images: the sharded, resumable training stream and fixed evaluation sets.

Batches are (images float32 [B, 3, S, S], labels int64 [B]) from torch.utils.data.DataLoader.

Training (`TrainLoader`), per epoch e:
  - the training positions are permuted by (seed, e); global batch b is the slice
    [b * W * B, (b + 1) * W * B) of that order (W ranks, B images per rank), and rank r takes its
    r-th B images. The ranks' batches are disjoint and together cover the epoch; the union of
    batch b over the ranks is the same for any W with the same W * B.
  - last partial batch: dropped. The len % (W * B) images left at the end of an epoch's order are
    not seen in that epoch; the next epoch's permutation differs, so none is left out for good.
  - augmentation of an image is seeded by (seed, e, image index), not by the process's RNG.
So batch (e, b) of rank r is a pure function of (data, seed, W * B, r, e, b), and the position
(e, b) is all a resumed run needs (`state_dict`).

Nothing here draws from the global random streams. Every `iter(DataLoader)` draws a base seed
(the workers' torch seeds) from the loader's `generator`, or from the global torch stream when it
has none; a resumed run starts an iterator at a step where a straight run does not, so a draw from
the global stream would shift everything else that reads it (dropout) and break the bit-for-bit
resume. Each DataLoader therefore has a generator of its own (`_own_generator`); the batches do not
depend on it (augmentation is seeded per image).

Evaluation (`EvalLoader`): the given images in the given order, deterministic transform, every
pass the same tensors, not sharded (the search splits architectures, not images, across ranks,
so each rank scores with all the images).

Corrupt files (DataConfig.skip_corrupt): the dataset gives (None, path) for an image it cannot decode;
`collate` leaves it out of an evaluation batch and, in training, puts another image of the same batch
in its place (batches keep their size). The inner loaders yield (images, labels, skipped paths); the
loaders collect the paths in `skipped`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vaenas.data import seeding
from vaenas.data.config import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def substitute(items: list, is_bad: Callable[[Any], bool], fill: bool) -> list:
    """`items` without the bad ones (fill=False), or with each bad one replaced by the next good one, cyclically.

    DataError if fill is asked for and every item is bad (a training batch cannot keep its size).
    """
    good = [item for item in items if not is_bad(item)]
    if not fill or len(good) == len(items):
        return good
    if not good:
        raise DataError(f"every image of a training batch is corrupt: {items}")
    replacements = iter(good * len(items))
    return [next(replacements) if is_bad(item) else item for item in items]


def from_worker(error: DataError) -> DataError:
    """`error` with its own one-line message: a DataError raised in a DataLoader worker reaches the
    main process with the worker's whole traceback as its message ("Caught DataError in DataLoader
    worker process 0. Original Traceback ..."), whose last line is the original."""
    text = str(error)
    if "Original Traceback" not in text:
        return error
    last = text.rstrip().splitlines()[-1]
    _, found, message = last.partition("DataError: ")
    return DataError(message if found else last)


def _own_generator(seed: int) -> torch.Generator:
    """The DataLoader's generator: its base-seed draws stay off the global torch stream (module docstring)."""
    return torch.Generator().manual_seed(seed & ((1 << 63) - 1))


def collate(samples: list[tuple[Any, Any]], fill: bool) -> tuple[torch.Tensor | None, torch.Tensor | None, tuple]:
    """DataLoader collate: [(image float32 [3, S, S] or None, label or path)] -> (images, labels, skipped paths).

    images / labels are None if every sample of an evaluation batch was skipped.
    """
    skipped = tuple(path for image, path in samples if image is None)
    kept = substitute(samples, lambda sample: sample[0] is None, fill)
    if not kept:
        return None, None, skipped
    return torch.stack([image for image, _ in kept]), torch.tensor([label for _, label in kept]), skipped


class _EpochBatches:
    """Batch sampler of one rank: from batch `start` of epoch `epoch` to the end of that epoch.

    Yields lists of dataset keys (index, aug_seed). TrainLoader sets `epoch` and `start` before each
    `iter(DataLoader)`; the DataLoader calls `iter()` on this sampler in the main process.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.indices, self.batch_size, self.rank, self.world_size, self.seed = (
            indices, batch_size, rank, world_size, seed,
        )
        self.per_epoch = len(indices) // (batch_size * world_size)
        self.epoch, self.start = 0, 0
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, permuted indices), the last one used

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            permutation = seeding.generator(self.seed, seeding.SHUFFLE, epoch).permutation(len(self.indices))
            self._order = (epoch, self.indices[permutation])
        return self._order[1]

    def indices_of(self, epoch: int, number: int) -> np.ndarray:
        """Dataset indices of this rank's batch `number` of `epoch`."""
        first = (number * self.world_size + self.rank) * self.batch_size
        return self.order(epoch)[first : first + self.batch_size]

    def batch(self, epoch: int, number: int) -> list[tuple[int, int]]:
        """Keys (index, aug_seed) of this rank's batch `number` of `epoch`."""
        return [(i, seeding.sample_seed(self.seed, epoch, i)) for i in self.indices_of(epoch, number).tolist()]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch  # fixed now: the DataLoader may pull ahead while the caller moves on
        return (self.batch(epoch, b) for b in range(self.start, self.per_epoch))

    def __len__(self) -> int:
        return self.per_epoch - self.start


class TrainLoader:
    """Endless stream of this rank's training batches, epoch after epoch, resumable at any batch.

    `next(loader)` -> (images float32 [B, 3, S, S], labels int64 [B]). `epoch` and `batch` (the next
    batch's number within the epoch) are the position; `batches_per_epoch` = N // (W * B), N =
    len(indices), the dataset indices of the training split (held-out images excluded).
    `state_dict()` / `load_state_dict()` carry the position: a loader restored from the state of
    another yields exactly the batches the other would have yielded next, bit for bit.
    """

    def __init__(
        self, dataset: Dataset, indices: np.ndarray, *, batch_size: int, rank: int, world_size: int,
        seed: int, workers: int = 0, pin_memory: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in 0..{world_size - 1} (world size {world_size})")
        self._sampler = _EpochBatches(indices, batch_size, rank, world_size, seed)
        if self._sampler.per_epoch == 0:
            raise DataError(
                f"data.batch_size: {world_size} rank(s) x {batch_size} images exceed the {len(indices)} "
                f"training images left after the hold-out; not one full batch per epoch"
            )
        self._loader = self._make_loader(dataset, workers, pin_memory)
        self._fingerprint = {
            "seed": seed,
            "global_batch_size": batch_size * world_size,
            "num_images": len(indices),
            "indices_crc32": zlib.crc32(np.ascontiguousarray(indices, dtype=np.int64).tobytes()),
        }
        self.indices = indices
        self.batches_per_epoch = self._sampler.per_epoch
        self.epoch, self.batch = 0, 0
        self._iterator: Iterator[tuple[torch.Tensor, torch.Tensor, tuple]] | None = None
        self.skipped: set[str] = set()  #: paths of the corrupt images skipped so far (skip_corrupt)

    def _make_loader(self, dataset: Dataset, workers: int, pin_memory: bool) -> Any:
        """What `iter()` turns into the batches of `self._sampler`'s current (epoch, start); the DALI backend overrides it."""
        # persistent workers: the stream restarts once per epoch, and forking workers each time would stall it
        return DataLoader(
            dataset, batch_sampler=self._sampler, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=pin_memory, collate_fn=partial(collate, fill=True),
            generator=_own_generator(self._sampler.seed),
        )

    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> Batch:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch, self._iterator = self.epoch + 1, 0, None
        if self._iterator is None:
            self._sampler.epoch, self._sampler.start = self.epoch, self.batch
            self._iterator = iter(self._loader)
        try:
            images, labels, skipped = next(self._iterator)
        except DataError as error:
            raise from_worker(error) from None
        self.skipped.update(skipped)
        self.batch += 1
        return images, labels

    def batch_indices(self, epoch: int, number: int) -> np.ndarray:
        """Which images (dataset indices, int64 [B]) this rank's batch `number` of `epoch` holds."""
        return self._sampler.indices_of(epoch, number)

    def state_dict(self) -> dict[str, int]:
        """The position (epoch, batch) and what it is only valid with: plain ints (torch.load(weights_only=True))."""
        return {"epoch": self.epoch, "batch": self.batch, **self._fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`'s position; DataError if it was saved with other data, seed or global batch size.

        The world size may differ if W * B is the same: the global batches are then the same.
        """
        missing = sorted({"epoch", "batch", *self._fingerprint} - set(state))
        if missing:
            raise DataError(f"data loader state: missing entries {missing}")
        for key, value in self._fingerprint.items():
            if state[key] != value:
                raise DataError(f"data loader state: saved with {key}={state[key]}, this run has {key}={value}")
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or not 0 <= batch <= self.batches_per_epoch:
            raise DataError(f"data loader state: position epoch={epoch} batch={batch} is out of range")
        self.epoch, self.batch, self._iterator = epoch, batch, None


class EvalLoader:
    """The images at `indices`, in that order, in batches of `batch_size` (the last one may be smaller).

    Iterating yields (images float32 [b, 3, S, S], labels int64 [b]); every pass yields the same
    values, on every rank. If the whole set takes at most `cache_bytes`, the first complete pass
    keeps it in memory and later passes serve copies of it without decoding again.
    Worker processes, if any, are started per pass: evaluation passes are rare next to training
    steps, and idle persistent workers of three evaluation sets would hold memory for nothing.
    """

    def __init__(
        self, dataset: Dataset, indices: np.ndarray, *, batch_size: int, image_size: int,
        workers: int = 0, pin_memory: bool = False, cache_bytes: int = 0,
    ) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        keys = [(int(i), None) for i in self.indices]
        batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
        self._loader = self._make_loader(dataset, batches, workers, pin_memory)
        self._cacheable = len(keys) * 3 * image_size * image_size * 4 <= cache_bytes
        self._cache: list[Batch] | None = None
        self.skipped: set[str] = set()  #: paths of the corrupt images left out (skip_corrupt)

    def _make_loader(self, dataset: Dataset, batches: list, workers: int, pin_memory: bool) -> Any:
        """An iterable over the batches of `batches` (lists of keys) with len(); the DALI backend overrides it."""
        return DataLoader(
            dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
            collate_fn=partial(collate, fill=False), generator=_own_generator(0),
        )

    @property
    def num_images(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        """Number of batches of a pass."""
        return len(self._loader)

    def __iter__(self) -> Iterator[Batch]:
        if self._cache is not None:
            # copies: a caller that edits a batch in place must not change the next pass
            return ((images.clone(), labels.clone()) for images, labels in self._cache)
        return self._pass()

    def _pass(self) -> Iterator[Batch]:
        kept = []
        batches = iter(self._loader)
        while True:
            try:
                images, labels, skipped = next(batches)
            except StopIteration:
                break
            except DataError as error:
                raise from_worker(error) from None
            self.skipped.update(skipped)
            if images is None:
                continue
            if self._cacheable:
                kept.append((images.clone(), labels.clone()))
            yield images, labels
        if self._cacheable:
            self._cache = kept

    def tensors(self) -> Batch:
        """The whole set at once: (images float32 [N, 3, S, S], labels int64 [N])."""
        parts = list(self)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

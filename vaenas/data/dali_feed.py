"""What the DALI pipelines are fed per batch: encoded bytes or pixels, and every per-image parameter.

The DALI graphs (vaenas.data.dali) draw no random numbers themselves: each image's crop box and flip
come from here, drawn with the torchvision path's own code (transforms.ImageNetTrain.crop_box,
CifarTrain's draws) from random.Random(aug_seed), aug_seed = seeding.sample_seed(seed, epoch, index).
So a DALI batch holds the same crops as the torchvision batch at the same position, and a resumed
stream the same augmentation as an unbroken one (DALI's own RNG restarts with a rebuilt pipeline).

A feeder turns a list of keys (index, aug_seed or None) into `Feed`: named numpy inputs of the
graph plus the labels and the keys actually used. Files that cannot be read as images either raise
DataError naming the file or, with skip_corrupt, are recorded in `skipped` and left out (evaluation)
or replaced by another image of the same batch (training, which keeps its batch size), as the
torchvision path's `loaders.collate` does.
No DALI import here: this module is plain numpy and PIL.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vaenas.data.config import DataError
from vaenas.data.datasets import FileImages, Key, TensorImages
from vaenas.data.loaders import substitute
from vaenas.data.transforms import CifarTrain, ImageNetEval, ImageNetTrain, PlainTransform, Transform


@dataclass
class Feed:
    """One batch of graph inputs: inputs[name] is a list of B numpy arrays; labels int64 [B]; keys used."""

    inputs: dict[str, list[np.ndarray]]
    labels: np.ndarray
    keys: list[Key]


class Feeder:
    """Base: bad-file bookkeeping and the batch policy of skipped images."""

    #: names of the graph's external inputs, in the order the graph declares them
    inputs: tuple[str, ...] = ()

    def __init__(self, dataset, train: bool) -> None:
        self.dataset, self.train = dataset, train
        self.skip_corrupt = getattr(dataset, "skip_corrupt", False)  # FileImages' flag (DataConfig.skip_corrupt)
        self.transform: Transform = dataset.train if train else dataset.evaluation
        self.skipped: set[str] = set()  # names of the files skipped so far (paths)
        self._bad: set[int] = set()  # their dataset indices

    def name(self, index: int) -> str:
        """How an error names image `index` (its path)."""
        return f"image {index}"

    def mark_bad(self, index: int, reason: str) -> None:
        """Image `index` cannot be decoded: DataError naming it, or (skip_corrupt) remember and count it."""
        if not self.skip_corrupt:
            raise DataError(f"{self.name(index)}: cannot decode image ({reason})")
        self._bad.add(index)
        self.skipped.add(self.name(index))

    def usable(self, keys: list[Key]) -> list[Key]:
        """`keys` without the known bad images; in training each is replaced by the next good key of its batch."""
        return substitute(keys, lambda key: key[0] in self._bad, fill=self.train)

    def feed(self, keys: list[Key]) -> Feed:
        """The graph inputs of the images at `keys`, bad images (found while reading) handled as above."""
        while True:
            keys = self.usable(keys)
            inputs: dict[str, list[np.ndarray]] = {name: [] for name in self.inputs}
            try:
                for index, aug_seed in keys:
                    for name, value in zip(self.inputs, self.sample(index, aug_seed)):
                        inputs[name].append(value)
            except _BadImage as bad:
                self.mark_bad(bad.index, bad.reason)  # raises unless skipping; then retry without it
                continue
            labels = np.array([self.dataset.label(i) for i, _ in keys], dtype=np.int64)
            return Feed(inputs, labels, keys)

    def sample(self, index: int, aug_seed: int | None) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def check(self, keys: list[Key]) -> list[int]:
        """Indices among `keys` that a full decode (PIL) refuses: the culprits of a failed DALI batch."""
        return []


class _BadImage(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index, self.reason = index, reason


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, or None if `data` is not a well-formed JPEG header.

    A marker walk of a few bytes per segment: about 2 us, against 160 us for PIL's Image.open, which
    was half the Python time per image of the DALI feed.
    """
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        # SOF0..SOF15 carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = int.from_bytes(data[at + 5 : at + 7], "big"), int.from_bytes(data[at + 7 : at + 9], "big")
            return (height, width) if height and width else None
        at += 2 + length
    return None


def _pil_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:  # any other format PIL reads (PNG, ...): header only
        width, height = image.size
    return height, width


def _vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


class FileFeeder(Feeder):
    """Class-folder images (FileImages): the encoded file bytes and the crop of the ImageNet transforms.

    training:   encoded uint8 [n], anchor (x, y), shape (w, h) of the random resized crop box, mirror int32,
                and with colour jitter brightness, contrast, saturation float32 scalars
    evaluation: encoded, size (h', w') after resizing the short side, anchor (x, y) of the centre crop
    Sizes come from the file header (PIL reads only the header, about 30 us), not from a decode.
    """

    def __init__(self, dataset: FileImages, train: bool) -> None:
        super().__init__(dataset, train)
        assert isinstance(self.transform, ImageNetTrain if train else ImageNetEval), type(self.transform)
        self.inputs = ("encoded", "anchor", "shape", "mirror") if train else ("encoded", "size", "anchor")
        if train and self.transform.color_jitter:
            self.inputs += ("brightness", "contrast", "saturation")
        self.size = self.transform.size

    def name(self, index: int) -> str:
        return str(self.dataset.files.path(index))

    def sample(self, index: int, aug_seed: int | None) -> tuple[np.ndarray, ...]:
        path = self.dataset.files.path(index)
        try:
            data = path.read_bytes()
            height, width = jpeg_size(data) or _pil_size(data)
        except (OSError, SyntaxError, ValueError) as error:  # PIL raises all three on bad headers
            raise _BadImage(index, f"not a readable image: {error}") from error
        encoded = np.frombuffer(data, dtype=np.uint8)
        if self.train:
            rng = random.Random(aug_seed)
            top, left, h, w = self.transform.crop_box(height, width, rng)
            mirror = rng.random() < 0.5  # drawn after the box, as ImageNetTrain.geometry does
            out = (encoded, _vec(left, top), _vec(w, h), np.array(mirror, dtype=np.int32))
            factors = self.transform.jitter_factors(rng)  # then the jitter, same order as geometry
            return out if factors is None else out + tuple(np.array(f, dtype=np.float32) for f in factors)
        # torchvision's resize([short]): the short side to `short`, the long one truncated (int), then
        # center_crop's int(round(...)) offsets: same pixel grid as the torchvision path
        short = round(self.size * 256 / 224)
        if height <= width:
            new_h, new_w = short, int(short * width / height)
        else:
            new_h, new_w = int(short * height / width), short
        top, left = int(round((new_h - self.size) / 2.0)), int(round((new_w - self.size) / 2.0))
        return encoded, _vec(new_h, new_w), _vec(left, top)

    def check(self, keys: list[Key]) -> list[int]:
        bad = []
        for index, _ in keys:
            try:
                with Image.open(self.dataset.files.path(index)) as image:
                    image.load()
            except (OSError, SyntaxError, ValueError):
                bad.append(index)
        return bad


class ArrayFeeder(Feeder):
    """Images in memory (TensorImages: CIFAR, digits) as uint8 [H, W, C] arrays, and the CIFAR crop.

    training (CIFAR): pixels, anchor (x, y) = (left - 4, top - 4) of the crop in the unpadded image
    (the graph pads with zeros), mirror int32, and with Cutout erase_anchor (y, x) and erase_shape (h, w)
    of the zeroed square in the S x S output; evaluation and digits: pixels only.
    """

    def __init__(self, dataset: TensorImages, train: bool) -> None:
        super().__init__(dataset, train)
        assert isinstance(self.transform, (CifarTrain, PlainTransform)), type(self.transform)
        self.crops = isinstance(self.transform, CifarTrain)
        self.inputs = ("pixels", "anchor", "mirror") if self.crops else ("pixels",)
        if self.crops and self.transform.cutout:
            self.inputs += ("erase_anchor", "erase_shape")
        # HWC once for all: DALI's image operators want channels last
        self.hwc = np.ascontiguousarray(dataset.images.numpy().transpose(0, 2, 3, 1))

    def sample(self, index: int, aug_seed: int | None) -> tuple[np.ndarray, ...]:
        if not self.crops:
            return (self.hwc[index],)
        rng, pad = random.Random(aug_seed), self.transform.padding
        top, left = rng.randint(0, 2 * pad), rng.randint(0, 2 * pad)  # CifarTrain.geometry's draws, in order
        mirror = rng.random() < 0.5
        out = (self.hwc[index], _vec(left - pad, top - pad), np.array(mirror, dtype=np.int32))
        if self.transform.cutout:
            y0, x0, y1, x1 = self.transform.cutout_box(rng)
            out += (_vec(y0, x0), _vec(y1 - y0, x1 - x0))
        return out


def feeder_for(dataset, train: bool) -> Feeder:
    """The feeder of a vaenas.data dataset (FileImages or TensorImages)."""
    if isinstance(dataset, FileImages):
        return FileFeeder(dataset, train)
    return ArrayFeeder(dataset, train)

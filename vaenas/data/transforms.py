"""Image transforms: uint8 [C, H, W] (C = 1 or 3) -> float32 [3, S, S], normalised.

Training transforms draw every random choice from the `random.Random` they are given (seeded per
image and epoch by the loader, see seeding.sample_seed) and never from a global RNG, so a sample's
augmentation is fixed by (seed, epoch, image): the same with any number of workers or ranks, and
after a resume. Evaluation transforms are deterministic and ignore the RNG.

    cifar     train: zero-pad 4, random 32x32 crop, horizontal flip, optional Cutout    eval: as is
    imagenet  train: random resized crop (scale 0.08-1, ratio 3/4-4/3), flip, optional colour jitter
              eval:  resize the short side to S*256/224, centre crop S
    digits    train = eval: resize (bilinear) to S
Every path then resizes to S if the result is not S x S (CIFAR served at another size), repeats a
single channel three times, scales to [0, 1] and normalises with the dataset's mean and std.
"""

from __future__ import annotations

import math
import random

import torch
import torchvision.transforms.v2.functional as F

#: per-channel (mean, std) of [0, 1] pixels; digits: measured on the packaged file upsampled to 32 px
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "digits": ((0.3055,) * 3, (0.3235,) * 3),
}


class Transform:
    """Base: finishing steps shared by every transform (size, channels, scaling, normalisation)."""

    def __init__(self, dataset: str, size: int) -> None:
        self.size = size
        self.mean, self.std = NORMALIZATION[dataset]

    def __call__(self, image: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
        """image uint8 [C, H, W] -> float32 [3, size, size]; `rng` drives the random choices of training."""
        return self.finish(self.geometry(image, rng))

    def geometry(self, image: torch.Tensor, rng: random.Random | None) -> torch.Tensor:
        return image

    def finish(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != (self.size, self.size):
            image = F.resize(image, [self.size, self.size], antialias=True)
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        image = F.to_dtype(image, torch.float32, scale=True)
        return F.normalize(image, self.mean, self.std)


class PlainTransform(Transform):
    """Resize to S (if needed) and normalise: CIFAR evaluation, digits training and evaluation."""


class CifarTrain(Transform):
    """Zero-pad 4 on every side, random crop back to the input size, horizontal flip with p = 1/2, then
    Cutout (DeVries & Taylor 2017) if `cutout` > 0: a `cutout` x `cutout` square of the normalised
    S x S image, centred on a uniformly drawn pixel and clipped to the image, set to 0."""

    padding = 4

    def __init__(self, dataset: str, size: int, cutout: int = 0) -> None:
        super().__init__(dataset, size)
        self.cutout = cutout

    def __call__(self, image: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
        image = super().__call__(image, rng)
        if self.cutout:
            top, left, bottom, right = self.cutout_box(rng)
            image[:, top:bottom, left:right] = 0
        return image

    def cutout_box(self, rng: random.Random) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the Cutout square in the S x S output, drawn after the crop and flip."""
        y, x = rng.randrange(self.size), rng.randrange(self.size)
        half = self.cutout // 2
        return max(0, y - half), max(0, x - half), min(self.size, y - half + self.cutout), min(self.size, x - half + self.cutout)

    def geometry(self, image: torch.Tensor, rng: random.Random | None) -> torch.Tensor:
        assert rng is not None, "training transforms need the per-image RNG"
        height, width = image.shape[-2:]
        top, left = rng.randint(0, 2 * self.padding), rng.randint(0, 2 * self.padding)
        image = F.crop(F.pad(image, [self.padding]), top, left, height, width)
        return F.horizontal_flip(image) if rng.random() < 0.5 else image


class ImageNetTrain(Transform):
    """Inception-style random resized crop to S, then horizontal flip with p = 1/2 (torchvision's algorithm),
    then if `color_jitter` = j > 0 brightness, contrast and saturation factors each uniform in [1 - j, 1 + j],
    applied in that fixed order to the uint8 crop (torchvision's ColorJitter shuffles the order; a fixed one
    keeps the DALI graph, which applies all three in one color_twist, comparable)."""

    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)

    def __init__(self, dataset: str, size: int, color_jitter: float = 0.0) -> None:
        super().__init__(dataset, size)
        self.color_jitter = color_jitter

    def geometry(self, image: torch.Tensor, rng: random.Random | None) -> torch.Tensor:
        assert rng is not None, "training transforms need the per-image RNG"
        top, left, height, width = self.crop_box(image.shape[-2], image.shape[-1], rng)
        image = F.resized_crop(image, top, left, height, width, [self.size, self.size], antialias=True)
        image = F.horizontal_flip(image) if rng.random() < 0.5 else image
        factors = self.jitter_factors(rng)
        if factors:
            brightness, contrast, saturation = factors
            image = F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(image, brightness), contrast), saturation)
        return image

    def jitter_factors(self, rng: random.Random) -> tuple[float, float, float] | None:
        """(brightness, contrast, saturation), drawn after the crop box and the flip so that turning jitter
        on leaves those draws (and jitter off leaves the images) as they were; None when jitter is off."""
        if not self.color_jitter:
            return None
        low, high = 1 - self.color_jitter, 1 + self.color_jitter
        return rng.uniform(low, high), rng.uniform(low, high), rng.uniform(low, high)

    def crop_box(self, height: int, width: int, rng: random.Random) -> tuple[int, int, int, int]:
        """(top, left, h, w): 10 tries at a box of random area and aspect ratio, else the largest
        centred box within the ratio range (as torchvision.transforms.RandomResizedCrop.get_params)."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        if width / height < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif width / height > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w


class ImageNetEval(Transform):
    """Resize the short side to round(S * 256 / 224) (256 for S = 224), then crop the centre S x S."""

    def geometry(self, image: torch.Tensor, rng: random.Random | None) -> torch.Tensor:
        image = F.resize(image, [round(self.size * 256 / 224)], antialias=True)
        return F.center_crop(image, [self.size, self.size])


def transforms_for(dataset: str, size: int, cutout: int = 0, color_jitter: float = 0.0) -> tuple[Transform, Transform]:
    """(training transform, evaluation transform) of `dataset` at image side `size` (`cutout`: CIFAR only,
    `color_jitter`: ImageNet only)."""
    family = "cifar" if dataset.startswith("cifar") else dataset
    evaluation = ImageNetEval if family == "imagenet" else PlainTransform
    if family == "cifar":
        return CifarTrain(dataset, size, cutout), evaluation(dataset, size)
    if family == "imagenet":
        return ImageNetTrain(dataset, size, color_jitter), evaluation(dataset, size)
    return PlainTransform(dataset, size), evaluation(dataset, size)

"""DataConfig checks, errors of build_search_data, and the transforms on their own."""

import dataclasses
import random

import pytest
import torch
import torchvision.transforms.v2.functional as F

from vaenas.data import DataConfig, DataError, build_search_data
from vaenas.data.transforms import NORMALIZATION, ImageNetEval, ImageNetTrain, transforms_for


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(name="mnist"), r"data.name: unknown dataset 'mnist'"),
        (dict(name="cifar10"), r"data.root: the cifar10 dataset needs the folder"),
        (dict(backend="pil"), r"data.backend: 'pil' is not available"),
        (dict(cutout=16), r"data.cutout: Cutout is part of the CIFAR recipe only"),
        (dict(color_jitter=0.4), r"data.color_jitter: colour jitter is part of the ImageNet recipe only"),
        (dict(name="imagenet", root="x", color_jitter=1.0), r"data.color_jitter: expected a number in \[0, 1\)"),
        (dict(name="imagenet", root="x", color_jitter=-0.1), r"data.color_jitter: expected a number in \[0, 1\)"),
        (dict(name="imagenet", root="x", color_jitter="0.4"), r"data.color_jitter: expected a number"),
        (dict(batch_size=0), r"data.batch_size: expected an integer >= 1, got 0"),
        (dict(image_size=True), r"data.image_size: expected an integer >= 1"),
        (dict(workers=-1), r"data.workers: expected an integer >= 0"),
        (dict(holdout=-1), r"data.holdout: a count must be >= 0 \(0: no held-out images\)"),
        (dict(holdout=1.0), r"data.holdout: a fraction must lie in \(0, 1\)"),
        (dict(holdout="10%"), r"data.holdout: expected a count"),
    ],
)
def test_bad_config_values(options, message):
    with pytest.raises(DataError, match=message):
        DataConfig(**options)


def test_every_option_has_help_for_the_cli():
    assert all(f.metadata.get("help") for f in dataclasses.fields(DataConfig))


@pytest.mark.parametrize(
    "options, rank, world_size, message",
    [
        (dict(holdout=1797), 0, 1, r"data.holdout: 1797 holds out 1797 of the 1797"),
        (dict(holdout=0), 0, 1, r"data.holdout: 0 leaves no held-out images to score candidate architectures on"),
        (dict(calibration_images=5000), 0, 1, r"data.calibration_images: 5000 exceeds the 1617"),
        (dict(batch_size=1000), 0, 2, r"data.batch_size: 2 rank\(s\) x 1000 images exceed the 1617"),
        (dict(), 2, 2, r"rank 2 is not in 0..1"),
        (dict(), 0, 0, r"world size must be an integer >= 1"),
    ],
)
def test_sizes_the_data_cannot_give(options, rank, world_size, message):
    with pytest.raises(DataError, match=message):
        build_search_data(DataConfig(**options), rank, world_size)


def test_missing_folders_through_build(tmp_path):
    with pytest.raises(DataError, match=r"cifar-100-python: missing folder"):
        build_search_data(DataConfig(name="cifar100", root=str(tmp_path)))
    with pytest.raises(DataError, match=r"train: missing folder"):
        build_search_data(DataConfig(name="imagenet", root=str(tmp_path)))
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"val: missing folder"):
        build_search_data(DataConfig(name="imagenet", root=str(tmp_path), holdout=0.5, batch_size=1,
                                     calibration_images=1))


def test_imagenet_eval_resizes_the_short_side_then_crops_the_centre():
    image = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    assert ImageNetEval("imagenet", 224)(image).shape == (3, 224, 224)
    # a constant image with a marked centre: the mark stays centred
    image = torch.zeros(3, 40, 80, dtype=torch.uint8)
    image[:, 18:22, 38:42] = 255
    out = ImageNetEval("imagenet", 16)(image)
    assert out.shape == (3, 16, 16) and out[0, 8, 8] > out[0, 0, 0]


def test_random_resized_crop_box_stays_inside_the_image():
    transform, rng = ImageNetTrain("imagenet", 8), random.Random(0)
    for height, width in [(20, 30), (5, 200), (200, 5), (1, 1), (64, 64)]:
        for _ in range(50):
            top, left, h, w = transform.crop_box(height, width, rng)
            assert 0 < h and 0 < w and 0 <= top <= height - h and 0 <= left <= width - w


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_training_transform_is_a_function_of_its_seed(dataset):
    train, evaluation = transforms_for(dataset, 32)
    image = torch.randint(0, 256, (3, 40, 36), dtype=torch.uint8)
    outputs = [train(image, random.Random(seed)) for seed in (7, 7, 8, 9)]
    assert outputs[0].shape == (3, 32, 32) and outputs[0].dtype == torch.float32
    assert torch.equal(outputs[0], outputs[1])
    assert not (torch.equal(outputs[0], outputs[2]) and torch.equal(outputs[0], outputs[3]))
    assert torch.equal(evaluation(image), evaluation(image))


def test_color_jitter_draws_after_the_crop_and_flip_and_scales_the_uint8_crop():
    image = torch.randint(0, 256, (3, 40, 36), dtype=torch.uint8)
    plain, jitter = ImageNetTrain("imagenet", 16), ImageNetTrain("imagenet", 16, color_jitter=0.4)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION["imagenet"])
    for seed in range(5):
        off = plain(image, random.Random(seed))
        # the pixels before normalisation, exactly (uint8 -> /255 -> normalise round-trips)
        pixels = torch.round((off * std + mean) * 255).to(torch.uint8)
        assert torch.equal(plain.finish(pixels), off)
        rng = random.Random(seed)
        plain.geometry(image, rng)  # the crop and flip draws; the jitter factors come next
        brightness, contrast, saturation = jitter.jitter_factors(rng)
        assert all(0.6 <= f <= 1.4 for f in (brightness, contrast, saturation))
        expected = F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(pixels, brightness), contrast), saturation)
        assert torch.equal(jitter(image, random.Random(seed)), plain.finish(expected))
    # brightness alone: every pixel times the factor, clamped at 255, truncated (torchvision's uint8 blend)
    jitter.jitter_factors = lambda rng: (1.5, 1.0, 1.0)
    pixels = torch.round((plain(image, random.Random(3)) * std + mean) * 255)
    brighter = torch.round((jitter(image, random.Random(3)) * std + mean) * 255)
    assert torch.equal(brighter, torch.floor(pixels * 1.5).clamp(max=255))

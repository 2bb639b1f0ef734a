"""The DALI backend, run for real (CPU pipelines, device_id=None), against the torchvision backend.

Photographs: tests/data/photos.py (matplotlib's and, if installed, scikit-learn's sample photos,
re-encoded). Tolerances, in 8-bit pixel levels (a normalised difference times std * 255):
  - validation (resize 256, centre crop 224): at most 3 levels anywhere, mean under 0.5 level. Both
    decode with libjpeg-turbo; they differ by the resampling's rounding (PIL-like antialiased bilinear in
    torchvision, DALI's own filter), measured at most 1 level on these photos.
  - training: the same crop boxes and flips (fed from the torchvision path's draws); DALI decodes only
    the crop (ROI decode: chroma upsampling at the crop's edges differs) and resizes it: at most 16
    levels, fewer than 0.5 % of the values over 3 levels, mean under 0.5 (measured over 30 batches:
    max 13, 0.06 % over 3, mean 0.17).
  - colour jitter (color_jitter=0.4): DALI's color_twist pivots contrast on mid-grey (128), torchvision
    on the image's mean grey level, so the jittered images differ more: mean under 8 levels (measured:
    5.0 over 6 batches at 32 px, max 43; 5.9 over 30 batches at 64 px, max 55, worst batch mean 18.5),
    against about 26 between jittered and unjittered images. Jitter off: the training test above.
  - CIFAR: pure integer crops and flips, then the same normalisation: equal within float rounding (1e-5).
DALI is imported at collection: without it these tests fail (CI installs it via the test extra), they
never skip.
"""

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from datafiles import write_batch
from photos import corrupt_jpeg, write_photo_tree
from test_data_loaders import assert_loading_leaves_the_global_streams_alone, assert_same_batches, cifar_config, take

from vaenas.data import DataConfig, DataError, build_search_data
from vaenas.data.dali import DaliTrainLoader, import_dali
from vaenas.data.transforms import NORMALIZATION

import_dali()  # fail (not skip) where DALI is missing

LEVEL = 1 / 255


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    # 3 classes x (8 train, 3 val) = 33 photographs, 48-160 px short side
    return write_photo_tree(tmp_path_factory.mktemp("photos"))


def photo_config(root, **options):
    # 24 training images: 4 held out, 20 trained on
    defaults = dict(name="imagenet", root=str(root), batch_size=4, eval_batch_size=5, holdout=4, calibration_images=6)
    return DataConfig(**{**defaults, **options})


def levels(first, second, dataset="imagenet"):
    """|first - second| in 8-bit pixel levels, float [B, 3, S, S] normalised -> [B, 3, S, S]."""
    std = torch.tensor(NORMALIZATION[dataset][1]).view(1, 3, 1, 1)
    return (first - second).abs() * std / LEVEL


def test_validation_images_and_labels_match_torchvision(photos):
    torchvision = build_search_data(photo_config(photos))
    dali = build_search_data(photo_config(photos, backend="dali"))
    assert isinstance(dali.train, DaliTrainLoader) and dali.classes == torchvision.classes
    for name in ("test", "holdout", "calibration"):
        (expected, expected_labels), (got, labels) = getattr(torchvision, name).tensors(), getattr(dali, name).tensors()
        assert got.shape == expected.shape == (len(expected_labels), 3, 224, 224) and got.dtype == torch.float32
        assert labels.dtype == torch.int64 and torch.equal(labels, expected_labels)
        assert got.is_contiguous() and got.device.type == "cpu"
        diff = levels(got, expected)
        assert diff.max() <= 3 and diff.mean() < 0.5, (name, diff.max(), diff.mean())
    assert dali.test.tensors()[1].tolist() == [0] * 3 + [1] * 3 + [2] * 3  # val/ in class, then name order


def test_training_batches_are_the_torchvision_crops(photos):
    torchvision = build_search_data(photo_config(photos, image_size=64)).train
    dali = build_search_data(photo_config(photos, image_size=64, backend="dali")).train
    for _ in range(dali.batches_per_epoch + 1):  # into the second epoch
        (expected, expected_labels), (got, labels) = next(torchvision), next(dali)
        assert got.shape == (4, 3, 64, 64) and torch.equal(labels, expected_labels)
        diff = levels(got, expected)
        assert diff.max() <= 16 and diff.mean() < 0.5 and (diff > 3).float().mean() < 0.005, (diff.max(), diff.mean())


def test_color_jitter_is_reproducible_and_close_to_torchvision(photos):
    def batches(**options):  # 6 batches: into the second epoch
        return take(build_search_data(photo_config(photos, image_size=32, **options)).train, 6)

    dali = batches(color_jitter=0.4, backend="dali")
    assert_same_batches(dali, batches(color_jitter=0.4, backend="dali"))
    torchvision, plain = batches(color_jitter=0.4), batches()
    got, expected, unjittered = (torch.cat([images for images, _ in batches]) for batches in (dali, torchvision, plain))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(dali, torchvision))
    close, apart = levels(got, expected).mean(), levels(got, unjittered).mean()
    assert close < 8 and close < apart / 3, (close, apart)


def test_cifar_batches_equal_torchvision(cifar10):
    root, _ = cifar10
    torchvision, dali = build_search_data(cifar_config(root)), build_search_data(cifar_config(root, backend="dali"))
    for (expected, expected_labels), (got, labels) in zip(take(torchvision.train, 3), take(dali.train, 3)):
        assert torch.equal(labels, expected_labels) and torch.allclose(got, expected, atol=1e-5)
    for name in ("holdout", "calibration", "test"):
        (expected, expected_labels), (got, labels) = getattr(torchvision, name).tensors(), getattr(dali, name).tensors()
        assert torch.equal(labels, expected_labels) and torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["cifar10", "imagenet"])
def test_two_ranks_cover_the_epoch_without_overlap_and_match_one_rank(kind, cifar10, photos):
    root, _ = cifar10
    config = (lambda **o: cifar_config(root, backend="dali", **o)) if kind == "cifar10" else (
        lambda **o: photo_config(photos, backend="dali", image_size=32, **o))
    size = 16 if kind == "cifar10" else 4
    one = build_search_data(config(batch_size=size)).train
    ranks = [build_search_data(config(batch_size=size // 2), r, 2).train for r in range(2)]
    seen = []
    for b in range(one.batches_per_epoch):
        parts = [r.batch_indices(0, b) for r in ranks]
        assert np.array_equal(np.concatenate(parts), one.batch_indices(0, b))
        seen += [*parts[0], *parts[1]]
    assert len(set(seen)) == len(seen) == size * one.batches_per_epoch and set(seen) <= set(one.indices)
    for _ in range(2):  # the images too, augmentation included, whatever the number of ranks
        (images, labels), parts = next(one), [next(r) for r in ranks]
        assert torch.equal(labels, torch.cat([p[1] for p in parts]))
        assert torch.equal(images, torch.cat([p[0] for p in parts]))


@pytest.mark.parametrize("kind", ["cifar10", "imagenet"])
def test_resume_gives_the_same_batches(kind, cifar10, photos):
    root, _ = cifar10
    config = cifar_config(root, backend="dali") if kind == "cifar10" else photo_config(
        photos, backend="dali", image_size=32)
    straight = build_search_data(config).train
    steps = 2 * straight.batches_per_epoch + 2  # crossing two epoch boundaries
    expected = take(straight, steps)
    first = build_search_data(config).train
    got = take(first, steps // 2)
    resumed = build_search_data(config).train
    resumed.load_state_dict(first.state_dict())
    got += take(resumed, steps // 2)
    assert_same_batches(got, expected)
    # rewinding a live stream drops the batches it had scheduled ahead
    resumed.load_state_dict({**resumed.state_dict(), "epoch": 0, "batch": 1})
    assert_same_batches(take(resumed, 2), expected[1:3])


@pytest.mark.parametrize("kind", ["cifar10", "imagenet"])
def test_loading_draws_nothing_from_the_global_random_streams(kind, cifar10, photos):
    config = cifar_config(cifar10[0], backend="dali") if kind == "cifar10" else photo_config(
        photos, backend="dali", image_size=32)
    assert_loading_leaves_the_global_streams_alone(config)


def test_missing_dali_says_how_to_install_it_and_auto_falls_back(tmp_path):
    script = (
        "import logging, sys; sys.modules['nvidia.dali'] = None  # as if not installed\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from vaenas.data import DataConfig, DataError, build_search_data\n"
        "from vaenas.data.loaders import TrainLoader\n"
        f"config = dict(name='cifar10', root={str(tmp_path)!r}, batch_size=16, holdout=20, calibration_images=30)\n"
        "assert type(build_search_data(DataConfig(**config, backend='auto')).train) is TrainLoader\n"
        "try:\n    build_search_data(DataConfig(**config, backend='dali'))\n"
        "except DataError as error:\n    print(error)\n"
    )
    from datafiles import write_cifar

    write_cifar(tmp_path, "cifar10")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "data.backend=auto: using torchvision" in run.stderr
    assert "install it with `pip install nvidia-dali-cuda130`" in run.stdout


def test_auto_picks_dali_when_installed(cifar10, caplog):
    root, _ = cifar10
    with caplog.at_level(logging.INFO, logger="vaenas.data"):
        data = build_search_data(cifar_config(root, backend="auto"))
    assert isinstance(data.train, DaliTrainLoader) and "data.backend=auto: using DALI" in caplog.text


def tree(tmp_path, **options):
    return write_photo_tree(tmp_path / "tree", per_class={"train": 4, "val": 2}, sizes=(40, 60), **options)


def small_config(root, **options):
    return photo_config(root, **{"backend": "dali", "image_size": 32, "holdout": 2, "calibration_images": 2, **options})


@pytest.mark.parametrize("backend", ["dali", "torchvision"])
def test_corrupt_jpeg_is_named(backend, tmp_path):
    root = tree(tmp_path)
    corrupt_jpeg(root / "val" / "cls_b" / "img_001.JPEG")
    data = build_search_data(small_config(root, backend=backend))
    with pytest.raises(DataError, match=r"val/cls_b/img_001.JPEG: cannot decode image"):
        data.test.tensors()


@pytest.mark.parametrize("split", ["test", "train"])
def test_a_corrupt_image_read_in_a_worker_process_gives_one_line(tmp_path, split):
    """A DataLoader worker's DataError reaches the main process with the worker's whole traceback as
    its message; the loaders give back the one line that names the file."""
    root = tree(tmp_path, odd_formats=False)
    folder = "val" if split == "test" else "train"
    for name in ("img_000.JPEG", "img_001.JPEG"):
        corrupt_jpeg(root / folder / "cls_b" / name)
    data = build_search_data(small_config(root, backend="torchvision", workers=1, holdout=1, calibration_images=1))
    with pytest.raises(DataError) as error:
        if split == "test":
            data.test.tensors()
        else:
            for _ in range(2 * data.train.batches_per_epoch):
                next(data.train)
    assert f"{folder}/cls_b/img_00" in str(error.value) and "cannot decode image" in str(error.value)
    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)


def test_file_that_is_not_an_image_is_named(tmp_path):
    root = tree(tmp_path)
    (root / "val" / "cls_a" / "img_000.JPEG").write_bytes(b"not a JPEG at all")
    with pytest.raises(DataError, match=r"val/cls_a/img_000.JPEG: cannot decode image \(not a readable image"):
        build_search_data(small_config(root)).test.tensors()


@pytest.mark.parametrize("backend", ["dali", "torchvision"])
def test_skip_corrupt_counts_and_keeps_going(backend, tmp_path):
    root = tree(tmp_path, odd_formats=False)
    corrupt_jpeg(root / "val" / "cls_b" / "img_001.JPEG")
    (root / "val" / "cls_c" / "img_000.JPEG").write_bytes(b"not a JPEG at all")
    for name in ("img_000.JPEG", "img_001.JPEG"):  # one training class entirely corrupt
        corrupt_jpeg(root / "train" / "cls_a" / name)
    data = build_search_data(small_config(root, backend=backend, skip_corrupt=True, holdout=1, calibration_images=1))
    images, labels = data.test.tensors()
    assert images.shape[0] == 4 and labels.tolist() == [0, 0, 1, 2]  # the two bad ones left out
    assert [p.split("/val/")[1] for p in sorted(data.test.skipped)] == ["cls_b/img_001.JPEG", "cls_c/img_000.JPEG"]
    for _ in range(2 * data.train.batches_per_epoch):  # batches keep their size
        assert next(data.train)[0].shape == (4, 3, 32, 32)
    assert len(data.train.skipped) >= 1 and all("/train/cls_a/" in p for p in data.train.skipped)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: [p.unlink() for p in (root / "train" / "cls_c").iterdir()], r"train/cls_c: empty class folder"),
        (lambda root: (root / "train" / "cls_a" / "notes.txt").write_text("x"), r"cls_a/notes.txt: not an image file"),
        (lambda root: __import__("shutil").rmtree(root / "val"), r"val: missing folder"),
    ],
)
def test_folder_errors_name_the_path(tmp_path, damage, message):
    root = tree(tmp_path, odd_formats=False)
    damage(root)
    with pytest.raises(DataError, match=message):
        build_search_data(small_config(root))


def test_mismatched_cifar_batch_files_are_named(cifar10):
    root, _ = cifar10
    # a CIFAR-100 batch (fine_labels) where CIFAR-10's third training batch belongs
    write_batch(root / "cifar-10-batches-py" / "data_batch_3", np.zeros((4, 3, 32, 32), np.uint8),
                np.zeros(4, np.int64), "fine_labels")
    with pytest.raises(DataError, match=r"data_batch_3: malformed CIFAR batch: no 'labels' entry"):
        build_search_data(cifar_config(root, backend="dali"))


def test_cifar_cutout_is_the_same_square_in_both_backends(cifar10):
    root, _ = cifar10
    torchvision = build_search_data(cifar_config(root, cutout=16)).train
    dali = build_search_data(cifar_config(root, cutout=16, backend="dali")).train
    for _ in range(2):
        (expected, expected_labels), (got, labels) = next(torchvision), next(dali)
        assert torch.equal(labels, expected_labels) and torch.allclose(got, expected, atol=1e-5)
        zeroed = (got == 0).all(dim=1).flatten(1).sum(1)  # pixels erased in all 3 channels, per image
        assert zeroed.min() >= 8 * 8 and zeroed.max() <= 16 * 16  # clipped at a corner at worst


def test_evaluation_passes_repeat_after_an_abandoned_one(photos):
    data = build_search_data(photo_config(photos, backend="dali", image_size=32, eval_cache_mb=0))
    first = list(data.test)
    assert [len(labels) for _, labels in first] == [5, 4]
    next(iter(data.test))  # a pass given up after one batch leaves nothing scheduled behind
    assert_same_batches(list(data.test), first)
    cached = build_search_data(photo_config(photos, backend="dali", image_size=32))
    assert_same_batches(list(cached.test), first)
    assert cached.test._loader._pipe is None  # cached after one pass: the pipeline is freed
    assert_same_batches(list(cached.test), first)


def test_cifar_served_at_another_size_is_resized_alike(cifar10):
    root, _ = cifar10
    torchvision = build_search_data(cifar_config(root, image_size=40))
    dali = build_search_data(cifar_config(root, image_size=40, backend="dali"))
    (expected, _), (got, _) = next(torchvision.train), next(dali.train)
    assert got.shape == (16, 3, 40, 40) and levels(got, expected, "cifar10").max() <= 1.01  # bilinear rounding
    assert levels(dali.holdout.tensors()[0], torchvision.holdout.tensors()[0], "cifar10").max() <= 1.01

"""build_search_data: shapes, splits, sharding, reshuffling, resume and the fixed evaluation sets."""

import random

import numpy as np
import pytest
import torch

from vaenas.data import DataConfig, DataError, build_search_data
from vaenas.data.transforms import NORMALIZATION


def cifar_config(root, **options):
    # 200 training images: 20 held out, 180 trained on
    defaults = dict(name="cifar10", root=str(root), batch_size=16, eval_batch_size=12, holdout=20,
                    calibration_images=30)
    return DataConfig(**{**defaults, **options})


def tree_config(root, **options):
    # 12 training images: 3 held out, 9 trained on
    defaults = dict(name="imagenet", root=str(root), image_size=16, batch_size=4, eval_batch_size=5, holdout=3,
                    calibration_images=4)
    return DataConfig(**{**defaults, **options})


def take(loader, n):
    return [next(loader) for _ in range(n)]


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for (images_a, labels_a), (images_b, labels_b) in zip(first, second):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


def test_digits_shapes_dtypes_labels():
    data = build_search_data(DataConfig(batch_size=32, holdout=100, calibration_images=64))
    # digits are 8 x 8 images, served at their own size unless data.image_size says otherwise
    assert (data.num_classes, data.image_size, data.in_channels, data.test) == (10, 8, 3, None)
    images, labels = next(data.train)
    assert images.shape == (32, 3, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (32,) and labels.dtype == torch.int64 and 0 <= labels.min() <= labels.max() < 10
    assert data.train.batches_per_epoch == (1797 - 100) // 32
    held = data.holdout.tensors()
    assert held[0].shape == (100, 3, 8, 8) and held[1].dtype == torch.int64
    assert data.calibration.tensors()[0].shape == (64, 3, 8, 8)
    assert abs(held[0].mean()) < 0.2 and 0.8 < held[0].std() < 1.2  # normalised
    assert torch.equal(held[0][:, 0], held[0][:, 2])  # grey served as 3 equal channels


def test_digits_image_size_is_configurable():
    data = build_search_data(DataConfig(image_size=20, batch_size=8, holdout=10, calibration_images=8))
    assert next(data.train)[0].shape == (8, 3, 20, 20) and data.image_size == 20


def test_cifar_shapes_and_pixel_round_trip(cifar10):
    root, written = cifar10
    data = build_search_data(cifar_config(root))
    assert (data.num_classes, data.image_size, data.test.num_images) == (10, 32, 30)
    images, labels = next(data.train)
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    # the evaluation transform only normalises: undoing it gives back the stored bytes exactly
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATION["cifar10"])
    held, held_labels = data.holdout.tensors()
    pixels = torch.round((held * std + mean) * 255).to(torch.uint8)
    np.testing.assert_array_equal(pixels.numpy(), written["train"][0][data.holdout.indices])
    np.testing.assert_array_equal(held_labels.numpy(), written["train"][1][data.holdout.indices])
    test_images, test_labels = data.test.tensors()
    np.testing.assert_array_equal(torch.round((test_images * std + mean) * 255).to(torch.uint8).numpy(),
                                  written["test"][0])
    np.testing.assert_array_equal(test_labels.numpy(), written["test"][1])


def test_cifar_training_augmentation_is_a_shifted_maybe_flipped_crop(cifar10):
    root, written = cifar10
    data = build_search_data(cifar_config(root))
    images, _ = next(data.train)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION["cifar10"])
    for image, index in zip(images, data.train.batch_indices(0, 0)):
        padded = np.pad(written["train"][0][index], ((0, 0), (4, 4), (4, 4)))
        pixels = torch.round((image * std + mean) * 255).to(torch.uint8).numpy()
        crops = [padded[:, t : t + 32, s : s + 32] for t in range(9) for s in range(9)]
        assert any(np.array_equal(pixels, c) or np.array_equal(pixels, c[:, :, ::-1]) for c in crops)


def test_class_folder_shapes_labels_and_test_split(image_tree):
    data = build_search_data(tree_config(image_tree))
    assert (data.num_classes, data.classes, data.image_size) == (3, ("ant", "bee", "cat"), 16)
    images, labels = next(data.train)
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.int64
    test_images, test_labels = data.test.tensors()
    assert test_images.shape == (6, 3, 16, 16) and test_labels.tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("kind", ["digits", "cifar10"])
def test_holdout_is_disjoint_from_training_and_fixed_by_the_seed(kind, cifar10):
    root, _ = cifar10
    config = DataConfig(holdout=0.1, calibration_images=50) if kind == "digits" else cifar_config(root)
    data = build_search_data(config)
    train, held, calibration = data.train.indices, data.holdout.indices, data.calibration.indices
    total = 1797 if kind == "digits" else 200
    assert len(held) == (180 if kind == "digits" else 20) and len(train) + len(held) == total
    assert not set(train) & set(held) and set(train) | set(held) == set(range(total))
    assert set(calibration) <= set(train) and len(set(calibration)) == len(calibration)
    for epoch in (0, 1):  # no training batch ever holds a held-out image
        for b in range(data.train.batches_per_epoch):
            assert not set(data.train.batch_indices(epoch, b)) & set(held)
    again = build_search_data(config)
    assert np.array_equal(again.holdout.indices, held) and np.array_equal(again.calibration.indices, calibration)
    other = build_search_data(DataConfig(**{**config.__dict__, "seed": 1}))
    assert not np.array_equal(other.holdout.indices, held)
    assert not np.array_equal(other.calibration.indices, calibration)


def test_calibration_and_holdout_are_the_same_every_pass_rank_and_cache_setting(cifar10):
    root, _ = cifar10
    single = build_search_data(cifar_config(root))
    passes = [list(single.calibration), list(single.calibration)]  # the second pass is served from the cache
    assert len(passes[0]) == 3 and passes[0][-1][0].shape[0] == 6  # 30 images in batches of 12: last one kept
    assert_same_batches(*passes)
    passes[1][0][0].zero_()  # a caller's in-place edit must not reach the next pass
    assert_same_batches(passes[0], list(single.calibration))
    for rank, world_size in ((0, 2), (1, 2)):
        sharded = build_search_data(cifar_config(root, eval_cache_mb=0), rank, world_size)
        assert_same_batches(list(sharded.calibration), passes[0])
        assert_same_batches(list(sharded.holdout), list(single.holdout))


def test_two_ranks_are_disjoint_cover_the_epoch_and_match_one_rank(cifar10):
    root, _ = cifar10
    one = build_search_data(cifar_config(root, batch_size=16))
    ranks = [build_search_data(cifar_config(root, batch_size=8), r, 2) for r in range(2)]
    assert ranks[0].train.batches_per_epoch == one.train.batches_per_epoch == 180 // 16
    seen = []
    for b in range(one.train.batches_per_epoch):
        parts = [r.train.batch_indices(0, b) for r in ranks]
        assert not set(parts[0]) & set(parts[1])
        assert np.array_equal(np.concatenate(parts), one.train.batch_indices(0, b))
        seen += [*parts[0], *parts[1]]
    assert len(set(seen)) == len(seen) == 16 * (180 // 16)  # every image at most once; 180 % 16 dropped
    assert set(seen) <= set(one.train.indices)
    # the images themselves, augmentation included, do not depend on the number of ranks
    for _ in range(2):
        (images, labels), parts = next(one.train), [next(r.train) for r in ranks]
        assert torch.equal(images, torch.cat([p[0] for p in parts]))
        assert torch.equal(labels, torch.cat([p[1] for p in parts]))


def test_every_epoch_is_reshuffled_from_the_seed(cifar10):
    root, _ = cifar10
    data = build_search_data(cifar_config(root, batch_size=20))  # 180 = 9 x 20: every image every epoch
    per_epoch = data.train.batches_per_epoch

    def order(loader, epoch):
        return np.concatenate([loader.batch_indices(epoch, b) for b in range(per_epoch)])

    epochs = [order(data.train, e) for e in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == sorted(data.train.indices)
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    assert np.array_equal(order(build_search_data(cifar_config(root, batch_size=20)).train, 2), epochs[2])
    # the stream rolls over: batch per_epoch + 1 is epoch 1's second batch
    take(data.train, per_epoch + 1)
    assert (data.train.epoch, data.train.batch) == (1, 1)


@pytest.mark.parametrize("kind", ["cifar10", "imagenet"])
def test_resume_gives_the_same_batches_bit_for_bit(kind, cifar10, image_tree):
    root, _ = cifar10
    config = cifar_config(root) if kind == "cifar10" else tree_config(image_tree)
    straight = build_search_data(config).train
    steps = 2 * straight.batches_per_epoch + 2  # even, and crossing two epoch boundaries
    expected = take(straight, steps)
    first = build_search_data(config).train
    got = take(first, steps // 2)
    state = first.state_dict()
    assert all(isinstance(v, int) for v in state.values())  # loadable with torch.load(weights_only=True)
    resumed = build_search_data(config).train
    resumed.load_state_dict(state)
    got += take(resumed, steps // 2)
    assert_same_batches(got, expected)


def global_streams() -> tuple:
    """The global torch, Python and NumPy random states, comparable with ==."""
    return torch.get_rng_state().tolist(), random.getstate(), repr(np.random.get_state())


def assert_loading_leaves_the_global_streams_alone(config) -> None:
    """Building the loaders, training batches across an epoch boundary, a resume and evaluation passes
    draw nothing from the global streams (dropout reads torch's: a draw there at a step a straight run
    does not make breaks a bit-for-bit resume)."""
    before = global_streams()
    data = build_search_data(config)
    take(data.train, data.train.batches_per_epoch + 1)
    resumed = build_search_data(config).train
    resumed.load_state_dict(data.train.state_dict())
    take(resumed, 2)
    for evaluation in (data.holdout, data.calibration):
        list(evaluation)
    assert global_streams() == before


@pytest.mark.parametrize("workers", [0, 2])
def test_loading_draws_nothing_from_the_global_random_streams(workers, cifar10):
    assert_loading_leaves_the_global_streams_alone(cifar_config(cifar10[0], workers=workers))


def test_resume_state_checks(cifar10):
    root, _ = cifar10
    loader = build_search_data(cifar_config(root)).train
    take(loader, 3)
    state = loader.state_dict()
    with pytest.raises(DataError, match="saved with seed=0, this run has seed=1"):
        build_search_data(cifar_config(root, seed=1)).train.load_state_dict(state)
    with pytest.raises(DataError, match="saved with global_batch_size=16, this run has global_batch_size=32"):
        build_search_data(cifar_config(root, batch_size=32)).train.load_state_dict(state)
    with pytest.raises(DataError, match="saved with num_images=180"):
        build_search_data(cifar_config(root, holdout=40)).train.load_state_dict(state)
    with pytest.raises(DataError, match=r"missing entries \['batch'\]"):
        loader.load_state_dict({k: v for k, v in state.items() if k != "batch"})
    # same global batch on 2 ranks: the state carries over
    rank0 = build_search_data(cifar_config(root, batch_size=8), 0, 2).train
    rank0.load_state_dict(state)
    assert (rank0.epoch, rank0.batch) == (0, 3)


def test_workers_give_the_same_batches_as_the_main_process(cifar10):
    root, _ = cifar10
    expected = take(build_search_data(cifar_config(root)).train, 3)
    data = build_search_data(cifar_config(root, workers=2))
    assert_same_batches(take(data.train, 3), expected)
    # rewinding a live stream: the persistent workers drop what they prefetched and restart at batch 1
    data.train.load_state_dict({**data.train.state_dict(), "batch": 1})
    assert_same_batches(take(data.train, 2), expected[1:])
    assert_same_batches(list(data.holdout), list(build_search_data(cifar_config(root)).holdout))


def test_bad_image_surfaces_with_its_path_when_loaded(image_tree):
    (image_tree / "val" / "bee" / "img_0.JPEG").write_bytes(b"not a JPEG at all")
    data = build_search_data(tree_config(image_tree))  # the tree is scanned, not decoded, when built
    with pytest.raises(DataError, match=r"val/bee/img_0.JPEG: cannot decode image"):
        list(data.test)


def test_color_jitter_changes_training_images_reproducibly_and_leaves_evaluation_alone(image_tree):
    plain = build_search_data(tree_config(image_tree))
    jitter = build_search_data(tree_config(image_tree, color_jitter=0.4))
    steps = plain.train.batches_per_epoch + 1  # into the second epoch
    off, on = take(plain.train, steps), take(jitter.train, steps)
    assert_same_batches(off, take(build_search_data(tree_config(image_tree, color_jitter=0.0)).train, steps))
    assert_same_batches(on, take(build_search_data(tree_config(image_tree, color_jitter=0.4)).train, steps))
    for (images_off, labels_off), (images_on, labels_on) in zip(off, on):
        assert torch.equal(labels_off, labels_on)
        assert all(not torch.equal(a, b) for a, b in zip(images_off, images_on))  # every image jittered
    for name in ("holdout", "calibration", "test"):
        assert_same_batches(list(getattr(plain, name)), list(getattr(jitter, name)))

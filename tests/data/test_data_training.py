"""build_training_data: the whole training split (data.holdout 0) or all but the held-out images, and the
held-out and test sets split across the ranks, together the whole sets."""

import numpy as np
import pytest
import torch

from vaenas.data import DataConfig, build_search_data, build_training_data


def test_holdout_zero_trains_on_the_whole_split(cifar10):
    root, _ = cifar10
    data = build_training_data(DataConfig(name="cifar10", root=str(root), holdout=0, batch_size=20))
    assert data.holdout is None
    assert np.array_equal(data.train.indices, np.arange(200))
    assert data.test.num_images == 30 and data.num_classes == 10


def test_the_held_out_split_is_the_searchs_and_the_ranks_share_the_evaluation_sets(cifar10):
    root, written = cifar10
    config = DataConfig(name="cifar10", root=str(root), holdout=40, batch_size=8, eval_batch_size=7,
                        calibration_images=8)
    search = build_search_data(config)
    shares = [build_training_data(config, rank, 3) for rank in range(3)]
    assert np.array_equal(shares[0].train.indices, search.train.indices)
    # every held-out and test image on exactly one rank, in the search's order when interleaved
    held = np.concatenate([share.holdout.indices for share in shares])
    assert sorted(held.tolist()) == sorted(search.holdout.indices.tolist())
    assert np.array_equal(shares[1].holdout.indices, search.holdout.indices[1::3])
    test = np.concatenate([share.test.indices for share in shares])
    assert sorted(test.tolist()) == list(range(30))
    # the shares serve the images they name: labels of rank 2's test share are the file's
    _, labels = shares[2].test.tensors()
    assert torch.equal(labels, torch.as_tensor(written["test"][1][2::3]))


def test_digits_has_no_test_split(one_thread):
    data = build_training_data(DataConfig(holdout=0.2, batch_size=64))
    assert data.test is None and data.holdout.num_images == round(0.2 * 1797)
    with pytest.raises(Exception, match="data.holdout: a count must be >= 0"):
        DataConfig(holdout=-3)

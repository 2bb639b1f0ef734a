"""The NB201 digits ground truth: its splits, its standalone training and the packaged table."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from vaenas.data.digits import NUM_IMAGES
from vaenas.data.splits import holdout_split
from vaenas.groundtruth import GroundTruthError, table_for
from vaenas.groundtruth.nb201_digits import (
    DigitsRecipe,
    digits_split,
    digits_tensors,
    nasbench201_digits,
    read_recipe,
    read_table,
    seed_pairs,
    train_standalone,
)
from vaenas.groundtruth.ranking import kendall_tau
from vaenas.search.oneshot.config import OneShotConfig
from vaenas.config import load_config

TINY = dataclasses.replace(DigitsRecipe(), channels=4, cells_per_stage=1, image_size=8, steps=4, train_images=128,
                           test_images=64)


def test_splits_are_disjoint_and_outside_the_search_holdout():
    recipe = DigitsRecipe()
    train, test = digits_split(recipe)
    _, search_holdout = holdout_split(NUM_IMAGES, recipe.search_holdout, 0)
    assert len(train) == recipe.train_images and len(test) == recipe.test_images
    assert not set(train) & set(test)
    assert not (set(train) | set(test)) & set(search_holdout)
    again = digits_split(recipe)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    with pytest.raises(ValueError, match="exceed"):
        digits_split(dataclasses.replace(recipe, train_images=2000))


def test_the_recipe_matches_the_packaged_search_config():
    # the ground truth ranks the network the packaged digits supernet is built as, at its image size,
    # and leaves out exactly the images that search scores candidates on
    config = load_config("oneshot_nb201_digits", [], cls=OneShotConfig)
    recipe = read_recipe()
    assert recipe == DigitsRecipe()
    options = config.supernet.options("nasbench201")
    assert (recipe.channels, recipe.cells_per_stage) == (options["channels"], options["cells_per_stage"])
    assert recipe.image_size == config.data.size
    assert recipe.search_holdout == config.data.holdout and config.data.seed == 0


def test_standalone_training_is_a_function_of_its_seed():
    data = digits_tensors(TINY.image_size)
    assert data[0].shape == (NUM_IMAGES, 3, 8, 8)
    cell = torch.tensor([3, 3, 3, 1, 3, 3])
    first = train_standalone(cell, TINY, 0, data)
    assert first == train_standalone(cell, TINY, 0, data)
    assert 0.0 <= first <= 100.0
    # the all-`none` cell cannot learn anything: one class for every image
    none_cell = torch.zeros(6, dtype=torch.long)
    assert train_standalone(none_cell, TINY, 0, data) < 20.0


def test_packaged_table_is_registered_and_spread():
    table = table_for("nasbench201", "digits")
    assert table is not None and len(table) >= 100
    archs, accuracies = read_table()
    assert torch.equal(table.universe, archs) and torch.equal(table.accuracies, accuracies[:, 0])
    assert len(set(table.space.canonical_key(archs))) == len(archs)
    # a spread wide enough to rank: the middle half spans more than a few test images
    q1, q3 = torch.quantile(table.accuracies, torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist()
    assert q3 - q1 > 2.0
    first, second = seed_pairs()
    assert len(first) >= 20 and not torch.isnan(second).any()
    assert kendall_tau(first, second) > 0.5


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(GroundTruthError, match="missing"):
        nasbench201_digits(tmp_path / "absent.csv.gz")
    not_gzip = tmp_path / "plain.csv.gz"
    not_gzip.write_text("index,arch_str\n")
    with pytest.raises(GroundTruthError, match="corrupt"):
        nasbench201_digits(not_gzip)
    bad = tmp_path / "recipe.json"
    bad.write_text('{"recipe": {"epochs": 3}}')
    with pytest.raises(GroundTruthError, match="unknown keys"):
        read_recipe(bad)
    assert math.isfinite(read_recipe().lr)

"""The one-shot defaults are the packaged digits recipe, and that recipe builds the supernet the
packaged digits ground truth was trained as."""

from vaenas.config import load_config
from vaenas.search.oneshot import OneShotConfig


def test_defaults_equal_the_packaged_digits_config():
    assert load_config(None, cls=OneShotConfig) == OneShotConfig()
    assert load_config("oneshot_nb201_digits", cls=OneShotConfig) == OneShotConfig()


def test_the_digits_recipe_is_the_standard_supernet():
    config = OneShotConfig()
    assert config.supernet.options("nasbench201") == {"channels": 16, "cells_per_stage": 5, "cell_affine": False}
    assert config.data.name == "digits" and config.data.size == 8

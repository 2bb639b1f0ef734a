"""`state_dict()` of the one-shot and gradient searches is a snapshot: a state kept in memory does not
change when the search trains on (its supernet tensors and momentum buffers are not the live ones),
nor when a search loaded from it trains on."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch

from vaenas.config import load_config
from vaenas.data import build_search_data
from vaenas.search.gradient import GradientConfig, GradientSearch
from vaenas.search.oneshot import OneShotConfig, OneShotSearch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

#: NB201 at 4 channels, 8 px; a refit every 2 steps
TINY = [
    "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1", "data.image_size=8", "data.batch_size=16", "data.holdout=32",
    "data.calibration_images=16", "data.eval_batch_size=32", "train.steps=6", "vaenas.refit_every=2",
    "vaenas.n_samples=4", "vae.n_iters=3", "vae.batch_size=4", "eval.group_size=4",
]
SEARCHES = {
    "oneshot": (OneShotConfig, OneShotSearch, ["vaenas.compare_samples=2", "vaenas.epsilon_inc=0.1"]),
    "gradient": (GradientConfig, GradientSearch, ["space=nasbench201", "gradient.baseline=false"]),
}


def build(method: str):
    config_class, search_class, extra = SEARCHES[method]
    config = load_config(None, TINY + extra, cls=config_class)
    return search_class(config, build_search_data(config.data), torch.device("cpu"))


def copied(state: dict[str, Any]) -> dict[str, Any]:
    """An independent copy of `state`, through a checkpoint's bytes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same(got: Any, expected: Any, where: str = "state") -> None:
    """got equals expected: tensors bit for bit, NaN equal to NaN, tuples and lists alike."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), where
        for index, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == expected.dtype, where
        assert torch.equal(got, expected), f"{where} changed"
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(got, float) and math.isnan(got), where
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


@pytest.mark.parametrize("method", list(SEARCHES))
def test_a_state_does_not_change_when_the_search_trains_on(method):
    search = build(method)
    search.train(until=3)  # momentum buffers, a refit and its record exist
    state = search.state_dict()
    expected = copied(state)
    search.train(until=5)  # SGD steps move weights and buffers in place; another refit is recorded
    assert_same(state, expected)
    # a search loaded from a state kept in memory does not train it on either
    resumed = build(method)
    resumed.load_state_dict(state)
    resumed.train(until=5)
    assert_same(state, expected)
    assert_same(resumed.state_dict()["supernet"], search.state_dict()["supernet"])

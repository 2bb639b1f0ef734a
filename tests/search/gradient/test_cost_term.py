"""The gradient search's expected-cost term: its gradient against the closed form and finite
differences, both forms, the config keys, and VAENAS-G / ProxylessNAS runs whose w moves towards
cheaper architectures when the term is on."""

from __future__ import annotations

import math

import pytest
import torch

from vaenas.config import ConfigError, load_config
from vaenas.data import build_search_data
from vaenas.search.gradient import GradientConfig, GradientSearch
from vaenas.search.gradient.cost_term import CostTerm, expected_cost
from vaenas.spaces import get_space

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TABLES = {
    "nasbench201": ({"channels": 4, "cells_per_stage": 1, "num_classes": 3}, 8),
    "nasnet": ({"C": 4, "layers": 3, "num_classes": 3}, 16),
    "shufflenet": ({"width": 0.25, "small_input": True, "num_classes": 3}, 32),
}


def _table(name):
    options, size = TABLES[name]
    space = get_space(name)
    return space, space.cost_model(size, **options)


@pytest.mark.parametrize("name", ["nasbench201", "shufflenet"])
def test_expected_cost_gradient_is_the_softmax_closed_form(name):
    """No group terms: dE/dw_tj = p_tj (c_tj - Σ_k p_tk c_tk) for each cost column."""
    space, table = _table(name)
    logits = torch.randn(space.length, space.vocab_sizes[0], dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    p = torch.softmax(logits.detach(), dim=-1)
    for column in range(2):
        (grad,) = torch.autograd.grad(expected_cost(table, logits)[column], logits)
        c = table.choices[:, :, column]
        closed = p * (c - (p * c).sum(dim=1, keepdim=True))
        torch.testing.assert_close(grad, closed, rtol=1e-10, atol=1e-6)


@pytest.mark.parametrize("name", ["nasbench201", "nasnet", "shufflenet"])
@pytest.mark.parametrize("form", ["mul_log", "add_linear"])
@pytest.mark.parametrize("metric", ["flops", "params"])
def test_the_cost_terms_gradient_matches_finite_differences(name, form, metric):
    space, table = _table(name)
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(space.length, space.vocab_sizes[0], dtype=torch.float64, generator=generator)
    target = 0.7 * float(expected_cost(table, logits)[("params", "flops").index(metric)])
    term = CostTerm(table, metric, target, weight=0.6, form=form)
    scale = torch.rand(space.length, space.vocab_sizes[0], dtype=torch.float64, generator=generator)

    def loss_with_term(w):
        loss = 1.0 + (scale * torch.softmax(w, dim=-1)).sum() / space.length  # a stand-in cross-entropy > 0
        return term(loss, w)[0]

    assert torch.autograd.gradcheck(loss_with_term, (logits.requires_grad_(True),), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_the_forms_values():
    space, table = _table("nasbench201")
    logits = torch.zeros(space.length, 5, dtype=torch.float64)
    expected = float(expected_cost(table, logits)[1])
    loss = torch.tensor(2.0, dtype=torch.float64)
    multiplied, value = CostTerm(table, "flops", 1e4, weight=0.5)(loss, logits)
    assert float(value) == pytest.approx(expected, rel=1e-12)
    assert float(multiplied) == pytest.approx(2.0 * (math.log(expected) / math.log(1e4)) ** 0.5, rel=1e-12)
    added, _ = CostTerm(table, "flops", 1e4, weight=0.1, form="add_linear")(loss, logits)
    assert float(added) == pytest.approx(2.0 + 0.1 * (expected - 1e4) / 1e4, rel=1e-12)
    assert CostTerm(table, "flops", 1e4, weight=0.0)(loss, logits)[0] is loss
    with pytest.raises(ValueError, match="cost metric must be one of params, flops, latency"):
        CostTerm(table, "time", 1e4, 0.5)
    with pytest.raises(ValueError, match="cost metric latency needs a table with a latency column"):
        CostTerm(table, "latency", 1e4, 0.5)


#: Algorithm 3 in seconds: NB201 at 4 channels, 8 px
TINY = [
    "space=nasbench201", "progress=false", "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1",
    "data.image_size=8", "data.batch_size=16", "data.holdout=48", "data.calibration_images=16",
    "data.eval_batch_size=48", "train.steps=12", "vaenas.refit_every=50", "vaenas.n_samples=4", "vae.n_iters=5",
    "vae.batch_size=8", "eval.group_size=4", "run.log_every=4", "gradient.baseline=false", "gradient.arch_lr=0.2",
]


@pytest.mark.parametrize("sampling", ["vae", "softmax"])
def test_the_term_moves_w_towards_cheaper_architectures(sampling):
    """VAENAS-G and plain ProxylessNAS: the same run with a strong FLOPs term ends with a smaller
    expected FLOPs than without it; the log records the expectation."""
    expectations = {}
    for weight in (0.0, 5.0):
        overrides = [f"gradient.sampling={sampling}", f"gradient.cost_weight={weight}", "gradient.cost_target=2000"]
        config = load_config(None, TINY + overrides, cls=GradientConfig)
        records = []
        search = GradientSearch(config, build_search_data(config.data), torch.device("cpu"), log=records.append)
        start = search.expected_cost()[1]
        search.train()
        expectations[weight] = search.expected_cost()[1]
        if weight:
            logged = [r["expected_flops"] for r in records if r["kind"] == "train"]
            assert len(logged) == 3 and logged[-1] == pytest.approx(expectations[weight])
            assert search.result()["expected_cost"]["flops"] == pytest.approx(expectations[weight])
    assert expectations[5.0] < 0.8 * expectations[0.0] and expectations[5.0] < start


@pytest.mark.parametrize("overrides, message", [
    (["gradient.cost_weight=0.5"], "gradient.cost_target: the expected-cost term"),
    (["gradient.cost_weight=0.5", "gradient.cost_target=0.5"], "gradient.cost_target: 0.5 must be above 1"),
    (["gradient.cost_weight=0.5", "gradient.cost_target=3", "gradient.cost_metric=latency"],
     "gradient.latency_table: cost_metric=latency needs a latency table"),
    (["gradient.cost_metric=time"], "gradient.cost_metric"),
])
def test_bad_cost_term_configs_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, TINY + overrides, cls=GradientConfig)


def test_the_expected_latency_term_uses_the_measured_table(tmp_path):
    """cost_metric=latency: the term is the latency table's expectation under softmax(w) (ms), it moves
    w towards faster architectures, and a table of another network is refused naming the key."""
    import json

    from vaenas.spaces.latency import load_latency_table, measure_latency_table
    from vaenas.supernet import get_supernet

    space = get_space("nasbench201")
    options = get_supernet(space, num_classes=10, channels=4, cells_per_stage=1).child_options()
    _, document = measure_latency_table(space, 8, repeats=2, warmup=1, **options)
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(document))
    table = load_latency_table(path, space, 8, runtime=False, **options)
    expectations = {}
    for weight in (0.0, 5.0):
        overrides = ["gradient.cost_metric=latency", f"gradient.latency_table={path}", f"gradient.cost_weight={weight}",
                     "gradient.cost_target=1.5", "gradient.cost_form=add_linear"]
        config = load_config(None, TINY + overrides, cls=GradientConfig)
        search = GradientSearch(config, build_search_data(config.data), torch.device("cpu"))
        search.train()
        expected = float(table.expected(torch.softmax(search.logits.detach().double(), dim=-1))[0])
        assert search.expected_cost()[2] == pytest.approx(expected)
        if weight:
            assert search.cost_term.expected(search.logits.detach()) == pytest.approx(expected)
        expectations[weight] = expected
    assert expectations[5.0] < expectations[0.0]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**document, "measured_with": {**document["measured_with"], "image_size": 16}}))
    config = load_config(None, TINY + [f"gradient.latency_table={other}"], cls=GradientConfig)
    with pytest.raises(ConfigError, match="gradient.latency_table: .*measured with image_size=16"):
        GradientSearch(config, build_search_data(config.data), torch.device("cpu"))

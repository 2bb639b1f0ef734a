"""The tabular study's cost bounds: the table restricted to the architectures within them, and every
method's queries inside it."""

from __future__ import annotations

import pytest
import torch

from vaenas.config import ConfigError, load_config
from vaenas.groundtruth import nasbench101_20k, nasbench201
from vaenas.search.evolution import TabularOracle
from vaenas.search.tabular import TabularConfig, run_study
from vaenas.search.tabular.cost_bounds import BENCHMARK_NETWORKS, load_study_benchmark, within_bounds
from vaenas.search.tabular.report import markdown_report

#: a study that runs every method in seconds (cf. test_tabular_study.TINY)
TINY = [
    "study.seeds=1", "study.n_train=100", "study.ks=[5,20]", "study.noise=[0]", "study.histogram_samples=100",
    "evolution.budget=40", "evolution.population=10", "evolution.parents=5",
    "anytime.budget=40", "anytime.report_at=[10,40]", "anytime.round_size=10", "anytime.vae_iters=3",
    "anytime.first_fit_iters=5", "anytime.population=10", "anytime.sample_size=5", "anytime.warmup=10",
    "vae.n_iters=5", "vae.batch_size=16", "vae.hidden_dim=16", "progress=false",
]


def _costs(benchmark, archs):
    size, options = BENCHMARK_NETWORKS[("nasbench201", "cifar10")]
    return benchmark.space.cost_model(size, **options).costs(archs)


def test_the_table_is_restricted_to_the_band_and_keeps_its_accuracies():
    full = nasbench201("cifar10")
    config = load_config(None, ["benchmark.min_flops=5e7", "benchmark.max_flops=1e8"], cls=TabularConfig)
    restricted = within_bounds(full, config.benchmark)
    flops = _costs(full, full.universe)[:, 1]
    inside = (flops >= 5e7) & (flops <= 1e8)
    assert 0 < len(restricted) == int(inside.sum()) < len(full)
    assert torch.equal(restricted.universe, full.universe[inside])
    assert torch.equal(restricted.accuracy(restricted.universe), full.accuracy(full.universe[inside]))
    assert not bool(restricted.contains(full.universe[~inside][:50]).any())
    assert restricted.source.startswith("nasbench201-cifar10 within benchmark.min_flops=5e+07, benchmark.max_flops=1e+08")
    assert within_bounds(full, load_config(None, [], cls=TabularConfig).benchmark) is full


def test_every_method_queries_only_architectures_within_the_bounds(monkeypatch):
    config = load_config(None, [*TINY, "benchmark.max_params=4e5"], cls=TabularConfig)
    benchmark = load_study_benchmark(config)
    queried = []
    query = TabularOracle.query

    def recording(self, archs):
        queried.append(archs.clone())
        return query(self, archs)

    monkeypatch.setattr(TabularOracle, "query", recording)
    (result,) = run_study(config, benchmark, [0], show_progress=False)
    archs = torch.cat(queried)
    assert len(archs) > 100 and bool(benchmark.contains(archs).all())
    assert float(_costs(benchmark, archs)[:, 0].max()) <= 4e5
    found = torch.tensor([f.arch for f in result.found])
    assert len(found) and float(_costs(benchmark, found)[:, 0].max()) <= 4e5
    report = markdown_report(config, benchmark, [result], 1.0)
    assert "Cost bounds: every method searched nasbench201-cifar10 within benchmark.max_params=400000" in report


def test_nasbench101_is_bounded_with_its_closed_form():
    config = load_config(None, ["benchmark.name=nasbench101_20k", "benchmark.max_params=2e6"], cls=TabularConfig)
    full = nasbench101_20k()
    restricted = within_bounds(full, config.benchmark)
    params = full.space.cost_model(32).costs(restricted.universe)[:, 0]
    assert 0 < len(restricted) < len(full) and float(params.max()) <= 2e6


@pytest.mark.parametrize("overrides, message", [
    (["benchmark.max_flops=1e3"], "benchmark.max_flops=1000: no architecture of nasbench201-cifar10 is within"),
    (["benchmark.min_params=2e6", "benchmark.max_params=1e6"], "benchmark.min_params: 2e+06 is above"),
])
def test_bounds_no_architecture_meets_are_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        load_study_benchmark(load_config(None, overrides, cls=TabularConfig))


def test_a_latency_bound_uses_a_table_measured_for_the_benchmarks_network(tmp_path):
    import json

    from vaenas.spaces.latency import load_latency_table, measure_latency_table

    full = nasbench201("cifar10")
    size, options = BENCHMARK_NETWORKS[("nasbench201", "cifar10")]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, document = measure_latency_table(full.space, size, repeats=2, warmup=1, **options)
    finally:
        torch.set_num_threads(previous)
    path = tmp_path / "nb201.json"
    path.write_text(json.dumps(document))
    latency = load_latency_table(path, full.space, size, runtime=False, **options).costs(full.universe)[:, 0]
    bound = float(latency.median())
    config = load_config(None, [f"benchmark.latency_table={path}", f"benchmark.max_latency={bound}"], cls=TabularConfig)
    restricted = within_bounds(full, config.benchmark)
    assert torch.equal(restricted.universe, full.universe[latency <= bound])
    with pytest.raises(ConfigError, match="benchmark.latency_table: max_latency / min_latency need a latency table"):
        load_study_benchmark(load_config(None, [f"benchmark.max_latency={bound}"], cls=TabularConfig))
    cifar100 = load_config(None, ["benchmark.dataset=cifar100", f"benchmark.latency_table={path}",
                                  f"benchmark.max_latency={bound}"], cls=TabularConfig)
    with pytest.raises(ConfigError, match="benchmark.latency_table: .*measured with options="):
        load_study_benchmark(cifar100)  # a 100-class network is another network

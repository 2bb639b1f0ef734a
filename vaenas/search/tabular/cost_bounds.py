"""Cost bounds of the tabular study: the benchmark's table restricted to the architectures whose
network is within `benchmark.min_/max_params`, `min_/max_flops` and, with a latency table of the
benchmark's network measured on one's device, `min_/max_latency` (ms).

Every tabular method (the paper protocol's samplers and evolutions, random search, regularized
evolution, the VAENAS loop) draws only from the table's universe, so restricting the universe is
what makes each of them search within the bounds: nothing they query or return can leave it. Costs
come from the space's exact cost table (vaenas.spaces.cost_table) for the network the benchmark
trained (BENCHMARK_NETWORKS), one batched lookup over the whole table.
"""

from __future__ import annotations

from vaenas.config import ConfigError
from vaenas.groundtruth import TabularBenchmark, load_benchmark
from vaenas.search.budget import Budget, budget_filter, with_latency
from vaenas.search.tabular.config import BenchmarkConfig, TabularConfig
from vaenas.spaces.latency import load_latency_table

#: (benchmark, dataset) -> (image size, child options) of the network the table's accuracies were
#: trained as: NAS-Bench-201's C = 16, N = 5 network on 32 px CIFAR and 16 px ImageNet16-120, and
#: NAS-Bench-101's own network (the space's child defaults) on 32 px CIFAR-10
BENCHMARK_NETWORKS = {
    ("nasbench201", "cifar10"): (32, {"num_classes": 10}),
    ("nasbench201", "cifar100"): (32, {"num_classes": 100}),
    ("nasbench201", "imagenet16_120"): (16, {"num_classes": 120}),
    ("nasbench101_20k", "cifar10"): (32, {}),
}


def cost_bounds(section: BenchmarkConfig) -> Budget:
    """The section's bounds as a Budget (ConfigError for an empty band)."""
    try:
        return Budget(max_params=section.max_params, max_flops=section.max_flops, min_params=section.min_params,
                      min_flops=section.min_flops, max_latency=section.max_latency, min_latency=section.min_latency,
                      prefix="benchmark")
    except ValueError as error:
        raise ConfigError(str(error)) from None


def within_bounds(benchmark: TabularBenchmark, section: BenchmarkConfig) -> TabularBenchmark:
    """benchmark itself without bounds, else the table of its architectures within them; a
    ConfigError that gives the table's cost range when none is."""
    bounds = cost_bounds(section)
    if not bounds.active:
        return benchmark
    image_size, options = BENCHMARK_NETWORKS[(section.name, section.dataset)]
    model = benchmark.space.cost_model(image_size, **options)
    if bounds.on_latency and not section.latency_table:
        raise ConfigError("benchmark.latency_table: max_latency / min_latency need a latency table of the "
                          "benchmark's network (python -m vaenas.spaces.latency)")
    if section.latency_table:
        try:
            model = with_latency(model, load_latency_table(section.latency_table, benchmark.space, image_size,
                                                           runtime=False, **options))
        except ValueError as error:
            raise ConfigError(f"benchmark.latency_table: {error}") from None
    keep = budget_filter(model, bounds)(benchmark.universe)
    if not bool(keep.any()):
        costs = model.costs(benchmark.universe, check=False)
        latency = f", {costs[:, 2].min():.3g}-{costs[:, 2].max():.3g} ms" if costs.shape[1] > 2 else ""
        raise ConfigError(
            f"{bounds.describe()}: no architecture of {benchmark.name} is within the bounds (its networks have "
            f"{costs[:, 0].min():.4g}-{costs[:, 0].max():.4g} params and {costs[:, 1].min():.4g}-"
            f"{costs[:, 1].max():.4g} FLOPs{latency} at {image_size} px)"
        )
    return benchmark.subset(keep, f"{benchmark.name} within {bounds.describe()}: {int(keep.sum()):,} of "
                                  f"{len(benchmark):,} architectures")


def load_study_benchmark(config: TabularConfig) -> TabularBenchmark:
    """The benchmark the study runs on: the configured table, restricted to its cost bounds."""
    return within_bounds(load_benchmark(config.benchmark.name, config.benchmark.dataset), config.benchmark)

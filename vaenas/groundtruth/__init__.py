"""Real ground truth for the tabular study: NAS-Bench-201 (complete) and a NAS-Bench-101 sample."""

from vaenas.groundtruth.tables import (
    BENCHMARKS,
    NB201_DATASETS,
    GroundTruthError,
    TabularBenchmark,
    load_benchmark,
    nasbench101_20k,
    nasbench201,
)

__all__ = [
    "BENCHMARKS",
    "NB201_DATASETS",
    "GroundTruthError",
    "TabularBenchmark",
    "load_benchmark",
    "nasbench101_20k",
    "nasbench201",
]

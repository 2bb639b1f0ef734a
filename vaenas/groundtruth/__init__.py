"""Real ground truth: NAS-Bench-201 (complete) and a NAS-Bench-101 sample (tables), a table of one's
own (read_table, a CSV of tokens and accuracy), and rank correlations of scores against it (ranking)."""

from vaenas.groundtruth.tables import (
    BENCHMARKS,
    NB201_DATASETS,
    GroundTruthError,
    TabularBenchmark,
    ground_truth,
    load_benchmark,
    nasbench101_20k,
    nasbench201,
    read_table,
    table_for,
)
from vaenas.groundtruth.ranking import kendall_tau

__all__ = [
    "BENCHMARKS",
    "NB201_DATASETS",
    "GroundTruthError",
    "TabularBenchmark",
    "ground_truth",
    "kendall_tau",
    "load_benchmark",
    "nasbench101_20k",
    "nasbench201",
    "read_table",
    "table_for",
]

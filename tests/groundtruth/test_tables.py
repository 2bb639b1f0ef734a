"""Ground-truth tables: the shipped files, their loaders and their errors."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pytest
import torch

from vaenas.groundtruth import GroundTruthError, TabularBenchmark, load_benchmark, nasbench201
from vaenas.groundtruth.tables import NB101_FILE, NB201_FILE, _read_gzip_csv


@pytest.fixture(scope="module")
def nb201():
    return nasbench201("cifar10")


def test_nasbench201_complete_with_published_optimum(nb201):
    assert len(nb201) == 15_625
    assert nb201.universe.shape == (15_625, 6) and nb201.universe.dtype == torch.long
    arch, accuracy = nb201.best()
    assert accuracy == pytest.approx(94.3733, abs=1e-4)
    assert int(nb201.space.index_of(arch[None])[0]) == 6111
    # rows are in official index order
    assert torch.equal(nb201.space.index_of(nb201.universe), torch.arange(15_625))
    # every string of the space is in the table, each exactly once
    assert len({tuple(row) for row in nb201.universe.tolist()}) == 15_625


def test_nasbench201_lookup_by_architecture(nb201):
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(len(nb201), (31,), generator=generator)
    archs = nb201.universe[rows]
    assert torch.equal(nb201.accuracy(archs), nb201.accuracies[rows])
    assert bool(nb201.contains(archs).all())
    # the all-`none` cell: index 1651, chance accuracy
    none_cell = torch.zeros(1, 6, dtype=torch.long)
    assert int(nb201.rows(none_cell)[0]) == 1651
    assert float(nb201.accuracy(none_cell)[0]) == pytest.approx(10.0)


@pytest.mark.parametrize(("dataset", "best", "index"), [("cifar100", 73.5133, 9930), ("imagenet16_120", 47.3111, 857)])
def test_nasbench201_other_datasets(dataset, best, index):
    benchmark = nasbench201(dataset)
    arch, accuracy = benchmark.best()
    assert accuracy == pytest.approx(best, abs=1e-4)
    assert int(benchmark.space.index_of(arch[None])[0]) == index


def test_unknown_dataset_and_benchmark_suggest_names():
    with pytest.raises(ValueError, match="did you mean 'cifar100'"):
        nasbench201("cifar-100")
    with pytest.raises(ValueError, match="did you mean 'nasbench201'"):
        load_benchmark("nasbench_201")


def test_nasbench101_file_holds_the_20k_sample():
    table = _read_gzip_csv(NB101_FILE, ["hash", "val_acc_108ep"])
    assert len(table["hash"]) == len(set(table["hash"])) == 20_001
    assert max(float(v) for v in table["val_acc_108ep"]) * 100 == pytest.approx(94.91, abs=0.01)


@pytest.mark.slow
def test_nasbench101_20k_universe():
    if importlib.util.find_spec("vaenas.spaces.nasbench101") is None:
        pytest.skip("vaenas.spaces.nasbench101 is not available")
    from vaenas.groundtruth import nasbench101_20k

    benchmark = nasbench101_20k()
    assert len(benchmark) == 20_001 and benchmark.universe.shape == (20_001, 26)
    assert benchmark.best()[1] == pytest.approx(94.91, abs=0.01)
    sample = benchmark.universe[:27]
    # the space's own hash of a cell finds the same row as the file's hash
    assert torch.equal(benchmark.rows(sample), torch.arange(27))
    assert bool(benchmark.space.is_valid(sample).all())


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(GroundTruthError, match="missing"):
        nasbench201(path=tmp_path / "absent.csv.gz")


def test_corrupt_files_are_clear_errors(tmp_path: Path):
    not_gzip = tmp_path / "plain.csv.gz"
    not_gzip.write_text("index,cifar10_test\n0,1\n")
    with pytest.raises(GroundTruthError, match="corrupt"):
        nasbench201(path=not_gzip)

    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(NB201_FILE.read_bytes()[:5000])
    with pytest.raises(GroundTruthError, match="corrupt"):
        nasbench201(path=truncated)

    wrong_columns = tmp_path / "columns.csv.gz"
    with gzip.open(wrong_columns, "wt") as handle:
        handle.write("index,cifar10_acc\n0,1.0\n")
    with pytest.raises(GroundTruthError, match="cifar10_test"):
        nasbench201(path=wrong_columns)

    not_a_number = tmp_path / "numbers.csv.gz"
    with gzip.open(not_a_number, "wt") as handle:
        handle.write("index,cifar10_test\n" + "".join(f"{i},{'x' if i == 7 else 90}\n" for i in range(15_625)))
    with pytest.raises(GroundTruthError, match="non-number"):
        nasbench201(path=not_a_number)


def test_unknown_architecture_is_a_key_error(nb201):
    # a table that knows only the first 10 rows
    small = TabularBenchmark("small", nb201.space, nb201.universe[:10], nb201.accuracies[:10],
                             key=lambda archs: nb201.space.index_of(archs).tolist())
    outside = nb201.universe[10:13]
    assert not bool(small.contains(outside).any())
    with pytest.raises(KeyError, match="not in the table"):
        small.accuracy(outside)


def test_a_table_of_ones_own_reads_tokens_and_accuracy(tmp_path):
    from vaenas.groundtruth import ground_truth, read_table
    from vaenas.spaces import get_space

    space = get_space("nasbench201")
    path = tmp_path / "mine.csv"
    path.write_text("tokens,accuracy\n3 1 2 1 4 3,71.5\n\"[0, 1, 2, 3, 4, 1]\",12\n")
    table = read_table(path, space)
    assert table.universe.tolist() == [[3, 1, 2, 1, 4, 3], [0, 1, 2, 3, 4, 1]]
    assert table.accuracies.tolist() == [71.5, 12.0] and table.source == f"{path} (2 architectures)"
    gz = tmp_path / "mine.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert torch.equal(ground_truth(str(gz), "nasbench201", "digits").universe, table.universe)
    assert ground_truth("none", "nasbench201", "cifar10") is None
    assert ground_truth("auto", "nasbench201", "cifar10").source.startswith("the packaged NAS-Bench-201 table")
    path.write_text("tokens,accuracy\n3 1 2 1 4 3,71.5\n3 1 2 1 4 3,70\n")
    with pytest.raises(GroundTruthError, match="1 architectures share a key"):
        read_table(path, space)

"""Tabular benchmarks: every known architecture of a space with its real accuracy (paper §5.3).

Two tables ship with the package (sources and licenses in NOTICE):

- NAS-Bench-201, complete (15,625 cells): 200-epoch test accuracy on CIFAR-10, CIFAR-100 or
  ImageNet16-120, rows in the official NAS-Bench-201 index order.
- NAS-Bench-101, a 20,001-cell uniform sample of the 423,624 cells: 108-epoch validation accuracy,
  rows identified by the official NAS-Bench-101 module hash.

The files are gzip'd CSV, read with the standard library.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import itertools
import logging
import zlib
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from vaenas.spaces import SearchSpace, get_space

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent
NB201_FILE = DATA_DIR / "nb201_test_acc_200ep.csv.gz"
NB101_FILE = DATA_DIR / "nb101_sample20k_by_hash.csv.gz"

#: dataset name -> column of the NAS-Bench-201 file (test accuracy after 200 epochs, %)
NB201_DATASETS = {
    "cifar10": "cifar10_test",
    "cifar100": "cifar100_test",
    "imagenet16_120": "imagenet16_120_test",
}
NB201_SIZE = 15_625
NB101_SAMPLE_SIZE = 20_001


class GroundTruthError(ValueError):
    """A ground-truth file is missing, unreadable or does not hold what it should."""


class TabularBenchmark:
    """The known architectures of a search space and their accuracies.

    universe: LongTensor[N, T], every known architecture in the space's encoding (one row each).
    accuracies: FloatTensor[N] (float64), accuracy in % of each row of the universe.
    key: maps LongTensor[M, T] to M hashable keys; two rows with equal keys are the same entry of
      the table (NAS-Bench-201: the official index; NAS-Bench-101: the module hash).
    keys: key(universe) when the caller already has it (NAS-Bench-101: the file's hashes, which
      saves hashing 20,001 graphs again).
    source: where the accuracies come from, for reports (default: the name).
    """

    def __init__(
        self,
        name: str,
        space: SearchSpace,
        universe: Tensor,
        accuracies: Tensor,
        key: Callable[[Tensor], Sequence[Hashable]],
        keys: Sequence[Hashable] | None = None,
        source: str | None = None,
    ) -> None:
        if universe.dim() != 2 or universe.shape[1] != space.length:
            raise ValueError(f"{name}: universe must be [N, {space.length}], got {tuple(universe.shape)}")
        if accuracies.shape != (universe.shape[0],):
            raise ValueError(f"{name}: {universe.shape[0]} architectures but {tuple(accuracies.shape)} accuracies")
        self.name = name
        self.source = name if source is None else source
        self.space = space
        self.universe = universe.long()
        self.accuracies = accuracies.double()
        self._key = key
        self._keys = list(key(self.universe) if keys is None else keys)
        self._row_of = {k: row for row, k in enumerate(self._keys)}
        if len(self._row_of) != len(self.universe):
            raise GroundTruthError(f"{name}: {len(self.universe) - len(self._row_of)} architectures share a key")

    def __len__(self) -> int:
        return len(self.universe)

    def __repr__(self) -> str:
        return f"TabularBenchmark({self.name!r}, {len(self)} architectures, space={self.space.name!r})"

    def rows(self, archs: Tensor) -> Tensor:
        """LongTensor[M]: the universe row of each architecture of archs [M, T]; -1 where unknown
        or not a valid architecture of the space (samplers ask about invalid strings too)."""
        archs = torch.as_tensor(archs).long().reshape(-1, self.space.length)
        rows = torch.full((len(archs),), -1, dtype=torch.long)
        valid = self.space.is_valid(archs).nonzero().flatten()
        if len(valid):
            rows[valid] = torch.tensor([self._row_of.get(k, -1) for k in self._key(archs[valid])], dtype=torch.long)
        return rows

    def contains(self, archs: Tensor) -> Tensor:
        """BoolTensor[M]: which rows of archs [M, T] the table knows."""
        return self.rows(archs) >= 0

    def accuracy(self, archs: Tensor) -> Tensor:
        """FloatTensor[M] (float64): accuracy in % of archs [M, T]; KeyError if the table lacks one."""
        rows = self.rows(archs)
        missing = (rows < 0).nonzero()
        if len(missing):
            first = int(missing[0])
            raise KeyError(
                f"{self.name}: architecture {first} ({torch.as_tensor(archs)[first].tolist()}) is not in the table "
                f"({len(missing)} of {len(rows)} unknown); filter with contains() first"
            )
        return self.accuracies[rows]

    def subset(self, keep: Tensor, source: str) -> TabularBenchmark:
        """The table of the rows where keep [N] (bool) is true, in their order, its source `source`
        (e.g. the architectures within a cost budget: every method that draws from the universe then
        draws within it)."""
        keep = torch.as_tensor(keep, dtype=torch.bool)
        if keep.shape != (len(self),):
            raise ValueError(f"{self.name}: keep must be [{len(self)}], got {tuple(keep.shape)}")
        rows = keep.nonzero().flatten()
        return TabularBenchmark(self.name, self.space, self.universe[rows], self.accuracies[rows], self._key,
                                keys=[self._keys[row] for row in rows.tolist()], source=source)

    def best(self) -> tuple[Tensor, float]:
        """The best architecture [T] of the table and its accuracy (%)."""
        row = int(self.accuracies.argmax())
        return self.universe[row], float(self.accuracies[row])


def _read_gzip_csv(path: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    """The named columns of a gzip'd CSV file as lists of strings; GroundTruthError if unreadable."""
    if not path.is_file():
        raise GroundTruthError(f"ground-truth file {path} is missing: reinstall vaenas (it ships as package data)")
    try:
        with gzip.open(path, "rt", newline="") as handle:
            reader = csv.DictReader(handle)
            absent = [c for c in columns if c not in (reader.fieldnames or [])]
            if absent:
                raise GroundTruthError(f"{path}: missing column(s) {', '.join(absent)} (has {reader.fieldnames})")
            table: dict[str, list[str]] = {c: [] for c in columns}
            for line in reader:
                for c in columns:
                    table[c].append(line[c])
    except (OSError, EOFError, zlib.error, csv.Error, UnicodeDecodeError) as error:
        # gzip raises BadGzipFile (an OSError) or EOFError on a truncated file
        raise GroundTruthError(f"{path} is corrupt or not a gzip'd CSV file: {error}") from error
    return table


def _floats(path: Path, column: str, values: list[str]) -> Tensor:
    try:
        return torch.tensor([float(v) for v in values], dtype=torch.float64)
    except ValueError as error:
        raise GroundTruthError(f"{path}: column {column!r} holds a non-number: {error}") from error


def nasbench201(dataset: str = "cifar10", path: Path = NB201_FILE) -> TabularBenchmark:
    """The complete NAS-Bench-201 table: 15,625 cells, 200-epoch test accuracy (%) on `dataset`.

    Rows are in official NAS-Bench-201 index order: universe[i] is the cell of index i.
    """
    if dataset not in NB201_DATASETS:
        close = difflib.get_close_matches(dataset, NB201_DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown NAS-Bench-201 dataset {dataset!r}{hint}: choose one of {', '.join(NB201_DATASETS)}")
    column = NB201_DATASETS[dataset]
    table = _read_gzip_csv(path, ["index", column])
    if len(table["index"]) != NB201_SIZE or table["index"] != [str(i) for i in range(NB201_SIZE)]:
        raise GroundTruthError(f"{path}: expected rows with index 0..{NB201_SIZE - 1} in order")
    accuracy_by_index = _floats(path, column, table[column])

    space = get_space("nasbench201")
    # Enumerate every token string and let the space say which official index each one is, so the
    # table does not depend on how the space orders its operations.
    every_cell = torch.tensor(list(itertools.product(*(range(v) for v in space.vocab_sizes))), dtype=torch.long)
    index = space.index_of(every_cell)
    if sorted(index.tolist()) != list(range(NB201_SIZE)):
        raise GroundTruthError("NASBench201Space.index_of is not a bijection onto 0..15624")
    universe = torch.empty_like(every_cell)
    universe[index] = every_cell
    return TabularBenchmark(
        f"nasbench201-{dataset}", space, universe, accuracy_by_index, key=lambda archs: space.index_of(archs).tolist(),
        source=f"the packaged NAS-Bench-201 table ({dataset}, 200-epoch test accuracy; true for {dataset}'s own images)",
    )


def nasbench101_20k(path: Path = NB101_FILE) -> TabularBenchmark:
    """The 20,001-cell NAS-Bench-101 sample: 108-epoch validation accuracy (%) (the max of 3 repeats).

    The known cells ARE the universe. Cells are found from their hash with
    vaenas.spaces.nasbench101.cells_by_hash() (every cell of the space, cached on disk).
    """
    from vaenas.spaces.nasbench101 import cells_by_hash

    table = _read_gzip_csv(path, ["hash", "val_acc_108ep"])
    if len(table["hash"]) != NB101_SAMPLE_SIZE:
        raise GroundTruthError(f"{path}: expected {NB101_SAMPLE_SIZE} cells, found {len(table['hash'])}")
    accuracies = _floats(path, "val_acc_108ep", table["val_acc_108ep"]) * 100.0
    cells = cells_by_hash()
    unknown = [h for h in table["hash"] if h not in cells]
    if unknown:
        raise GroundTruthError(
            f"{path}: {len(unknown)} hashes are not NAS-Bench-101 cells (first {unknown[0]}); "
            "the cell enumeration or the file is wrong"
        )
    universe = torch.stack([torch.as_tensor(cells[h]).long() for h in table["hash"]])
    space = get_space("nasbench101")
    return TabularBenchmark(
        "nasbench101-20k", space, universe, accuracies, key=space.canonical_key, keys=table["hash"],
        source="the packaged NAS-Bench-101 sample (20,001 cells, cifar10, 108-epoch validation accuracy; true for "
        "cifar10's own images)",
    )


#: names load_benchmark knows; nasbench201 takes a dataset, nasbench101_20k is CIFAR-10 only
BENCHMARKS = ("nasbench201", "nasbench101_20k")


def load_benchmark(name: str, dataset: str = "cifar10") -> TabularBenchmark:
    """The benchmark `name` (one of BENCHMARKS); `dataset` applies to nasbench201 only."""
    if name == "nasbench201":
        return nasbench201(dataset)
    if name == "nasbench101_20k":
        if dataset != "cifar10":
            raise ValueError(f"nasbench101_20k has CIFAR-10 accuracies only, not {dataset!r}")
        return nasbench101_20k()
    close = difflib.get_close_matches(name, BENCHMARKS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown benchmark {name!r}{hint}: choose one of {', '.join(BENCHMARKS)}")


def table_for(space: str, dataset: str) -> TabularBenchmark | None:
    """The packaged table of true accuracies for a search space trained on `dataset`, or None
    where none is packaged (NAS-Bench-201 on cifar10 / cifar100 and on the packaged digits,
    NAS-Bench-101's sample on cifar10)."""
    if space == "nasbench201" and dataset in ("cifar10", "cifar100"):
        return load_benchmark("nasbench201", dataset)
    if space == "nasbench201" and dataset == "digits":  # 100+ cells trained standalone (nb201_digits)
        from vaenas.groundtruth.nb201_digits import nasbench201_digits

        return nasbench201_digits()
    if space == "nasbench101" and dataset == "cifar10":
        return load_benchmark("nasbench101_20k")
    return None


#: the columns of a ground-truth CSV file of one's own (read_table)
TABLE_COLUMNS = ("tokens", "accuracy")


def read_table(path: str | Path, space: SearchSpace) -> TabularBenchmark:
    """A ground-truth table of one's own: a CSV file (gzip'd when it ends in .gz) with the header
    `tokens,accuracy` and one row per architecture of `space`, its tokens space-separated as in
    architecture.json (`3 1 2 1 4 3`; commas and brackets are accepted too) and its accuracy in %.
    GroundTruthError naming the file, the line and the problem."""
    path = Path(path)
    if not path.is_file():
        raise GroundTruthError(f"ground-truth file {path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    rows, accuracies = [], []
    try:
        with opener(path, "rt", newline="") as handle:
            reader = csv.DictReader(handle)
            absent = [c for c in TABLE_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise GroundTruthError(f"{path}: missing column(s) {', '.join(absent)} (the header must be "
                                       f"'tokens,accuracy'; found {reader.fieldnames})")
            for line in reader:
                rows.append(_table_tokens(path, reader.line_num, line["tokens"], space))
                try:
                    accuracies.append(float(line["accuracy"]))
                except (TypeError, ValueError):
                    raise GroundTruthError(f"{path}, line {reader.line_num}: accuracy {line['accuracy']!r} is not a "
                                           "number") from None
    except (OSError, EOFError, zlib.error, csv.Error, UnicodeDecodeError) as error:
        raise GroundTruthError(f"{path} is corrupt or not a CSV file: {error}") from error
    if not rows:
        raise GroundTruthError(f"{path}: no architectures (only a header?)")
    universe = torch.stack(rows)
    return TabularBenchmark(str(path), space, universe, torch.tensor(accuracies, dtype=torch.float64),
                            key=space.canonical_key, source=f"{path} ({len(rows)} architectures)")


def _table_tokens(path: Path, line: int, text: str | None, space: SearchSpace) -> Tensor:
    """The architecture [T] of a `tokens` cell of read_table's file; GroundTruthError naming the line."""
    try:
        tokens = [int(token) for token in (text or "").replace(",", " ").strip("[] ").split()]
        return space.validate(torch.tensor(tokens, dtype=torch.long))
    except ValueError as error:
        raise GroundTruthError(f"{path}, line {line}: tokens {text!r} are not an architecture of {space.name}: "
                               f"{error}") from None


def ground_truth(setting: str, space: str, dataset: str) -> TabularBenchmark | None:
    """The table a search reports true accuracies from: `setting` auto (table_for(space, dataset)),
    none (None) or the path of a CSV file of one's own (read_table)."""
    if setting == "none":
        return None
    if setting == "auto":
        return table_for(space, dataset)
    return read_table(setting, get_space(space))

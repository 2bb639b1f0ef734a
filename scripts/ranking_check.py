"""The ranking check of issue 18 (driven by scripts/ranking_check.sh): how well finished one-shot
runs rank the ground-truth cells, and how good the architectures they return truly are.

For every run folder (named METHOD-SEED, e.g. spos-0, vaenas-3): the final supernet is restored
from the run's last checkpoint and scores every cell of the ground-truth table exactly as the
search scores candidates (OneShotSearch.score: BN recalibrated per architecture, held-out images);
then Kendall τ, Spearman, τ within the true top half and precision@10 against the table
(vaenas.groundtruth.ranking.rank_against), and the true percentile among the table's cells of the
architecture each evolution returned (architecture.json). A returned architecture the table does
not hold is trained standalone with the table's recipe at seed 0 (cached in OUT/standalone.json).
Prints mean ± standard error over seeds per method and writes OUT/ranking.json and OUT/ranking.md.

    python scripts/ranking_check.py runs/ranking-check/spos-* runs/ranking-check/vaenas-* --out runs/ranking-check
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import torch

from vaenas.config import load_config
from vaenas.data import build_search_data
from vaenas.groundtruth import table_for
from vaenas.groundtruth.nb201_digits import digits_tensors, read_recipe, seed_pairs, train_standalone
from vaenas.groundtruth.ranking import kendall_tau, mean_and_standard_error, rank_against, true_percentile
from vaenas.runtime import RunFolder, load_checkpoint
from vaenas.search.oneshot.config import OneShotConfig
from vaenas.search.oneshot.search import OneShotSearch

METRICS = ("kendall_tau", "spearman", "top_half_kendall_tau", "precision_at_k")


def restore(run_dir: Path) -> OneShotSearch:
    """The run's OneShotSearch with the state of its last checkpoint (trained supernet, evolutions)."""
    config = load_config(run_dir / "config.yaml", [], cls=OneShotConfig)
    torch.set_num_threads(config.train.threads or torch.get_num_threads())
    search = OneShotSearch(config, build_search_data(config.data), torch.device("cpu"))
    latest = RunFolder(run_dir).latest_checkpoint()
    if latest is None:
        raise SystemExit(f"{run_dir}: no checkpoint (did the run finish?)")
    search.load_state_dict(load_checkpoint(latest)["state"])
    return search


class TrueAccuracy:
    """True accuracy of an NB201 cell: the table's, else a standalone training (cached on disk)."""

    def __init__(self, table, cache_path: Path) -> None:
        self.table, self.cache_path = table, cache_path
        self.cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        self.recipe = read_recipe()
        self.data = None

    def __call__(self, tokens: list[int]) -> tuple[float, str]:
        arch = torch.tensor(tokens)
        if bool(self.table.contains(arch[None])[0]):
            return float(self.table.accuracy(arch[None])[0]), "table"
        key = self.table.space.to_arch_str(arch)
        if key not in self.cache:
            self.data = self.data or digits_tensors(self.recipe.image_size)
            started = time.process_time()
            self.cache[key] = train_standalone(arch, self.recipe, 0, self.data)
            print(f"  trained {key} standalone: {self.cache[key]:.2f} % ({time.process_time() - started:.0f} s CPU)",
                  flush=True)
            self.cache_path.write_text(json.dumps(self.cache, indent=1) + "\n")
        return self.cache[key], "standalone"


def check_run(run_dir: Path, true_accuracy: TrueAccuracy) -> dict:
    search = restore(run_dir)
    table = true_accuracy.table
    record = {"run": run_dir.name, **rank_against(search.score, table.universe, table.accuracies)}
    summary = json.loads((run_dir / "architecture.json").read_text())
    for seeding, entry in summary["evolutions"].items():
        accuracy, source = true_accuracy(entry["tokens"])
        record[f"found_{seeding}"] = {"tokens": entry["tokens"], "true_accuracy": accuracy, "source": source,
                                      "percentile": true_percentile(accuracy, table.accuracies)}
    return record


def method_of(run_name: str) -> str:
    match = re.fullmatch(r"(.+)-(\d+)", run_name)
    return match.group(1) if match else run_name


def _cell(values: list[float], digits: int) -> str:
    mean, error = mean_and_standard_error(values)
    return f"{mean:.{digits}f} ± {error:.{digits}f} (n={len(values)})"


def markdown(records: list[dict]) -> str:
    by_method: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_method[method_of(record["run"])].append(record)
    seedings = sorted({key for r in records for key in r if key.startswith("found_")})
    header = ["method", "τ", "Spearman", "τ true top half", "precision@10",
              *(f"percentile of found ({s[len('found_'):]}-seeded)" for s in seedings)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method, rows in by_method.items():
        cells = [_cell([r[m] for r in rows], 3) for m in METRICS]
        for seeding in seedings:
            found = [r[seeding]["percentile"] for r in rows if seeding in r]
            cells.append(_cell(found, 1) if found else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    first, second = seed_pairs()
    lines += ["", f"mean ± standard error over seeds; ceiling: seed-to-seed τ of standalone training "
              f"{kendall_tau(first, second):.3f} ({len(first)} cells trained twice)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished one-shot run folders named METHOD-SEED")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.runs[0] / "config.yaml", [], cls=OneShotConfig)
    table = table_for(config.space, config.data.name)
    if table is None:
        raise SystemExit(f"no ground-truth table for {config.space} on {config.data.name}")
    recipe = read_recipe()
    shape = {"channels": recipe.channels, "cells_per_stage": recipe.cells_per_stage}
    network = {key: config.supernet.options(config.space)[key] for key in shape}  # cell_affine: training only
    if network != shape or config.data.size != recipe.image_size:
        print(f"warning: the runs' supernet {network} at {config.data.size} px is not "
              f"the network the ground truth trained ({shape} at {recipe.image_size} px)", flush=True)
    true_accuracy = TrueAccuracy(table, args.out / "standalone.json")
    records = []
    for run_dir in args.runs:
        records.append(check_run(run_dir, true_accuracy))
        print(json.dumps(records[-1]), flush=True)
    (args.out / "ranking.json").write_text(json.dumps(records, indent=1) + "\n")
    report = markdown(records)
    (args.out / "ranking.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()

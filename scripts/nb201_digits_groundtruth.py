"""Generate the packaged NAS-Bench-201 digits ground truth (vaenas/groundtruth/nb201_digits.csv.gz
and nb201_digits.json): CELLS cells drawn uniformly (seeded, distinct), each trained standalone
with vaenas.groundtruth.nb201_digits.DigitsRecipe at seed 0, the first REPEAT of them again at
seed 1 (the noise floor).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 10 python scripts/nb201_digits_groundtruth.py \
        --cells 100 --repeat 20 --work runs/nb201-digits-groundtruth

Every finished training is appended to WORK/trainings.csv, so an interrupted run continues where
it stopped; at the end the table and the JSON side file are written (--table, --recipe-file; by
default the packaged files). --time-one trains the first cell once and prints its CPU time.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import platform
import time
from pathlib import Path

import torch

from vaenas.groundtruth.nb201_digits import RECIPE_FILE, TABLE_FILE, DigitsRecipe, digits_tensors, train_standalone
from vaenas.groundtruth.ranking import kendall_tau, spearman
from vaenas.spaces import get_space
from vaenas.spaces.nasbench201 import EDGES, OPS

#: seed of the cell draw (torch.Generator)
DRAW_SEED = 18
EDGE_COLUMNS = [f"op_e{s}{t}" for s, t in EDGES]


def draw_cells(count: int, seed: int = DRAW_SEED) -> torch.Tensor:
    """`count` distinct NB201 cells [count, 6], drawn uniformly with a seeded generator, in draw order."""
    space = get_space("nasbench201")
    generator = torch.Generator().manual_seed(seed)
    rows, seen = [], set()
    while len(rows) < count:
        for row in space.sample(count, generator).tolist():
            if tuple(row) not in seen and len(rows) < count:
                seen.add(tuple(row))
                rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def done_trainings(path: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """(arch_str, seed) -> (accuracy, cpu seconds) of the trainings already in WORK/trainings.csv."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {(r["arch_str"], int(r["seed"])): (float(r["accuracy"]), float(r["cpu_s"])) for r in csv.DictReader(handle)}


def train_all(cells: torch.Tensor, repeat: int, recipe: DigitsRecipe, work: Path) -> dict:
    space = get_space("nasbench201")
    log = work / "trainings.csv"
    done = done_trainings(log)
    data = digits_tensors(recipe.image_size)
    jobs = [(cell, 0) for cell in cells] + [(cell, 1) for cell in cells[:repeat]]
    new_file = not log.is_file()
    with log.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(["arch_str", "seed", "accuracy", "cpu_s"])
        for number, (cell, seed) in enumerate(jobs, start=1):
            arch_str = space.to_arch_str(cell)
            if (arch_str, seed) in done:
                continue
            started = time.process_time()
            accuracy = train_standalone(cell, recipe, seed, data)
            seconds = time.process_time() - started
            done[(arch_str, seed)] = (accuracy, seconds)
            writer.writerow([arch_str, seed, f"{accuracy:.4f}", f"{seconds:.1f}"])
            handle.flush()
            print(f"{number}/{len(jobs)} {arch_str} seed {seed}: {accuracy:.2f} % ({seconds:.0f} s CPU)", flush=True)
    return done


def table_bytes(cells: torch.Tensor, done: dict) -> bytes:
    """The gzip'd CSV (mtime 0, so the bytes depend on the content only)."""
    space = get_space("nasbench201")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "arch_str", *EDGE_COLUMNS, "acc_seed0", "acc_seed1"])
    for cell in cells:
        arch_str = space.to_arch_str(cell)
        second = done.get((arch_str, 1))
        writer.writerow([int(space.index_of(cell[None])[0]), arch_str, *(OPS[t] for t in cell.tolist()),
                         f"{done[(arch_str, 0)][0]:.4f}", "" if second is None else f"{second[0]:.4f}"])
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(text.getvalue().encode())
    return buffer.getvalue()


def side_file(cells: torch.Tensor, repeat: int, recipe: DigitsRecipe, done: dict) -> dict:
    space = get_space("nasbench201")
    names = [space.to_arch_str(cell) for cell in cells]
    first = torch.tensor([done[(n, 0)][0] for n in names], dtype=torch.float64)
    pairs = [(done[(n, 0)][0], done[(n, 1)][0]) for n in names[:repeat]]
    a, b = (torch.tensor([p[i] for p in pairs], dtype=torch.float64) for i in (0, 1))
    return {
        "recipe": recipe.to_json(),
        "cells": len(cells), "draw": f"vaenas NASBench201Space.sample, torch.Generator seed {DRAW_SEED}, distinct, in order",
        "second_seed_cells": repeat,
        "accuracy_seed0": {"mean": round(float(first.mean()), 3), "std": round(float(first.std()), 3),
                           "min": round(float(first.min()), 3), "max": round(float(first.max()), 3),
                           "quartiles": [round(float(q), 3) for q in torch.quantile(first, torch.tensor(
                               [0.25, 0.5, 0.75], dtype=torch.float64))]},
        "seed_to_seed": {"kendall_tau": round(kendall_tau(a, b), 4), "spearman": round(spearman(a, b), 4),
                         "mean_abs_difference": round(float((a - b).abs().mean()), 3)},
        "cpu_seconds_total": round(sum(v[1] for v in done.values()), 1),
        "cpu_seconds_per_training": round(sum(v[1] for v in done.values()) / len(done), 1),
        "generated_with": {"torch": torch.__version__, "python": platform.python_version(),
                           "machine": platform.machine(), "threads": torch.get_num_threads()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20, help="cells trained again at seed 1")
    parser.add_argument("--work", default="runs/nb201-digits-groundtruth")
    parser.add_argument("--table", default=str(TABLE_FILE))
    parser.add_argument("--recipe-file", default=str(RECIPE_FILE))
    parser.add_argument("--time-one", action="store_true", help="train the first cell once, print its CPU time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = DigitsRecipe()
    cells = draw_cells(args.cells)
    if args.time_one:
        started = time.process_time()
        accuracy = train_standalone(cells[0], recipe, 0)
        print(f"{get_space('nasbench201').to_arch_str(cells[0])}: {accuracy:.2f} %, "
              f"{time.process_time() - started:.1f} s CPU")
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    done = train_all(cells, args.repeat, recipe, work)
    Path(args.table).write_bytes(table_bytes(cells, done))
    Path(args.recipe_file).write_text(json.dumps(side_file(cells, args.repeat, recipe, done), indent=2) + "\n")
    print(json.dumps(side_file(cells, args.repeat, recipe, done)["seed_to_seed"]))


if __name__ == "__main__":
    main()

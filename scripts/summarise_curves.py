"""Summarise scripts/supernet_curves.py output: the mean training loss per window of steps, per variant.

    python scripts/summarise_curves.py runs/curves-1-depth/curves.csv [--window 100]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", nargs="+")
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    losses: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in args.curves:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                losses[row["variant"]][(int(row["step"]) - 1) // args.window].append(float(row["loss"]))
    windows = sorted({w for per in losses.values() for w in per})
    print("| variant | " + " | ".join(f"{w * args.window + 1}-{(w + 1) * args.window}" for w in windows) + " |")
    print("|---|" + "---:|" * len(windows))
    for name, per in losses.items():
        cells = [f"{sum(per[w]) / len(per[w]):.3f}" if per.get(w) else "" for w in windows]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

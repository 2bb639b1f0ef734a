"""The outputs of a finished retraining: results.json, report.md and the learning curves (curves.png).

The final accuracies are those of the last epoch's evaluation (metrics.jsonl); the cost is the deployed
network's (vaenas.train.network.deployed_cost); for NAS-Bench-201 and NAS-Bench-101 cells the packaged
ground-truth table's accuracy of the same cell stands beside the retrained one (the benchmark's 200-epoch
test accuracy, mean of its seeds; NAS-Bench-101's 108-epoch validation accuracy of its 20k sample).
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
from pathlib import Path
from typing import Any

from vaenas.groundtruth import GroundTruthError, table_for
from vaenas.groundtruth.tables import NB101_FILE
from vaenas.runtime import write_atomic
from vaenas.runtime.plots import pyplot, save_figure
from vaenas.train.architecture import Architecture

logger = logging.getLogger(__name__)

#: what each evaluation set is, for the report
SET_NAMES = {"test": "test", "valid": "held-out (validation)"}
#: which retrained accuracy a space's ground truth is comparable with, and what the table holds
GROUND_TRUTH = {
    "nasbench201": ("test", "NAS-Bench-201: test accuracy after 200 epochs, mean of its seeds"),
    "nasbench101": ("valid", "NAS-Bench-101: validation accuracy after 108 epochs (its 20k-cell sample)"),
}


def ground_truth(architecture: Architecture, dataset: str) -> dict[str, Any] | None:
    """{"accuracy" (%), "compare_with" (test or valid), "what"} of the packaged table for this cell, or None
    where there is no table for the space and dataset or the table lacks the cell."""
    if architecture.space not in GROUND_TRUTH:
        return None
    arch = architecture.tensor()[None]
    try:
        if architecture.space == "nasbench101":
            accuracy = nasbench101_accuracy(architecture.search_space().canonical_key(arch)[0], dataset)
        else:
            table = table_for(architecture.space, dataset)
            accuracy = float(table.accuracy(arch)[0]) if table is not None and bool(table.contains(arch)[0]) else None
    except (GroundTruthError, OSError, EOFError, csv.Error, ValueError) as error:  # the report stands without it
        logger.warning("no ground truth in the report: %s", error)
        return None
    if accuracy is None:
        return None
    compare_with, what = GROUND_TRUTH[architecture.space]
    return {"accuracy": accuracy, "compare_with": compare_with, "what": f"{what}, {dataset}"}


def nasbench101_accuracy(cell_hash: str, dataset: str) -> float | None:
    """The 108-epoch validation accuracy (%) of the cell with this NAS-Bench-101 hash in the packaged 20k
    sample (cifar10), or None. One pass over the file's rows (0.1 s) instead of vaenas.groundtruth's
    table, which first enumerates every cell of the space to key its rows (7 s with the enumeration
    cached on disk, 30 s without, on a loaded 2-core machine) to answer the same question."""
    if dataset != "cifar10":
        return None
    with gzip.open(NB101_FILE, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["hash"] == cell_hash:
                return float(row["val_acc_108ep"]) * 100.0
    return None


def final_results(records: list[dict[str, Any]]) -> dict[str, Any]:
    """{"<set>": {"top1", "top5", "loss", "images"}, "ema_<set>": ...} of the last evaluated epoch record."""
    evaluated = [r for r in records if r.get("event") == "epoch" and "test_top1" in r]
    if not evaluated:
        return {}
    last = evaluated[-1]
    results: dict[str, Any] = {}
    for key, value in last.items():
        for metric in ("top1", "top5", "loss", "images"):
            if key.endswith(f"_{metric}") and not key.startswith("train_"):
                results.setdefault(key[: -len(metric) - 1], {})[metric] = value
    return results


def write_curves(run_dir: Path, records: list[dict[str, Any]]) -> str | None:
    """curves.png: loss and top-1 per epoch (training, and each evaluation set); its file name, or None."""
    epochs = [r for r in records if r.get("event") == "epoch"]
    if not epochs:
        return None
    plt = pyplot()
    figure, (losses, accuracies) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label in (("train", "training"), ("test", "test"), ("valid", "held-out"),
                       ("ema_test", "test, EMA weights")):
        for axis, metric in ((losses, "loss"), (accuracies, "top1")):
            points = [(r["epoch"], r[f"{key}_{metric}"]) for r in epochs if f"{key}_{metric}" in r]
            if points:
                axis.plot(*zip(*points), "-" if key == "train" else "o-", markersize=3, label=label)
    losses.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracies.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    accuracies.legend(fontsize=7)
    return save_figure(figure, run_dir / "curves.png")


def summary(architecture: Architecture, results: dict[str, Any], cost: dict[str, float], facts: dict[str, Any],
            truth: dict[str, Any] | None) -> dict[str, Any]:
    """What results.json holds."""
    return {"space": architecture.space, "tokens": list(architecture.tokens), "source": architecture.source,
            "architecture": architecture.search_space().to_json(architecture.tensor()), "results": results,
            "cost": cost, "ground_truth": truth, **facts}


def markdown(document: dict[str, Any], run_dir: Path) -> str:
    """The report printed at the end and written to report.md, from results.json's document."""
    facts = document
    cost = document["cost"]
    lines = [
        f"# Retraining of a {document['space']} architecture (recipe {facts['recipe']})", "",
        f"architecture `{document['tokens']}` from {document['source']}",
        f"  {json.dumps(document['architecture'])}",
        f"network: {facts['network']} at {facts['image_size']} px; {cost['params'] / 1e6:.3f} M parameters, "
        f"{cost['flops'] / 2e6:.1f} M multiply-adds per image"
        + (" (as deployed: without the auxiliary head)" if facts["network"].get("auxiliary") else ""),
        f"trained {facts['epochs']} epochs ({facts['steps']} steps of a global batch of {facts['batch_size']} on "
        f"{facts['processes']} process(es), {facts['device']}); training wall time {facts['seconds']:.0f} s", "",
        "| evaluated on | images | top-1 % | top-5 % | loss |", "|---|---:|---:|---:|---:|",
    ]
    for name, result in document["results"].items():
        where = SET_NAMES.get(name.removeprefix("ema_"), name) + (", EMA weights" if name.startswith("ema_") else "")
        if name.removeprefix("ema_") == "test" and facts["test_is_holdout"]:
            where += " (the held-out training images: digits has no test split)"
        lines.append(f"| {where} | {result['images']} | {result['top1']:.2f} | {result['top5']:.2f} | "
                     f"{result['loss']:.4f} |")
    truth = document.get("ground_truth")
    if truth is not None:
        ours = document["results"].get(truth["compare_with"], {}).get("top1")
        mine = f"{ours:.2f} %" if ours is not None else "not evaluated"
        lines += ["", f"ground truth ({truth['what']}): {truth['accuracy']:.2f} %; this run's "
                      f"{SET_NAMES[truth['compare_with']]} top-1: {mine}"]
    lines += ["", f"learning curves: curves.png; weights: model.pt; run folder {run_dir}"]
    return "\n".join(lines)


def write_report(run_dir: Path, document: dict[str, Any]) -> str:
    """results.json, curves.png and report.md in run_dir (atomically); returns the report."""
    write_atomic(run_dir / "results.json", json.dumps(document, indent=2) + "\n")
    report = markdown(document, run_dir)
    write_atomic(run_dir / "report.md", report + "\n")
    return report

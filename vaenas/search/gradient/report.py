"""The report of a gradient search run: diversity.png and report.md (VAE vs softmax sampling)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaenas.runtime.plots import pyplot, save_figure
from vaenas.search.gradient.search import PATH_WINDOW
from vaenas.search.oneshot.report import network_cost, skipped_line


def plot_diversity(path: Path, runs: dict[str, list[dict[str, float]]], max_entropy: float) -> Any:
    """diversity.png: mean entropy of softmax(w), per-position entropy of the recent paths, and
    distinct architectures trained, per run (label -> curve)."""
    plt = pyplot()
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.4))
    for label, curve in runs.items():
        steps = [point["step"] for point in curve]
        left.plot(steps, [point["entropy"] for point in curve], label=label)
        middle.plot(steps, [point["path_entropy"] for point in curve], label=label)
        right.plot(steps, [point["distinct"] for point in curve], label=label)
    for axis in (left, middle):
        axis.axhline(max_entropy, color="grey", linestyle=":", linewidth=1, label="maximum: uniform over each position")
    left.set(xlabel="iteration", ylabel="mean entropy of softmax(w) (nats)", title="architecture distribution")
    middle.set(xlabel="iteration", ylabel="mean per-position entropy (nats)",
               title=f"ops of the last {PATH_WINDOW} paths trained (all of them before step {PATH_WINDOW})")
    middle.title.set_fontsize(9)
    right.set(xlabel="iteration", ylabel="distinct architectures trained", title="diversity of trained paths")
    left.legend(fontsize=7)
    middle.legend(fontsize=7)
    save_figure(fig, path)
    return fig


def report(summary: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    lines = [f"# Gradient VAENAS ({summary['sampling']} sampling, mode {summary['mode']})", "",
             f"found architecture: {json.dumps(summary['architecture'])}",
             f"tokens: {summary['tokens']}" + (f" (repaired positions {summary['repaired_positions']})"
                                               if summary["repaired_positions"] else ""),
             f"supernet accuracy (held-out): {summary['supernet_score']:.2f} %",
             f"exported network (child.pt): {network_cost(summary)}", *skipped_line(summary),
             "", "| sampling | steps | final entropy of softmax(w) (max) | entropy of the last 50 paths' ops "
             "| distinct architectures trained | supernet acc. |",
             "|---|---|---|---|---|---|"]
    for entry in [summary] + ([baseline] if baseline else []):
        lines.append(f"| {entry['sampling']} | {entry['steps']} | {entry['entropy']:.3f} ({entry['max_entropy']:.3f}) "
                     f"| {entry['curve'][-1]['path_entropy']:.3f} | {entry['distinct_trained']} "
                     f"| {entry['supernet_score']:.2f} % |")
    lines.append(f"\n{summary['seconds']:.0f} s")
    return "\n".join(lines)

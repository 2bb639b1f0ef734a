"""Plots (PNG, matplotlib Agg) and the markdown report of a one-shot search run.

- refits.png: supernet accuracy of pure-VAE vs pure-uniform samples at each refit (the paper's
  Fig. 2 measured on the supernet), mean and max;
- epsilon.png: the ε schedule of Γ = (1-ε)U + ε·VAE over training steps;
- evolution.png: best supernet score per generation, VAE-seeded vs uniformly seeded;
- cost.png: supernet accuracy against FLOPs of the final population, the budget drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vaenas.runtime.plots import pyplot, save_figure


def write_plots(run_dir: Path, refits: list[dict], epsilons: list, summary: dict[str, Any]) -> list[str]:
    """The three PNGs in run_dir; returns their file names."""
    plt = pyplot()
    names = []
    if any("vae_mean" in r for r in refits):
        names.append(save_figure(plot_refits(refits), run_dir / "refits.png"))
    if epsilons:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([e[0] for e in epsilons], [e[1] for e in epsilons])
        ax.set(xlabel="training step", ylabel="ε", title="Γ = (1-ε)U + ε·VAE", ylim=(0, 1.02))
        names.append(save_figure(fig, run_dir / "epsilon.png"))
    if summary.get("evolutions"):
        names.append(save_figure(plot_evolution(summary), run_dir / "evolution.png"))
    return names


def plot_accuracy_vs_cost(populations: dict[str, tuple[list[float], list[float]]], bounds: dict[str, float | None],
                          found: tuple[float, float] | None = None) -> Any:
    """cost.png: supernet accuracy against FLOPs of every architecture the final evolutions scored
    (populations: seeding -> (FLOPs, accuracies)), search.min_flops / max_flops drawn as lines, the
    found architecture (FLOPs, accuracy) marked."""
    fig, ax = pyplot().subplots(figsize=(5, 3.4))
    for seeding, (flops, scores) in populations.items():
        ax.scatter(flops, scores, s=12, alpha=0.6, label=f"{seeding}-seeded")
    for name, style in (("min_flops", ":"), ("max_flops", "--")):
        if bounds.get(name) is not None:
            ax.axvline(bounds[name], color="red", linestyle=style, label=f"search.{name}")
    if found is not None:
        ax.scatter([found[0]], [found[1]], marker="*", s=120, color="black", label="found", zorder=3)
    ax.set(xlabel="FLOPs of the exported network (one image)", ylabel="supernet accuracy (%)",
           title="final population: accuracy against cost")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_refits(refits: list[dict]) -> Any:
    """refits.png: supernet accuracy of pure-VAE vs pure-uniform samples at each refit (Fig. 2 on the supernet)."""
    compared = [r for r in refits if "vae_mean" in r]
    fig, ax = pyplot().subplots(figsize=(5, 3.2))
    steps = [r["step"] for r in compared]
    ax.plot(steps, [r["vae_mean"] for r in compared], "o-", label="VAE samples (mean)")
    ax.plot(steps, [r["uniform_mean"] for r in compared], "s-", label="uniform samples (mean)")
    ax.plot(steps, [r["vae_max"] for r in compared], "o--", alpha=0.5, label="VAE (max)")
    ax.plot(steps, [r["uniform_max"] for r in compared], "s--", alpha=0.5, label="uniform (max)")
    ax.set(xlabel="training step (refit)", ylabel="supernet accuracy (%)", title="VAE vs uniform samples")
    ax.legend(fontsize=7)
    # what the comparison cannot separate: the sampler's choice from the supernet's training on it
    fig.text(0.01, 0.005, "VAE samples score higher partly because, as ε grows, the supernet trains mostly on them",
             fontsize=6, color="dimgrey")
    return fig


def plot_evolution(summary: dict[str, Any]) -> Any:
    """evolution.png: best supernet accuracy per generation of each seeding, with the standard error
    of an accuracy measured on the held-out images (binomial: sqrt(p (1 - p) / n))."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = pyplot().subplots(figsize=(5, 3.2))
    images = summary.get("holdout_images")
    for seeding, entry in summary["evolutions"].items():
        generations = list(range(len(entry["curve"])))
        line, = ax.plot(generations, entry["curve"], "o-", label=f"{seeding}-seeded")
        if images:
            error = [100 * math.sqrt(max(p / 100 * (1 - p / 100), 0.0) / images) for p in entry["curve"]]
            ax.fill_between(generations, [p - e for p, e in zip(entry["curve"], error)],
                            [p + e for p, e in zip(entry["curve"], error)], color=line.get_color(), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="generation (0 = seeds)", ylabel="best supernet accuracy (%)",
           title="evolution" + (f" (band: ± standard error on {images} held-out images)" if images else ""))
    ax.title.set_fontsize(8)
    ax.legend(fontsize=8)
    return fig


def _f(value: Any, digits: int = 2) -> str:
    """value with `digits` decimals for a report table; '–' for None or nan."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def network_cost(summary: dict[str, Any]) -> str:
    """'params P, FLOPs F (one image at S px)' of the exported network a summary describes."""
    cost, network = summary["cost"], summary["network"]
    size = network["image_size"]
    latency = f", latency {cost['latency_ms']:.3g} ms (search.latency_table)" if "latency_ms" in cost else ""
    return f"params {cost['params']:.0f}, FLOPs {cost['flops']:.3g} (one {size}x{size} image){latency}"


def skipped_line(summary: dict[str, Any]) -> list[str]:
    """The report's line on the image files skipped as undecodable (data.skip_corrupt), if any were."""
    skipped = summary.get("skipped_images")
    if not skipped:
        return []
    return [f"skipped images (data.skip_corrupt): {skipped['count']} undecodable file(s)"
            + (f", e.g. {skipped['files'][0]}; all are listed in architecture.json" if skipped["count"] else "")]


def ground_truth_line(summary: dict[str, Any]) -> str:
    """Where the report's true accuracies and τ come from, and how to change it."""
    if "ground_truth" not in summary:
        return "  ground truth: none (no table for this space and data, or search.ground_truth=none)"
    return (f"  ground truth (true accuracy, τ): {summary['ground_truth']} "
            "(search.ground_truth=none turns it off; a CSV of tokens and accuracy gives your own)")


def true_cell(entry: dict[str, Any]) -> str:
    """'96.90 (85)': an evolution's best architecture's true accuracy and its percentile in the table;
    '–' where the table does not hold it."""
    if "best_true" not in entry:
        return "–"
    return f"{_f(entry['best_true'])} ({entry['best_true_percentile']:.0f})"


def table_ranking_line(summary: dict[str, Any]) -> list[str]:
    """The final supernet's ranking of the ground truth's architectures (search.ranked_cells), if any."""
    r = summary.get("table_ranking")
    if r is None:
        return []
    return [f"  final supernet against the ground truth ({r['architectures']} architectures): Kendall τ "
            f"{_f(r['kendall_tau'], 3)}, Spearman {_f(r['spearman'], 3)}, τ in the true top half "
            f"{_f(r['top_half_kendall_tau'], 3)}, precision@10 {_f(r['precision_at_k'], 2)}"]


def markdown(summary: dict[str, Any], refits: list[dict], wall_seconds: float, run_dir: Path) -> str:
    """The short report printed at the end and written to report.md."""
    lines = [
        "# One-shot VAENAS (Algorithm 2)", "",
        f"found architecture ({summary['found_by']}-seeded evolution): `{summary['tokens']}`",
        f"  {summary['architecture']}",
        f"  supernet accuracy {_f(summary['supernet_score'])} %; exported network (child.pt): "
        f"{network_cost(summary)}",
    ]
    if "true_accuracy" in summary:
        lines.append(f"  true accuracy {_f(summary['true_accuracy'])} % (best in the table {_f(summary['table_best'])} %)")
    lines.append(ground_truth_line(summary))
    lines += table_ranking_line(summary)
    lines += skipped_line(summary)
    lines += ["", "## Supernet accuracy of VAE vs uniform samples at each refit (Fig. 2 on the supernet)", "",
              "| step | ε | Γ samples mean / max | VAE mean / max | uniform mean / max | τ (true) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in refits:
        lines.append(
            f"| {r['step']} | {r['epsilon']:.3f} | {_f(r['score_mean'])} / {_f(r['score_max'])} | "
            f"{_f(r.get('vae_mean'))} / {_f(r.get('vae_max'))} | {_f(r.get('uniform_mean'))} / {_f(r.get('uniform_max'))}"
            f" | {_f(r.get('kendall_tau'), 3)} |"
        )
    lines += ["", "## Final evolution: VAE-seeded vs uniformly seeded", "",
              "| seeding | best supernet acc. | evaluated | best per generation | true acc. (percentile) | τ (true) |",
              "|---|---:|---:|---|---:|---:|"]
    for seeding, entry in summary["evolutions"].items():
        curve = " → ".join(_f(c, 1) for c in entry["curve"])
        lines.append(f"| {seeding} | {_f(entry['best_score'])} | {entry['evaluated']} | {curve} | "
                     f"{true_cell(entry)} | {_f(entry.get('kendall_tau'), 3)} |")
    lines += ["", f"wall time {wall_seconds:.0f} s; run folder {run_dir}"]
    return "\n".join(lines)

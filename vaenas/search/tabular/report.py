"""The outputs of a tabular study run: results.md (Table 4, seeded evolution, any-time tables paired
with regularized evolution, where the VAENAS loop's queries went), curves.csv, max_of_k.csv,
best_architectures.json and the figures (anytime.png, seeded_evolution.png, histogram.png)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import yaml

from vaenas.config import to_dict
from vaenas.groundtruth import TabularBenchmark
from vaenas.runtime import write_atomic
from vaenas.runtime.plots import pyplot, save_figure
from vaenas.search.tabular.config import TabularConfig
from vaenas.search.tabular.results import Curve, Found, LoopRound, SeedResult, vae_label

logger = logging.getLogger(__name__)


def _mean_std(values: list[float]) -> tuple[float, float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    return float(tensor.mean()), float(tensor.std()) if len(values) > 1 else 0.0


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean, std = _mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _curves_by(results: list[SeedResult], part: str) -> dict[tuple[str, float], list[list[float]]]:
    grouped: dict[tuple[str, float], list[list[float]]] = defaultdict(list)
    for result in results:
        for curve in result.curves:
            if curve.part == part:
                grouped[(curve.method, curve.noise)].append(curve.best)
    return grouped


def _at(curve: list[float], budget: int) -> float:
    return curve[min(budget, len(curve)) - 1]


def markdown_report(
    config: TabularConfig, benchmark: TabularBenchmark, results: list[SeedResult], elapsed_s: float
) -> str:
    """results.md: Table 4 (max of K samples and seeded evolution), evolution VAE vs uniform, any-time."""
    _, table_best = benchmark.best()
    seeds = [r.seed for r in results]
    parts = [
        f"# Tabular VAENAS study: {benchmark.name}",
        "",
        f"{len(benchmark):,} architectures with ground truth (best {table_best:.2f} %); seeds {seeds}; "
        f"mean ± std over seeds; wall time {elapsed_s:.0f} s. Every number is a TRUE accuracy (%).",
        "",
    ]
    if benchmark.source != benchmark.name:  # restricted to the cost bounds (vaenas.search.tabular.cost_bounds)
        parts[2:2] = [f"Cost bounds: every method searched {benchmark.source}.", ""]
    if config.study.enabled:
        parts += _paper_protocol_report(config, results)
    if config.anytime.enabled:
        parts += _anytime_report(config, results)
    return "\n".join(parts)


def _paper_protocol_report(config: TabularConfig, results: list[SeedResult]) -> list[str]:
    study, evolution = config.study, config.evolution
    parts = [
        f"The VAE is fitted on the top {study.top_fraction:g} of {study.n_train} architectures drawn uniformly "
        "from the universe, ranked by accuracy + Gaussian noise.",
        "",
        f"## Best accuracy among K samples (paper Table 4); evolution: {evolution.budget} queries",
        "",
    ]
    by_key: dict[tuple[str, float, int], list[float]] = defaultdict(list)
    for result in results:
        for sampler, noise, k, best in result.max_of_k:
            by_key[(sampler, noise, k)].append(best)
    evolution_curves = _curves_by(results, "seeded_evolution")
    final = {key: [c[-1] for c in curves] for key, curves in evolution_curves.items()}
    rows = [["Random (uniform)"] + [_cell(by_key[("uniform", 0.0, k)]) for k in study.ks]
            + [_cell(final.get(("evolution_uniform_seeds", study.noise[0]), []))]]
    for noise in study.noise:
        rows.append([vae_label(noise)] + [_cell(by_key[("vae", noise, k)]) for k in study.ks]
                    + [_cell(final.get(("evolution_vae_seeds", noise), []))])
    parts += [_table(["sampler"] + [f"K={k}" for k in study.ks] + ["evolution"], rows), ""]
    if study.noise[0] != 0.0:
        parts += [f"(the Random row's evolution sees noise {study.noise[0]:g} %, like the first VAE row)", ""]

    parts += [
        f"## SPOS evolution seeded by the VAE vs uniformly ({evolution.budget} queries, population "
        f"{evolution.population}, top-{evolution.parents}; the noise is also on the evolution's fitness)",
        "",
    ]
    budgets = sorted({b for b in (evolution.population, evolution.budget // 2, evolution.budget) if b >= 1})
    rows = []
    for noise in study.noise:
        for method, label in (("evolution_vae_seeds", "VAE seeds"), ("evolution_uniform_seeds", "uniform seeds")):
            curves = evolution_curves.get((method, noise), [])
            rows.append([f"{label}, noise {noise:g} %"] + [_cell([_at(c, b) for c in curves]) for b in budgets])
    parts += [_table(["seeds"] + [f"{b} queries" for b in budgets], rows), ""]
    return parts


#: the any-time method every other is compared with, seed by seed
_REFERENCE_METHOD = "regularized_evolution"


def _anytime_report(config: TabularConfig, results: list[SeedResult]) -> list[str]:
    """Any-time table (with wall time), differences paired by seed, and the VAENAS loop's rounds."""
    anytime = config.anytime
    by_method: dict[str, list[Curve]] = defaultdict(list)
    for result in results:
        for curve in result.curves:
            if curve.part == "anytime":
                by_method[curve.method].append(curve)
    budgets = [b for b in anytime.report_at if b <= anytime.budget] or [anytime.budget]
    parts = [f"## Any-time: best accuracy found vs distinct queries (noise {anytime.noise:g} %)", ""]
    rows = [[method] + [_cell([_at(c.best, b) for c in curves]) for b in budgets]
            + [f"{sum(c.seconds for c in curves) / len(curves):.1f} s"] for method, curves in by_method.items()]
    parts += [_table(["method"] + [f"{b} queries" for b in budgets] + ["wall / seed"], rows), ""]

    reference = {c.seed: c for c in by_method.get(_REFERENCE_METHOD, [])}
    others = [m for m in by_method if m != _REFERENCE_METHOD]
    if reference and others and len(results) > 1:
        parts += [f"### Difference from {_REFERENCE_METHOD}, paired by seed (mean ± standard error; "
                  "`wins` = seeds where the method's best is at least as high)", ""]
        rows = []
        for method in others:
            pairs = [(c.best, reference[c.seed].best) for c in by_method[method] if c.seed in reference]
            row = [method]
            for b in budgets:
                differences = torch.tensor([_at(mine, b) - _at(theirs, b) for mine, theirs in pairs])
                error = float(differences.std()) / math.sqrt(len(pairs))
                wins = int((differences >= 0).sum())
                row.append(f"{float(differences.mean()):+.3f} ± {error:.3f} ({wins}/{len(pairs)})")
            rows.append(row)
        parts += [_table(["method"] + [f"{b} queries" for b in budgets], rows), ""]

    loop_rounds = [r for result in results for r in result.loop_rounds]
    if loop_rounds:
        parts += _loop_report(loop_rounds, budgets)
    return parts


def _loop_report(rounds: list[LoopRound], budgets: list[int]) -> list[str]:
    """Where the VAENAS loop's queries went, per window of queries (all seeds together)."""
    parts = [
        "### VAENAS loop: where the queries went (rounds grouped by the queries made before them)",
        "",
    ]
    rows, low = [], 0
    for high in budgets:
        window = [r for r in rounds if low <= r.queried_before < high]
        low_label, low = low, high
        if not window:
            continue
        new = sum(r.new for r in window)
        from_sampler = sum(r.from_sampler for r in window)
        drawn = sum(r.drawn for r in window)
        accuracy = [r.sampler_accuracy * r.from_sampler for r in window if r.from_sampler]
        rows.append([
            f"{low_label}–{high}", str(len(window)), f"{from_sampler / new:.2f}" if new else "–",
            f"{sum(r.repeats for r in window) / drawn:.2f}" if drawn else "–",
            f"{sum(accuracy) / from_sampler:.2f}" if from_sampler else "–",
            f"{sum(r.temperature for r in window) / len(window):.2f}",
        ])
    header = ["queries", "rounds", "share drawn from Γ (rest: uniform top-up)", "drawn rows already queried",
              "mean accuracy of Γ's new queries", "mean last temperature"]
    return parts + [_table(header, rows), ""]


def _curves_csv(results: list[SeedResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["part", "method", "noise", "seed", "queries", "best"])
    for result in results:
        for curve in result.curves:
            for queries, best in enumerate(curve.best, start=1):
                writer.writerow([curve.part, curve.method, curve.noise, curve.seed, queries, f"{best:.6f}"])
    return buffer.getvalue()


def _max_of_k_csv(results: list[SeedResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sampler", "noise", "seed", "k", "best"])
    for result in results:
        for sampler, noise, k, best in result.max_of_k:
            writer.writerow([sampler, noise, result.seed, k, f"{best:.6f}"])
    return buffer.getvalue()


def _best_architectures(benchmark: TabularBenchmark, results: list[SeedResult]) -> str:
    """Per (method, noise): the best architecture over seeds, with space.to_json."""
    best: dict[tuple[str, float], Found] = {}
    for result in results:
        for found in result.found:
            key = (found.method, found.noise)
            if key not in best or found.accuracy > best[key].accuracy:
                best[key] = found
    table_arch, table_accuracy = benchmark.best()
    document = {
        "benchmark": benchmark.name,
        "table_best": {"accuracy": table_accuracy, "architecture": benchmark.space.to_json(table_arch)},
        "found": [
            {"method": f.method, "noise": f.noise, "seed": f.seed, "accuracy": f.accuracy,
             "architecture": benchmark.space.to_json(torch.tensor(f.arch))}
            for f in sorted(best.values(), key=lambda f: (f.method, f.noise))
        ],
    }
    return json.dumps(document, indent=2) + "\n"


#: what the figures call each method
METHOD_LABELS = {
    "evolution_vae_seeds": "VAE seeds", "evolution_uniform_seeds": "uniform seeds", "random": "random search",
    "regularized_evolution": "regularized evolution", "vaenas": "VAENAS loop", "vae_evolution": "VAE-seeded evolution",
}


def plot_curves(grouped: dict[tuple[str, float], list[list[float]]], title: str, seeds_end: int | None = None) -> Any:
    """Best-so-far curves, mean ± std over seeds, per (method, noise).

    seeds_end: the seeded-evolution figure: one colour per noise level, solid for VAE seeds and
    dashed for uniform seeds, and a mark where the seeds end and the evolution begins. Without it
    (any-time), one colour per method. The x-axis starts where every mean curve is on the chart
    (the first ~10 queries are far below the part where the methods differ)."""
    figure, axes = pyplot().subplots(figsize=(7, 4.5))
    colours = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    noises = sorted({noise for _, noise in grouped})
    low, high, means = math.inf, -math.inf, []
    for index, ((method, noise), curves) in enumerate(grouped.items()):
        length = min(len(c) for c in curves)
        stacked = torch.tensor([c[:length] for c in curves], dtype=torch.float64)
        mean = stacked.mean(0)
        std = stacked.std(0) if len(curves) > 1 else torch.zeros(length, dtype=torch.float64)
        queries = torch.arange(1, length + 1)
        label = METHOD_LABELS.get(method, method)
        if seeds_end is not None:
            colour = colours[noises.index(noise) % len(colours)]
            style = "--" if method == "evolution_uniform_seeds" else "-"
            label = f"{label}, noise {noise:g} %"
        else:
            colour, style = colours[index % len(colours)], "-"
        axes.plot(queries, mean, style, color=colour, label=label)
        # a best-so-far curve never leaves [worst, best] of its runs; neither does its band
        axes.fill_between(queries, (mean - std).clamp(min=stacked.min()), (mean + std).clamp(max=stacked.max()),
                          color=colour, alpha=0.15)
        low = min(low, float(mean[min(length, 10) - 1]))
        high = max(high, float(stacked.max()))
        means.append(mean)
    bottom = low - 0.5
    start = max(int((mean >= bottom).nonzero()[0]) + 1 if bool((mean >= bottom).any()) else 1 for mean in means)
    axes.set_ylim(bottom, high + 0.1)
    axes.set_xscale("log")
    axes.set_xlim(left=start)
    if seeds_end is not None:
        axes.axvline(seeds_end, color="grey", linestyle=":", linewidth=1, label=f"seeds end ({seeds_end} queries)")
    axes.set_xlabel(f"distinct architectures queried (from {start})")
    axes.set_ylabel("best true accuracy found (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def _plot_histogram(histogram: dict[str, list[float]], benchmark: TabularBenchmark) -> Any:
    """Fig. 2: one panel per VAE (noise level), each against the uniform samples."""
    uniform = torch.tensor(histogram["uniform"])
    panels = [label for label in histogram if label != "uniform"]
    figure, axes = pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    everything = torch.cat([torch.tensor(v) for v in histogram.values()])
    # the worst tenth of the uniform samples (down to 10 % on NB201: cells that do not train)
    # would squash the part where the samplers differ
    low, high = float(torch.quantile(uniform, 0.1)), float(everything.max())
    bins = torch.linspace(low, high, 50).tolist()
    for axis, label in zip(axes[0], panels):
        axis.hist(uniform.clamp(min=low).tolist(), bins=bins, alpha=0.6, label="uniform")
        axis.hist(torch.tensor(histogram[label]).clamp(min=low).tolist(), bins=bins, alpha=0.6, label=label)
        axis.set_xlabel(f"true accuracy (%), clipped at {low:.1f}")
        axis.set_title(label)
        axis.legend(fontsize=8)
    axes[0][0].set_ylabel(f"architectures (of {len(uniform)})")
    figure.suptitle(f"{benchmark.name}: VAE vs uniform samples (paper Fig. 2)")
    return figure


def write_run(
    run_dir: Path, config: TabularConfig, benchmark: TabularBenchmark, results: list[SeedResult], elapsed_s: float
) -> str:
    """Write every output of the study into run_dir; returns the markdown report.

    config.yaml (resolved), curves.csv, max_of_k.csv, results.md, best_architectures.json,
    anytime.png, seeded_evolution.png, histogram.png.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda r: r.seed)
    report = markdown_report(config, benchmark, results, elapsed_s)
    write_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    write_atomic(run_dir / "curves.csv", _curves_csv(results))
    write_atomic(run_dir / "max_of_k.csv", _max_of_k_csv(results))
    write_atomic(run_dir / "results.md", report)
    write_atomic(run_dir / "best_architectures.json", _best_architectures(benchmark, results))
    evolution = _curves_by(results, "seeded_evolution")
    if evolution:
        figure = plot_curves(evolution, f"{benchmark.name}: SPOS evolution, VAE vs uniform seeds (mean ± std)",
                             seeds_end=config.evolution.population)
        save_figure(figure, run_dir / "seeded_evolution.png", dpi=120, bbox_inches="tight")
    anytime = _curves_by(results, "anytime")
    if anytime:
        title = f"{benchmark.name}: any-time best accuracy (mean ± std, {len(results)} seeds)"
        save_figure(plot_curves(anytime, title), run_dir / "anytime.png", dpi=120, bbox_inches="tight")
    histogram = next((r.histogram for r in results if r.histogram), None)
    if histogram:
        save_figure(_plot_histogram(histogram, benchmark), run_dir / "histogram.png", dpi=120, bbox_inches="tight")
    logger.info("wrote %s", run_dir)
    return report

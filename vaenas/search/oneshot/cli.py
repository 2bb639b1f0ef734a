"""`python -m vaenas.search method=oneshot [--config FILE] [--out DIR] [--resume RUN_DIR] [key=value ...]`.

Runs Algorithm 2 (vaenas.search.oneshot.search) in a run folder:
    config.yaml      the resolved config          metrics.jsonl   one JSON record per line
    checkpoints/     the latest two checkpoints   architecture.json, child.pt (state_dict), report.md
    refits.png, epsilon.png, evolution.png, cost.png (final population: accuracy against FLOPs, budget drawn)
Under torchrun every rank runs the loop; rank 0 alone writes. `--resume RUN_DIR` continues a run
from its checkpoint bit for bit (the config is read from RUN_DIR; overrides may change only keys
that do not affect results, vaenas.search.oneshot.config.RESUMABLE_KEYS). The command line itself
(parser, run folder, exit status) is vaenas.search.cli's, shared by every method.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaenas.config import ConfigError
from vaenas.data import SearchData, build_search_data, count_classes
from vaenas.runtime import (
    DistributedContext,
    MetricsLog,
    RunStart,
    checkpoint_payload,
    resolve_device,
    save_checkpoint,
    start_run,
)
from vaenas.runtime.cli import run_cli
from vaenas.runtime.plots import save_figure
from vaenas.search.cli import method_cli
from vaenas.search.oneshot.config import RESUMABLE_KEYS, OneShotConfig
from vaenas.search.oneshot.costs import unreachable_budget
from vaenas.search.oneshot.report import markdown, plot_accuracy_vs_cost, write_plots
from vaenas.search.oneshot.search import OneShotSearch

logger = logging.getLogger("vaenas.search.oneshot")


def start_search(
    config: OneShotConfig, run_dir: Path, resume: bool, ctx: DistributedContext,
    make_search: Callable[[SearchData, torch.device, MetricsLog], Any],
) -> tuple[RunStart, Any]:
    """What the one-shot and the gradient CLIs do before training: the run start (run folder,
    metrics log, checkpoint to resume: vaenas.runtime.start_run), threads, data shard, device,
    make_search(data, device, metrics), and with `resume` the checkpoint's state loaded into it."""
    start = start_run(config, run_dir, resume, ctx, resumable_keys=RESUMABLE_KEYS)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    data = build_search_data(config.data, ctx.rank, ctx.world_size)
    device = ctx.device if config.train.device == "auto" else resolve_device(config.train.device, ctx.local_rank)
    search = make_search(data, device, start.metrics)
    if start.saved is not None:
        search.load_state_dict(start.saved["state"])
    return start, search


def check_budget(config: OneShotConfig) -> None:
    """ConfigError before anything runs when no architecture meets search.max_params / max_flops."""
    problem = unreachable_budget(config, count_classes(config.data))
    if problem is not None:
        raise ConfigError(problem)


def supernet_backend(config: OneShotConfig) -> str | None:
    """gloo for a CPU run; None (nccl with CUDA, else gloo) otherwise."""
    return "gloo" if config.train.device == "cpu" else None


def run(config: OneShotConfig, run_dir: Path, resume: bool, ctx: DistributedContext) -> int:
    """Algorithm 2 in run_dir; returns the exit status. Rank 0 writes, inside the caller's
    distributed_run block (so every rank stays in the group until the outputs are on disk)."""
    writer = ctx.is_main
    start, search = start_search(
        config, run_dir, resume, ctx,
        lambda data, device, metrics: OneShotSearch(config, data, device, ctx.world_size, log=metrics))
    started = time.perf_counter()
    phase = "train"
    if start.saved is not None:
        phase = start.saved["phase"]
        logger.info("resumed %s at step %d (%s phase)", start.latest, search.step, phase)
    # checkpoint number: the training step, then one more per evolution generation (names sort by it)
    saves = [int(start.latest.stem.split("-")[-1]) if resume else 0]

    def checkpoint(current_phase: str) -> None:
        saves[0] = max(saves[0] + 1, search.step)
        if start.folder is not None:
            start.folder.save_checkpoint(checkpoint_payload(
                config=start.fingerprint, phase=current_phase, metrics_lines=start.metrics.lines,
                seconds=start.seconds_before + time.perf_counter() - started, state=search.state_dict()), saves[0])

    steps = config.train.steps
    if phase == "train":
        bar = None
        if config.progress and writer:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=search.step, desc="supernet", unit="step", file=sys.stderr)
        every = config.run.checkpoint_every or steps
        end = steps if config.run.stop_at is None else config.run.stop_at
        while search.step < end:
            target = min(end, (search.step // every + 1) * every)
            search.train(until=target, progress=(lambda step: bar.update(1)) if bar else None)
            if search.step < steps:
                checkpoint("train")
        if bar is not None:
            bar.close()
        if search.step < steps:  # run.stop_at: stopped with a checkpoint, --resume continues
            logger.info("stopped at step %d (run.stop_at); continue with --resume %s", search.step, run_dir)
            return 0
        phase = "search"
        checkpoint("search")
    if phase == "search":
        search.start_search()
        checkpoint("search")
        while search.search_step():
            checkpoint("search")
        checkpoint("done")
    summary = search.result()
    if writer:
        _write_outputs(search, summary, run_dir, start.seconds_before + time.perf_counter() - started)
        print(f"run folder: {run_dir}")
    return 0


def _write_outputs(search: OneShotSearch, summary: dict[str, Any], run_dir: Path, seconds: float) -> None:
    arch = torch.tensor(summary["tokens"])
    (run_dir / "architecture.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    child = search.export_child(arch)
    save_checkpoint(run_dir / "child.pt", child.state_dict())
    write_plots(run_dir, search.refits, search.epsilons, summary)
    populations = {seeding: (search.cost_model.costs(evolution.archs, check=False)[:, 1].tolist(),
                             evolution.scores.tolist()) for seeding, evolution in search.evolutions.items()}
    if any(flops for flops, _ in populations.values()):
        bounds = {"min_flops": search.config.search.min_flops, "max_flops": search.config.search.max_flops}
        found = (summary["cost"]["flops"], summary["supernet_score"])
        save_figure(plot_accuracy_vs_cost(populations, bounds, found), run_dir / "cost.png")
    report = markdown(summary, search.refits, seconds, run_dir)
    (run_dir / "report.md").write_text(report + "\n")
    print(report)


METHOD = method_cli(
    "oneshot",
    config_class=OneShotConfig,
    description="One-shot VAENAS (paper Algorithm 2): supernet trained on architectures from Γ = (1-ε)U + ε·VAE, "
    "the VAE refitted on the best supernet-scored samples, then SPOS evolution seeded by the VAE. "
    "vaenas.epsilon_inc=0 search.seeding=uniform is plain SPOS.",
    examples=(
        "python -m vaenas.search method=oneshot space=nasbench201 data=digits",
        "python -m vaenas.search --config oneshot_nb201_cifar10 data.root=~/data",
        "torchrun --nproc-per-node 2 -m vaenas.search method=oneshot progress=false",
        "python -m vaenas.search --resume runs/oneshot-nasbench201-digits-20260101-000000",
    ),
    run=run,
    run_name=lambda config: f"oneshot-{config.space}-{config.data.name}",
    resumable_keys=RESUMABLE_KEYS,
    resume_overrides=("run.stop_at=null",),  # run.stop_at stopped the earlier process; this one runs to the end
    backend=supernet_backend,
    validate=check_budget,
)


def main(argv: list[str] | None = None) -> int:
    """The one-shot search's CLI (vaenas.search.__main__ dispatches here); returns the exit status."""
    return run_cli(METHOD, list(sys.argv[1:] if argv is None else argv))

"""`python -m vaenas.search [method=tabular] [--config FILE] [--out DIR] [key=value ...]`: the tabular VAENAS study.

With no arguments: NAS-Bench-201 CIFAR-10 with the defaults (about two minutes on 2 CPU cores).
Under `torchrun -m vaenas.search`, the seeds are split across ranks (gloo) and gathered on rank 0,
which alone writes the tables, figures and report, and prints the tables.

Each finished seed is saved at once (seeds/seed-<n>.json in the run folder, atomically), so a run
that dies loses only the seeds in progress: `--resume RUN_DIR` runs the missing seeds with the
folder's config.yaml and writes the same outputs as an uninterrupted run. The command line itself
(parser, run folder, exit status) is vaenas.search.cli's, shared by every method.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from vaenas.config import to_dict
from vaenas.runtime import DistributedContext, RunFolder
from vaenas.runtime.cli import run_cli
from vaenas.search.cli import method_cli
from vaenas.search.tabular.config import TabularConfig, check_budgets
from vaenas.search.tabular.cost_bounds import load_study_benchmark
from vaenas.search.tabular.report import write_run
from vaenas.search.tabular.results import load_seeds, save_seed
from vaenas.search.tabular.study import run_study

logger = logging.getLogger("vaenas.search")

#: options a resumed run may set differently: they do not change what a seed computes
RESUMABLE_KEYS = ("out", "progress", "study.seeds")


def run(config: TabularConfig, run_dir: Path, resume: bool, ctx: DistributedContext) -> int:
    """The study in run_dir (the seeds not finished there), split across ranks; rank 0 writes the
    outputs. Returns the exit status."""
    benchmark = load_study_benchmark(config)
    started = time.perf_counter()
    folder = RunFolder(run_dir)
    if ctx.is_main:
        folder.write_config(to_dict(config))
    # rank 0's list of finished seeds, taken before any rank can finish a new one
    done = ctx.broadcast_object(sorted(load_seeds(folder)) if ctx.is_main else None)
    seeds = [config.study.seed + i for i in range(config.study.seeds)]
    todo = [seed for seed in seeds if seed not in done]
    mine = ctx.shard(todo)  # split by global rank (never local rank: that repeats seeds on every node)
    logger.info("%s: %d architectures; seeds %s%s%s", benchmark.name, len(benchmark), mine,
                f" (rank {ctx.rank} of {ctx.world_size})" if ctx.is_distributed else "",
                f"; finished before: {[s for s in seeds if s in done]}" if len(todo) < len(seeds) else "")
    new = run_study(config, benchmark, mine, show_progress=config.progress and ctx.is_main,
                    on_result=lambda result: save_seed(folder, result))
    gathered = [result for part in ctx.all_gather_object(new) for result in part]
    if ctx.is_main:
        finished = load_seeds(folder)
        for result in gathered:  # on several nodes without a shared file system, the others' seeds
            if result.seed not in finished:
                save_seed(folder, result)
                finished[result.seed] = result
        results = [finished[seed] for seed in seeds]
        report = write_run(folder.path, config, benchmark, results, time.perf_counter() - started)
        print(report)
        print(f"run folder: {folder.path}")
    return 0


METHOD = method_cli(
    "tabular",
    config_class=TabularConfig,
    description="Tabular VAENAS study (paper §5.3) on real ground truth: VAE vs uniform sampling, seeded "
    "evolution, any-time curves against random search and regularized evolution.",
    examples=(
        "python -m vaenas.search study.seeds=5 vae.hidden_dim=128",
        "python -m vaenas.search --config tabular_nb101 --out runs/nb101",
        "python -m vaenas.search --resume runs/nb101         # finish a run that was stopped",
    ),
    run=run,
    run_name=lambda config: f"{config.benchmark.name}-{config.benchmark.dataset}",
    resumable_keys=RESUMABLE_KEYS,
    keeps="its finished seeds",
    validate=lambda config: check_budgets(config, len(load_study_benchmark(config))),
)


def main(argv: list[str] | None = None) -> int:
    """The tabular study's CLI (vaenas.search.__main__ dispatches here); returns the exit status."""
    return run_cli(METHOD, list(sys.argv[1:] if argv is None else argv))

"""`python -m vaenas.search [--config FILE] [--out DIR] [key=value ...]`: the tabular VAENAS study.

With no arguments: NAS-Bench-201 CIFAR-10 with the defaults (about two minutes on 2 CPU cores).
Under `torchrun -m vaenas.search`, the seeds are split across ranks (gloo) and gathered on rank 0,
which alone writes the run folder and prints the tables.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import torch.distributed as dist

from vaenas.groundtruth import GroundTruthError, load_benchmark
from vaenas.search.config import ConfigError, TabularConfig, check_budgets, describe_options, load_config
from vaenas.search.tabular import run_study, write_run

logger = logging.getLogger("vaenas.search")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vaenas.search",
        description="Tabular VAENAS study (paper §5.3) on real ground truth: VAE vs uniform sampling, "
        "seeded evolution, any-time curves. Options are set in a YAML file (--config) and/or as key=value.",
        epilog="options (key=default (type) description):\n" + "\n".join(describe_options())
        + "\n\nexamples:\n  python -m vaenas.search study.seeds=5 vae.hidden_dim=128\n"
        "  python -m vaenas.search --config tabular_nb101 --out runs/nb101",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config file, or a packaged one: tabular_nb201, tabular_nb101")
    parser.add_argument("--out", help="run folder (default: runs/<benchmark>-<time>)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. study.seeds=3")
    return parser


def _run_dir(config: TabularConfig) -> Path:
    if config.out:
        return Path(config.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.benchmark.name}-{config.benchmark.dataset}-{stamp}"


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    overrides = list(arguments.overrides) + ([f"out={arguments.out}"] if arguments.out else [])
    try:
        config = load_config(arguments.config, overrides)
    except ConfigError as error:
        print(f"python -m vaenas.search: error: {error}", file=sys.stderr)
        return 2

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s{f' [rank {rank}]' if world_size > 1 else ''} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font cache notice is noise here
    try:
        benchmark = load_benchmark(config.benchmark.name, config.benchmark.dataset)
    except GroundTruthError as error:
        print(f"python -m vaenas.search: error: {error}", file=sys.stderr)
        return 1
    try:
        check_budgets(config, len(benchmark))
    except ConfigError as error:
        print(f"python -m vaenas.search: error: {error}", file=sys.stderr)
        return 2

    if world_size > 1:
        dist.init_process_group("gloo", init_method="env://")
    started = time.perf_counter()
    seeds = [config.study.seed + i for i in range(config.study.seeds)]
    # split by global rank (never local rank: that repeats seeds on every node)
    mine = seeds[rank::world_size]
    logger.info("%s: %d architectures; seeds %s%s", benchmark.name, len(benchmark), mine,
                f" (rank {rank} of {world_size})" if world_size > 1 else "")
    results = run_study(config, benchmark, mine, show_progress=config.progress and rank == 0)
    if world_size > 1:
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, results)
        results = [result for part in gathered for result in part]
        dist.destroy_process_group()
    if rank != 0:
        return 0
    run_dir = _run_dir(config)
    report = write_run(run_dir, config, benchmark, results, time.perf_counter() - started)
    print(report)
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m vaenas.search [method=tabular] [--config FILE] [--out DIR] [key=value ...]`: the tabular VAENAS study.

With no arguments: NAS-Bench-201 CIFAR-10 with the defaults (about two minutes on 2 CPU cores).
Under `torchrun -m vaenas.search`, the seeds are split across ranks (gloo) and gathered on rank 0,
which alone writes the tables, figures and report, and prints the tables.

Each finished seed is saved at once (seeds/seed-<n>.json in the run folder, atomically), so a run
that dies loses only the seeds in progress: `--resume RUN_DIR` runs the missing seeds with the
folder's config.yaml and writes the same outputs as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from vaenas.config import ConfigError, describe_options, flat_values, load_config, to_dict
from vaenas.groundtruth import GroundTruthError, load_benchmark
from vaenas.runtime import RunFolder, default_run_path, distributed_run
from vaenas.search.tabular.config import TabularConfig, check_budgets
from vaenas.search.tabular.report import write_run
from vaenas.search.tabular.results import load_seeds, save_seed
from vaenas.search.tabular.study import run_study

logger = logging.getLogger("vaenas.search")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vaenas.search",
        description="Tabular VAENAS study (paper §5.3) on real ground truth: VAE vs uniform sampling, "
        "seeded evolution, any-time curves. Options are set in a YAML file (--config) and/or as key=value.",
        epilog="options (key=default (type) description):\n" + "\n".join(describe_options(TabularConfig()))
        + "\n\nexamples:\n  python -m vaenas.search study.seeds=5 vae.hidden_dim=128\n"
        "  python -m vaenas.search --config tabular_nb101 --out runs/nb101\n"
        "  python -m vaenas.search --resume runs/nb101         # finish a run that was stopped",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config file, or a packaged one: tabular_nb201, tabular_nb101")
    parser.add_argument("--out", help="run folder (default: runs/<benchmark>-<time>)")
    parser.add_argument(
        "--resume", metavar="RUN_DIR",
        help="continue the run in RUN_DIR with its config.yaml: finished seeds are kept, the others run "
        "(key=value may change only " + ", ".join(sorted(_RESUME_MAY_CHANGE)) + ")",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. study.seeds=3")
    return parser


#: options a resumed run may set differently: they do not change what a seed computes
_RESUME_MAY_CHANGE = {"progress", "study.seeds", "out"}


def _config(arguments: argparse.Namespace) -> TabularConfig:
    """The config of a new run, or of the run being resumed (its config.yaml plus allowed overrides)."""
    if not arguments.resume:
        return load_config(arguments.config, list(arguments.overrides) + (
            [f"out={arguments.out}"] if arguments.out else []), cls=TabularConfig)
    if arguments.config or arguments.out:
        raise ConfigError("--resume takes the run folder's own config: give neither --config nor --out")
    saved = Path(arguments.resume) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume {arguments.resume}: no config.yaml there (not a run folder of vaenas.search?)")
    here = [f"out={arguments.resume}"]
    config = load_config(saved, list(arguments.overrides) + here, cls=TabularConfig)
    before, after = flat_values(load_config(saved, here, cls=TabularConfig)), flat_values(config)
    changed = sorted(key for key in before.keys() | after.keys()
                     if before.get(key) != after.get(key) and key not in _RESUME_MAY_CHANGE)
    if changed:
        raise ConfigError(f"--resume: {', '.join(changed)} would differ from the run's config.yaml; finished seeds "
                          f"were computed with it (only {', '.join(sorted(_RESUME_MAY_CHANGE))} may change)")
    return config


def _open_run_folder(config: TabularConfig, resume: bool) -> tuple[str, list[int], str | None]:
    """Rank 0: create the run folder, write config.yaml, list the finished seeds.
    Returns (folder, finished seeds, error message or None), which rank 0 broadcasts."""
    path = Path(config.out) if config.out else default_run_path(f"{config.benchmark.name}-{config.benchmark.dataset}")
    folder = RunFolder(path)
    done = sorted(load_seeds(folder))
    if done and not resume:
        return str(path), done, (f"{path} already holds finished seeds {done}: continue it with --resume {path}, "
                                 "or choose another --out")
    config.out = str(path)
    folder.write_config(to_dict(config))
    return str(path), done, None


def main(argv: list[str]) -> int:
    """The tabular study's CLI (vaenas.search.__main__ dispatches here); returns the exit status."""
    argv = [argument for argument in argv if not argument.startswith("method=")]
    arguments = _parser().parse_args(argv)
    try:
        config = _config(arguments)
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

    # One shutdown for all ranks (vaenas.runtime): rank 0 writes everything inside the block; on
    # leaving it every rank meets at a barrier, so no rank leaves the process group (and the job)
    # before rank 0's outputs are on disk; then the group is destroyed and main returns.
    with distributed_run(backend="gloo") as context:
        started = time.perf_counter()
        opened = _open_run_folder(config, resume=bool(arguments.resume)) if context.is_main else None
        # broadcast: every rank uses rank 0's folder name (default: rank 0's clock) and list of
        # finished seeds, taken before any rank can finish a new one
        path, done, error = context.broadcast_object(opened)
        if error:
            if context.is_main:
                print(f"python -m vaenas.search: error: {error}", file=sys.stderr)
            return 2
        folder = RunFolder(path)
        seeds = [config.study.seed + i for i in range(config.study.seeds)]
        todo = [seed for seed in seeds if seed not in done]
        mine = context.shard(todo)  # split by global rank (never local rank: that repeats seeds on every node)
        logger.info("%s: %d architectures; seeds %s%s%s", benchmark.name, len(benchmark), mine,
                    f" (rank {rank} of {world_size})" if world_size > 1 else "",
                    f"; finished before: {[s for s in seeds if s in done]}" if len(todo) < len(seeds) else "")
        new = run_study(config, benchmark, mine, show_progress=config.progress and context.is_main,
                        on_result=lambda result: save_seed(folder, result))
        gathered = [result for part in context.all_gather_object(new) for result in part]
        if context.is_main:
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

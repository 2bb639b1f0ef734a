"""`python -m vaenas.search method=oneshot [--config FILE] [--out DIR] [--resume RUN_DIR] [key=value ...]`.

Runs Algorithm 2 (vaenas.search.oneshot.search) in a run folder:
    config.yaml      the resolved config          metrics.jsonl   one JSON record per line
    checkpoints/     the latest two checkpoints   architecture.json, child.pt (state_dict), report.md
    refits.png, epsilon.png, evolution.png
Under torchrun every rank runs the loop; rank 0 alone writes. `--resume RUN_DIR` continues a run
from its checkpoint bit for bit (the config is read from RUN_DIR; overrides may change only keys
that do not affect results, vaenas.search.oneshot.config.RESUMABLE_KEYS).
Exit status: 0 done (or stopped at run.stop_at), 2 bad config, 1 bad data or checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaenas.config import ConfigError, describe_options, load_config
from vaenas.data import DataError, SearchData, build_search_data
from vaenas.runtime import (
    CheckpointError,
    DistributedContext,
    MetricsLog,
    RunStart,
    checkpoint_payload,
    default_run_path,
    distributed_run,
    resolve_device,
    save_checkpoint,
    setup_logging,
    start_run,
)
from vaenas.search.oneshot.config import RESUMABLE_KEYS, OneShotConfig
from vaenas.search.oneshot.report import markdown, write_plots
from vaenas.search.oneshot.search import OneShotSearch

logger = logging.getLogger("vaenas.search.oneshot")
PROG = "python -m vaenas.search method=oneshot"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="One-shot VAENAS (paper Algorithm 2): supernet trained on architectures from "
        "Γ = (1-ε)U + ε·VAE, the VAE refitted on the best supernet-scored samples, then SPOS evolution "
        "seeded by the VAE. train.steps etc. as key=value; epsilon_inc=0 is plain SPOS.",
        epilog="options (key=default (type) description):\n" + "\n".join(describe_options(OneShotConfig()))
        + "\n\nexamples:\n  python -m vaenas.search method=oneshot space=nasbench201 data=digits\n"
        "  python -m vaenas.search --config oneshot_nb201_cifar10 data.root=~/data\n"
        "  torchrun --nproc-per-node 2 -m vaenas.search method=oneshot progress=false\n"
        "  python -m vaenas.search --resume runs/oneshot-nasbench201-digits-20260101-000000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config file or a packaged one: oneshot_nb201_digits, "
                        "oneshot_nb201_cifar10, oneshot_nasnet_cifar10, oneshot_shufflenet_imagenet")
    parser.add_argument("--out", help="run folder (default: runs/oneshot-<space>-<data>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.steps=100")
    return parser


def load_run_config(arguments: argparse.Namespace, cls: type = OneShotConfig) -> tuple[OneShotConfig, Path | None]:
    """(config, run folder to resume or None); cls: the config class (the gradient search's too)."""
    overrides = list(arguments.overrides) + ([f"out={arguments.out}"] if arguments.out else [])
    if arguments.resume is None:
        return load_config(arguments.config, overrides, cls=cls), None
    run_dir = Path(arguments.resume)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there (not a run folder of this method)")
    # run.stop_at stopped the earlier invocation; a resumed one runs to the end unless told again
    resumed = ["run.stop_at=null", *overrides, f"out={run_dir}"]
    return load_config(run_dir / "config.yaml", resumed, cls=cls), run_dir


def run_dir_of(config: OneShotConfig, method: str) -> Path:
    """config.out, else runs/<method>-<space>-<data>-<time>."""
    return Path(config.out) if config.out else default_run_path(f"{method}-{config.space}-{config.data.name}")


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


def run(config: OneShotConfig, run_dir: Path, resume: bool, ctx: DistributedContext) -> int:
    """Algorithm 2 in run_dir; returns the exit status. Rank 0 writes, inside the caller's
    distributed_run block (so every rank stays in the group until the outputs are on disk)."""
    writer = ctx.is_main
    (folder, metrics, config_fingerprint, latest, saved), search = start_search(
        config, run_dir, resume, ctx,
        lambda data, device, metrics: OneShotSearch(config, data, device, ctx.world_size, log=metrics))
    phase = "train"
    if saved is not None:
        phase = saved["phase"]
        logger.info("resumed %s at step %d (%s phase)", latest, search.step, phase)
    # checkpoint number: the training step, then one more per evolution generation (names sort by it)
    saves = [int(latest.stem.split("-")[-1]) if resume else 0]

    def checkpoint(current_phase: str) -> None:
        saves[0] = max(saves[0] + 1, search.step)
        if folder is not None:
            folder.save_checkpoint(checkpoint_payload(
                config=config_fingerprint, phase=current_phase, metrics_lines=metrics.lines,
                state=search.state_dict()), saves[0])

    started = time.perf_counter()
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
        _write_outputs(search, summary, run_dir, time.perf_counter() - started)
    return 0


def _write_outputs(search: OneShotSearch, summary: dict[str, Any], run_dir: Path, seconds: float) -> None:
    arch = torch.tensor(summary["tokens"])
    (run_dir / "architecture.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    child = search.export_child(arch)
    save_checkpoint(run_dir / "child.pt", child.state_dict())
    write_plots(run_dir, search.refits, search.epsilons, summary)
    report = markdown(summary, search.refits, seconds, run_dir)
    (run_dir / "report.md").write_text(report + "\n")
    print(report)


def main(argv: list[str] | None = None) -> int:
    """The one-shot search's CLI (vaenas.search.__main__ dispatches here); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = _parser().parse_intermixed_args(argv)
    try:
        config, resume_dir = load_run_config(arguments)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    setup_logging()
    backend = "gloo" if config.train.device == "cpu" else None  # None: nccl with CUDA, else gloo
    try:
        with distributed_run(backend) as ctx:
            run_dir = resume_dir if resume_dir is not None else run_dir_of(config, "oneshot")
            status = run(config, run_dir, resume_dir is not None, ctx)
            if ctx.is_main and status == 0:
                print(f"run folder: {run_dir}")
    except (DataError, CheckpointError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return status

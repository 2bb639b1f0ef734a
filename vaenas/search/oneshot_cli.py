"""`python -m vaenas.search method=oneshot [--config FILE] [--out DIR] [--resume RUN_DIR] [key=value ...]`.

Runs Algorithm 2 (vaenas.search.oneshot) in a run folder:
    config.yaml      the resolved config          metrics.jsonl   one JSON record per line
    checkpoints/     the latest two checkpoints   architecture.json, child.pt (state_dict), report.md
    refits.png, epsilon.png, evolution.png
Under torchrun every rank runs the loop; rank 0 alone writes. `--resume RUN_DIR` continues a run
from its checkpoint bit for bit (the config is read from RUN_DIR; overrides may change only keys
that do not affect results, oneshot_config.RESUMABLE_KEYS).
Exit status: 0 done (or stopped at run.stop_at), 2 bad config, 1 bad data or checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from vaenas.data import DataError, SearchData, build_search_data
from vaenas.search import oneshot_checkpoint
from vaenas.search.config import ConfigError, describe_options, load_config, read_yaml, to_dict
from vaenas.search.oneshot import OneShotSearch, resolve_device
from vaenas.runtime import CheckpointError, DistributedContext, RunFolder, distributed_run, save_checkpoint
from vaenas.search.oneshot_config import OneShotConfig, fingerprint
from vaenas.search.oneshot_report import markdown, write_plots

logger = logging.getLogger("vaenas.search.oneshot")
PROG = "python -m vaenas.search method=oneshot"


def method_of(argv: list[str]) -> str:
    """The method an argument list asks for: a method= override, else the --config file's or the
    --resume folder's `method`, else 'tabular'. Unreadable files are left to the method's loader."""
    for argument in argv:
        if argument.startswith("method="):
            return argument.partition("=")[2].strip()
    for flag, name in (("--config", None), ("--resume", "config.yaml")):
        for index, argument in enumerate(argv):
            value = argument.partition("=")[2] if argument.startswith(flag + "=") else (
                argv[index + 1] if argument == flag and index + 1 < len(argv) else None)
            if value is None:
                continue
            try:
                tree = read_yaml(Path(value) / name if name else value)
            except (ConfigError, OSError):
                continue
            if isinstance(tree.get("method"), str):
                return tree["method"]
    return "tabular"


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


def setup_logging() -> None:
    """Every search CLI's logging: INFO on rank 0, WARNING on the other ranks, on stderr."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notices are noise here


def _load(arguments: argparse.Namespace, cls: type = OneShotConfig) -> tuple[OneShotConfig, Path | None]:
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


class _Metrics:
    """Rank 0's metrics log (RunFolder.log_metrics), counting its lines for the checkpoint."""

    def __init__(self, folder: RunFolder | None) -> None:
        self.folder, self.lines = folder, 0

    def __call__(self, record: dict[str, Any]) -> None:
        if self.folder is not None:
            self.folder.log_metrics(record.get("step"), **{k: v for k, v in record.items() if k != "step"})
            self.lines += 1


def default_run_dir(config: OneShotConfig, method: str) -> Path:
    """config.out, else runs/<method>-<space>-<data>-<time>."""
    if config.out:
        return Path(config.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{method}-{config.space}-{config.data.name}-{stamp}"


class Start(NamedTuple):
    """A search CLI's state before training (start_run)."""

    folder: RunFolder | None  # rank 0's run folder; None on the other ranks
    metrics: _Metrics
    fingerprint: str
    search: Any  # OneShotSearch or GradientSearch
    latest: Path | None  # the checkpoint resumed from
    saved: dict[str, Any] | None  # its payload


def start_run(
    config: OneShotConfig, run_dir: Path, resume: bool, ctx: DistributedContext,
    make_search: Callable[[SearchData, torch.device, _Metrics], Any],
) -> Start:
    """What the one-shot and the gradient CLIs do before training: the run folder (rank 0),
    metrics log, threads, data shard, device, make_search(data, device, metrics); with `resume`,
    the latest checkpoint loaded into the search and the metrics log cut to its length, else
    config.yaml written."""
    folder = RunFolder(run_dir) if ctx.is_main else None
    metrics = _Metrics(folder)
    config_fingerprint = fingerprint(to_dict(config))
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    data = build_search_data(config.data, ctx.rank, ctx.world_size)
    device = ctx.device if config.train.device == "auto" else resolve_device(config.train.device, ctx.local_rank)
    search = make_search(data, device, metrics)
    latest = saved = None
    if resume:
        latest = RunFolder(run_dir).latest_checkpoint()
        if latest is None:
            raise CheckpointError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
        saved = oneshot_checkpoint.load(latest, space=config.space, config=config_fingerprint)
        search.load_state_dict(saved["state"])
        metrics.lines = int(saved["metrics_lines"])
        if folder is not None:
            folder.truncate_metrics(metrics.lines)
    elif folder is not None:
        folder.write_config(to_dict(config))
    return Start(folder, metrics, config_fingerprint, search, latest, saved)


def run(config: OneShotConfig, run_dir: Path, resume: bool, ctx: DistributedContext) -> int:
    """Algorithm 2 in run_dir; returns the exit status. Rank 0 writes, inside the caller's
    distributed_run block (so every rank stays in the group until the outputs are on disk)."""
    writer = ctx.is_main
    folder, metrics, config_fingerprint, search, latest, saved = start_run(
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
            folder.save_checkpoint(oneshot_checkpoint.payload(
                space=config.space, config=config_fingerprint, phase=current_phase,
                metrics_lines=metrics.lines, state=search.state_dict()), saves[0])

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
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = _parser().parse_intermixed_args(argv)
    try:
        config, resume_dir = _load(arguments)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    setup_logging()
    backend = "gloo" if config.train.device == "cpu" else None  # None: nccl with CUDA, else gloo
    try:
        with distributed_run(backend) as ctx:
            run_dir = resume_dir if resume_dir is not None else default_run_dir(config, "oneshot")
            status = run(config, run_dir, resume_dir is not None, ctx)
            if ctx.is_main and status == 0:
                print(f"run folder: {run_dir}")
    except (DataError, CheckpointError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return status

"""`python -m vaenas.search method=oneshot [--config FILE] [--out DIR] [--resume RUN_DIR] [key=value ...]`.

Runs Algorithm 2 (vaenas.search.oneshot) in a run folder:
    config.yaml      the resolved config          metrics.jsonl   one JSON record per line
    checkpoint.pt    the latest checkpoint        architecture.json, child.pt (state_dict), report.md
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
from typing import Any

import torch
import torch.distributed as dist
import yaml

from vaenas.data import DataError, build_search_data
from vaenas.search import oneshot_checkpoint
from vaenas.search.config import ConfigError, describe_options, load_config, read_yaml, to_dict
from vaenas.search.oneshot import OneShotSearch, resolve_device
from vaenas.search.oneshot_checkpoint import CheckpointError
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


def _load(arguments: argparse.Namespace) -> tuple[OneShotConfig, Path | None]:
    overrides = list(arguments.overrides) + ([f"out={arguments.out}"] if arguments.out else [])
    if arguments.resume is None:
        return load_config(arguments.config, overrides, cls=OneShotConfig), None
    run_dir = Path(arguments.resume)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there (not a one-shot run folder)")
    return load_config(run_dir / "config.yaml", overrides + [f"out={run_dir}"], cls=OneShotConfig), run_dir


class _Distributed:
    """RANK / WORLD_SIZE / LOCAL_RANK of torchrun; gloo on CPUs, NCCL on GPUs.

    Shutdown: rank 0 writes its outputs first, then every rank meets at a barrier, then leaves the
    process group, so no rank exits (and torchrun tears the job down) while rank 0 is still writing.
    """

    def __init__(self, device_name: str) -> None:
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device_name, self.local_rank)
        if self.world_size > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", init_method="env://")

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class _RunFolder:
    """Rank 0's outputs: config, metrics lines, checkpoints (others write nothing)."""

    def __init__(self, path: Path, writer: bool) -> None:
        self.path, self.writer = path, writer
        self.metrics_lines = 0
        if writer:
            path.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        with open(self.path / "metrics.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")
        self.metrics_lines += 1

    def truncate_metrics(self, lines: int) -> None:
        """Drop metrics written after the checkpoint a resumed run continues from."""
        self.metrics_lines = lines
        if not self.writer or not (self.path / "metrics.jsonl").exists():
            return
        kept = (self.path / "metrics.jsonl").read_text().splitlines(keepends=True)[:lines]
        (self.path / "metrics.jsonl").write_text("".join(kept))


def _default_dir(config: OneShotConfig) -> Path:
    if config.out:
        return Path(config.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"oneshot-{config.space}-{config.data.name}-{stamp}"


def run(config: OneShotConfig, run_dir: Path, resume: bool, ctx: _Distributed) -> int:
    """Algorithm 2 in run_dir; returns the exit status."""
    writer = ctx.rank == 0
    folder = _RunFolder(run_dir, writer)
    config_fingerprint = fingerprint(to_dict(config))
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    data = build_search_data(config.data, ctx.rank, ctx.world_size)
    search = OneShotSearch(config, data, ctx.device, ctx.world_size, log=folder.log)
    phase = "train"
    if resume:
        payload = oneshot_checkpoint.load(run_dir / "checkpoint.pt", space=config.space, config=config_fingerprint)
        search.load_state_dict(payload["state"])
        phase = payload["phase"]
        folder.truncate_metrics(int(payload["metrics_lines"]))
        logger.info("resumed %s at step %d (%s phase)", run_dir, search.step, phase)
    elif writer:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    def checkpoint(current_phase: str) -> None:
        if writer:
            oneshot_checkpoint.save(run_dir / "checkpoint.pt", space=config.space, config=config_fingerprint,
                                    phase=current_phase, metrics_lines=folder.metrics_lines,
                                    state=search.state_dict())

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
    oneshot_checkpoint.write_atomic_torch(run_dir / "child.pt", child.state_dict())
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
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    ctx = _Distributed(config.train.device)
    status = 1
    try:
        run_dir = resume_dir if resume_dir is not None else _default_dir(config)
        status = run(config, run_dir, resume_dir is not None, ctx)
        if ctx.rank == 0 and status == 0:
            print(f"run folder: {run_dir}")
    except (DataError, CheckpointError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        status = 1
    finally:
        ctx.close()
    return status

"""`python -m vaenas.train arch=<architecture JSON or search run folder> recipe=<name> [key=value ...]`
(`torchrun --nproc-per-node N -m vaenas.train ...` for N processes).

Retrains a found architecture from scratch with a packaged recipe (vaenas/train/recipes) in a run folder:
    config.yaml        the resolved config              architecture.json  the architecture trained
    metrics.jsonl      one JSON record per line         checkpoints/       the latest two checkpoints
    model.pt (ema.pt)  the trained weights (state_dict) results.json, report.md, curves.png
Under torchrun every rank trains its shard of each global batch (DistributedDataParallel); rank 0 alone
writes. `--resume RUN_DIR` continues bit for bit from the last checkpoint (overrides may change only keys
that do not affect results, vaenas.train.config.RESUMABLE_KEYS). The command line itself (parser, run
folder and its lock, exit statuses, Ctrl-C) is vaenas.runtime.cli's, shared with the searches.
`recipe=<name>` names the packaged YAML the config starts from, i.e. `--config <name>`; a YAML of one's own
(e.g. an edited copy of a run's config.yaml) goes with --config instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vaenas.config import ConfigError
from vaenas.data import build_training_data
from vaenas.runtime import DistributedContext, checkpoint_payload, resolve_device, save_checkpoint, start_run, write_atomic
from vaenas.runtime.cli import JobCLI, run_cli
from vaenas.runtime.collectives import check_identical, checksum
from vaenas.train.architecture import ARCHITECTURE_FILE, Architecture, read_architecture
from vaenas.train.config import RESUMABLE_KEYS, RetrainConfig, recipe_names, recipes_for, unknown_recipe
from vaenas.train.network import build_network, deployed_cost, network_options, set_bn_momentum
from vaenas.train.report import final_results, ground_truth, summary, write_curves, write_report
from vaenas.train.trainer import Retrainer

logger = logging.getLogger("vaenas.train")


def load_architecture(config: RetrainConfig) -> Architecture:
    """The run's architecture: the copy in its run folder when there is one (a resumed run: the source
    may have moved since), else the one `arch` names."""
    if config.out:
        folder = Path(config.out)
        if (folder / "config.yaml").is_file() and (folder / ARCHITECTURE_FILE).is_file():
            return read_architecture(folder / ARCHITECTURE_FILE)
    return read_architecture(config.arch)


def check_recipe(config: RetrainConfig, architecture: Architecture) -> None:
    """ConfigError unless the recipe is for the architecture's space, naming the recipes that are."""
    if architecture.space not in config.spaces:
        suited = recipes_for("spaces", architecture.space)
        raise ConfigError(f"recipe: {config.recipe} trains {', '.join(config.spaces)} architectures, but "
                          f"{architecture.source} holds a {architecture.space} one (recipes for {architecture.space}: "
                          f"{', '.join(suited) or 'none'})")


def validate(config: RetrainConfig) -> None:
    """The checks that need the architecture, made before any run folder is claimed: it is readable and
    valid, the recipe is for its space, and its network builds and runs with the recipe's options."""
    architecture = load_architecture(config)
    check_recipe(config, architecture)
    # the number of classes does not change whether the network runs: 10 stands in for the data's
    build_network(architecture, network_options(config, architecture.space, 10), config.data.size)


def backend(config: RetrainConfig) -> str | None:
    """gloo for a CPU run; None (nccl with CUDA, else gloo) otherwise."""
    return "gloo" if config.train.device == "cpu" else None


def build_trainer(config: RetrainConfig, architecture: Architecture, ctx: DistributedContext,
                  log: Any = None) -> Retrainer:
    """The data (each rank's share of the global batch), the network (weights seeded by run.seed, the same
    on every rank) and the Retrainer of a run."""
    if config.train.batch_size % ctx.world_size:
        raise ConfigError(f"train.batch_size: a global batch of {config.train.batch_size} does not split into "
                          f"{ctx.world_size} equal shares (one per process)")
    data_config = dataclasses.replace(config.data, batch_size=config.train.batch_size // ctx.world_size)
    data = build_training_data(data_config, ctx.rank, ctx.world_size)
    device = ctx.device if config.train.device == "auto" else resolve_device(config.train.device, ctx.local_rank)
    torch.manual_seed(config.run.seed)
    model = build_network(architecture, network_options(config, architecture.space, data.num_classes),
                          data.image_size)
    if config.train.bn_momentum is not None:
        set_bn_momentum(model, config.train.bn_momentum)
    return Retrainer(config, model, data, device, ctx, log)


def run(config: RetrainConfig, run_dir: Path, resume: bool, ctx: DistributedContext) -> int:
    """Retrain in run_dir; returns the exit status. Rank 0 writes, inside the caller's distributed_run block."""
    start = start_run(config, run_dir, resume, ctx, resumable_keys=RESUMABLE_KEYS)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    architecture = load_architecture(config)
    if start.folder is not None and not resume:
        write_atomic(run_dir / ARCHITECTURE_FILE, json.dumps(architecture.to_json(), indent=2) + "\n")
    trainer = build_trainer(config, architecture, ctx, start.metrics)
    if start.saved is not None:
        trainer.load_state_dict(start.saved["state"])
        logger.info("resumed %s at step %d of %d", start.latest, trainer.step, trainer.total_steps)
    started = time.perf_counter()

    def checkpoint() -> None:
        state = trainer.state_dict()  # every rank: it gathers their random streams
        if start.folder is not None:
            start.folder.save_checkpoint(checkpoint_payload(
                config=start.fingerprint, phase="train", metrics_lines=start.metrics.lines,
                seconds=start.seconds_before + time.perf_counter() - started, state=state), trainer.step)

    end = trainer.total_steps if config.run.stop_at is None else min(config.run.stop_at, trainer.total_steps)
    bar = None
    if config.progress and ctx.is_main and trainer.step < end:
        from tqdm import tqdm

        bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc="retrain", unit="step", file=sys.stderr)
    while trainer.step < end:
        boundaries = [end, (trainer.epoch() + 1) * trainer.steps_per_epoch]
        if config.run.checkpoint_every:
            boundaries.append((trainer.step // config.run.checkpoint_every + 1) * config.run.checkpoint_every)
        trainer.train(until=min(boundaries), progress=(lambda step: bar.update(1)) if bar else None)
        checkpoint()
    if bar is not None:
        bar.close()
    if trainer.step < trainer.total_steps:
        logger.info("stopped at step %d (run.stop_at); continue with --resume %s", trainer.step, run_dir)
        return 0
    # DDP keeps the ranks' weights equal and the evaluations broadcast rank 0's batch-norm statistics: a
    # difference now is a bug, which would make model.pt rank 0's alone
    check_identical(checksum(trainer.model.state_dict().values()), "the trained weights")
    if ctx.is_main:
        seconds = start.seconds_before + time.perf_counter() - started
        print(write_outputs(config, architecture, trainer, run_dir, seconds))
        print(f"run folder: {run_dir}")
    return 0


def write_outputs(config: RetrainConfig, architecture: Architecture, trainer: Retrainer, run_dir: Path,
                  seconds: float) -> str:
    """model.pt (and ema.pt), curves.png, results.json and report.md of a finished run (rank 0); the report."""
    save_checkpoint(run_dir / "model.pt", trainer.model.state_dict())
    if trainer.ema is not None:
        save_checkpoint(run_dir / "ema.pt", trainer.ema.module.state_dict())
    records = trainer.log.folder.read_metrics()
    write_curves(run_dir, records)
    options = network_options(config, architecture.space, trainer.data.num_classes)
    facts = {
        "recipe": config.recipe, "dataset": config.data.name, "network": options, "image_size": trainer.data.image_size,
        "epochs": config.train.epochs, "steps": trainer.total_steps, "batch_size": config.train.batch_size,
        "processes": trainer.ctx.world_size, "device": str(trainer.device), "seconds": seconds,
        "test_is_holdout": trainer.data.test is None,
    }
    document = summary(architecture, final_results(records), deployed_cost(architecture, options, facts["image_size"]),
                       facts, ground_truth(architecture, config.data.name))
    return write_report(run_dir, document)


JOB = JobCLI(
    name="retrain",
    prog="python -m vaenas.train",
    config_class=RetrainConfig,
    description="Retrain a found architecture from scratch with a packaged recipe (the paper's appendix A.1: "
    "CIFAR-10 and ImageNet for NASNet-like children, ImageNet for ShuffleNet-like ones; the NAS-Bench-201 and "
    "-101 benchmarks' own trainings; a digits demo) and report its accuracy. Runs under torchrun.",
    examples=(
        "python -m vaenas.train arch=runs/oneshot-nasbench201-digits-20260101-000000 recipe=digits",
        "python -m vaenas.train arch=found.json recipe=cifar10 data.root=~/data",
        "torchrun --nproc-per-node 8 -m vaenas.train arch=found.json recipe=imagenet_nasnet data.root=/imagenet",
        "python -m vaenas.train --resume runs/retrain-cifar10-20260101-000000",
    ),
    run=run,
    run_name=lambda config: f"retrain-{config.recipe}",
    resumable_keys=RESUMABLE_KEYS,
    resume_overrides=("run.stop_at=null",),  # run.stop_at stopped the earlier process; this one runs to the end
    backend=backend,
    validate=validate,
    packaged=recipe_names(),
)


def recipe_as_config(argv: list[str]) -> list[str]:
    """argv with `recipe=NAME` turned into `--config NAME` (the packaged recipe is the config's base) for a
    new run; ConfigError for an unknown recipe or a recipe given twice (recipe= and --config)."""
    names = [argument.partition("=")[2] for argument in argv if argument.startswith("recipe=")]
    if not names or any(a == "--resume" or a.startswith("--resume=") for a in argv):
        return argv  # a resumed run reads its config.yaml; a recipe= override there is checked as any other key
    if any(a == "--config" or a.startswith("--config=") for a in argv):
        raise ConfigError("recipe: give the recipe once: recipe=<name> (a packaged recipe) or --config FILE "
                          "(a config of one's own), not both")
    if names[-1] not in recipe_names():
        raise unknown_recipe(names[-1])
    return ["--config", names[-1], *argv]


def main(argv: list[str] | None = None) -> int:
    """The retraining's command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" not in argv and "--help" not in argv:
        try:
            argv = recipe_as_config(argv)
        except ConfigError as error:
            print(f"{JOB.prog}: error: {error}", file=sys.stderr)
            return 2
    return run_cli(JOB, argv)

"""`python -m vaenas.search method=gradient [--config FILE] [--out DIR] [--resume RUN_DIR] [key=value ...]`.

Runs Algorithm 3 (vaenas.search.gradient.search) in a run folder, with the one-shot run's machinery
(RunFolder, checkpoint payload and config fingerprint, metrics log, torchrun):
    config.yaml, metrics.jsonl, checkpoints/    as the one-shot run
    architecture.json   the argmax architecture, its supernet score, softmax(w), diversity
    child.pt            its child network's state_dict (BN recalibrated)
    diversity.png       entropy of softmax(w) and distinct architectures trained over the run
                        (with gradient.baseline=true: VAE vs softmax sampling, the baseline run
                        in RUN_DIR/proxylessnas)
The command line itself (parser, run folder, exit status) is vaenas.search.cli's, shared by every method.
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

from vaenas.runtime import DistributedContext, checkpoint_payload, save_checkpoint
from vaenas.runtime.cli import run_cli
from vaenas.search.cli import method_cli
from vaenas.search.gradient.config import GradientConfig
from vaenas.search.gradient.report import plot_diversity, report
from vaenas.search.gradient.search import GradientSearch
from vaenas.search.oneshot import RESUMABLE_KEYS, start_search, supernet_backend

logger = logging.getLogger("vaenas.search.gradient")


def search_in(config: GradientConfig, run_dir: Path, resume: bool, ctx: DistributedContext) -> dict[str, Any] | None:
    """Algorithm 3 in run_dir; the result summary, or None when stopped at run.stop_at."""
    start, search = start_search(
        config, run_dir, resume, ctx,
        lambda data, device, metrics: GradientSearch(config, data, device, ctx.world_size, log=metrics,
                                                     rank=ctx.rank))
    if start.latest is not None:
        logger.info("resumed %s at step %d", start.latest, search.step)
    started = time.perf_counter()
    steps = config.train.steps
    bar = None
    if config.progress and ctx.is_main:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=search.step, desc=f"gradient ({config.gradient.sampling})", unit="step",
                   file=sys.stderr)
    every = config.run.checkpoint_every or steps
    end = steps if config.run.stop_at is None else config.run.stop_at
    while search.step < end:
        search.train(until=min(end, (search.step // every + 1) * every),
                     progress=(lambda step: bar.update(1)) if bar else None)
        if start.folder is not None:
            start.folder.save_checkpoint(checkpoint_payload(
                config=start.fingerprint, phase="train" if search.step < steps else "done",
                metrics_lines=start.metrics.lines, seconds=start.seconds_before + time.perf_counter() - started,
                state=search.state_dict()), search.step)
    if bar is not None:
        bar.close()
    if search.step < steps:
        logger.info("stopped at step %d (run.stop_at); continue with --resume %s", search.step, run_dir)
        return None
    summary = search.result()
    summary["seconds"] = start.seconds_before + time.perf_counter() - started
    summary["curve"] = search.curve
    if ctx.is_main:
        (run_dir / "architecture.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        child = search.export_child(torch.tensor(summary["tokens"]))
        save_checkpoint(run_dir / "child.pt", child.state_dict())
    return summary


def run(config: GradientConfig, run_dir: Path, resume: bool, ctx: DistributedContext) -> int:
    """Algorithm 3 in run_dir, then (gradient.baseline) plain ProxylessNAS in run_dir/proxylessnas,
    and the comparison; returns the exit status."""
    summary = search_in(config, run_dir, resume, ctx)
    if summary is None:
        return 0
    baseline = None
    if config.gradient.baseline:
        # plain ProxylessNAS, same seed and steps; resumable in its own folder
        base_config = dataclasses.replace(
            config, out=str(run_dir / "proxylessnas"),
            gradient=dataclasses.replace(config.gradient, sampling="softmax", baseline=False))
        base_dir = run_dir / "proxylessnas"
        resume_baseline = resume and (base_dir / "checkpoints").is_dir()
        baseline = search_in(base_config, base_dir, resume_baseline, ctx)
        if baseline is None:
            return 0
    if ctx.is_main:
        label = {"vae": "VAE sampling (VAENAS-G)", "softmax": "softmax sampling (ProxylessNAS)"}[
            config.gradient.sampling]
        curves = {f"{label}, mode {config.gradient.mode}": summary["curve"]}
        if baseline is not None:
            curves[f"softmax sampling (ProxylessNAS), mode {config.gradient.mode}"] = baseline["curve"]
        plot_diversity(run_dir / "diversity.png", curves, summary["max_entropy"])
        text = report(summary, baseline)
        (run_dir / "report.md").write_text(text + "\n")
        print(text)
        print(f"run folder: {run_dir}")
    return 0


METHOD = method_cli(
    "gradient",
    config_class=GradientConfig,
    description="Gradient-based VAENAS (paper Algorithm 3): ProxylessNAS architecture logits with binary gates "
    "on paths drawn from the VAE (gradient.sampling=softmax: plain ProxylessNAS).",
    examples=(
        "python -m vaenas.search method=gradient space=nasnet data=digits",
        "python -m vaenas.search method=gradient gradient.baseline=false  # VAENAS-G only, no ProxylessNAS run",
        "python -m vaenas.search method=gradient gradient.sampling=softmax gradient.baseline=false  # ProxylessNAS",
        "python -m vaenas.search --resume runs/gradient-nasnet-digits-20260101-000000",
    ),
    run=run,
    run_name=lambda config: f"gradient-{config.space}-{config.data.name}",
    resumable_keys=RESUMABLE_KEYS,
    resume_overrides=("run.stop_at=null",),
    backend=supernet_backend,
)


def main(argv: list[str] | None = None) -> int:
    """The gradient search's CLI (vaenas.search.__main__ dispatches here); returns the exit status."""
    return run_cli(METHOD, list(sys.argv[1:] if argv is None else argv))

"""The start every long job shares (a search method, a retraining): logging, device, the run folder
with its resolved config and metrics log, and the checkpoint a `--resume` continues from.

    start = start_run(config, run_dir, resume, ctx, resumable_keys=(...))
    ... build data and model on start.metrics; if start.saved: model.load_state_dict(start.saved["state"])
    folder.save_checkpoint(checkpoint_payload(config=start.fingerprint, phase=..., metrics_lines=
                           start.metrics.lines, state=...), step)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vaenas.config import flat_values, to_dict
from vaenas.runtime.checkpoints import check_run_checkpoint
from vaenas.runtime.distributed import DistributedContext
from vaenas.runtime.files import CheckpointError, load_checkpoint
from vaenas.runtime.run_folder import RunFolder

logger = logging.getLogger(__name__)


def setup_logging() -> None:
    """Every CLI's logging: INFO on rank 0, WARNING on the other ranks, on stderr."""
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    tag = f" [rank {rank}]" if world_size > 1 else ""
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s{tag} %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notices are noise here


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device a `device` option names: auto (cuda:LOCAL_RANK when available, else cpu), cuda
    (cuda:LOCAL_RANK), or any torch device string."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


class MetricsLog:
    """Rank 0's metrics log (RunFolder.log_metrics), counting its lines for the checkpoint; on the
    other ranks (folder None) it drops every record."""

    def __init__(self, folder: RunFolder | None) -> None:
        self.folder, self.lines = folder, 0

    def __call__(self, record: dict[str, Any]) -> None:
        if self.folder is not None:
            self.folder.log_metrics(record.get("step"), **{k: v for k, v in record.items() if k != "step"})
            self.lines += 1


def fingerprint(config: Any, resumable_keys: tuple[str, ...]) -> dict[str, Any]:
    """The flat {dotted key: value} of a config minus the keys a resumed run may change: what a
    checkpoint must match."""
    return {key: value for key, value in flat_values(config).items() if key not in resumable_keys}


class RunStart(NamedTuple):
    """A job's state before its work starts (start_run)."""

    folder: RunFolder | None  # rank 0's run folder; None on the other ranks
    metrics: MetricsLog
    fingerprint: dict[str, Any]
    latest: Path | None  # the checkpoint resumed from
    saved: dict[str, Any] | None  # its payload (vaenas.runtime.checkpoints)
    seconds_before: float  # wall time of the run's earlier processes (0 for a new run)


def newest_readable_checkpoint(run_dir: Path) -> tuple[Path, Any]:
    """(path, content) of the newest checkpoint in run_dir that loads; older ones stand in for a
    newer one that is truncated or corrupt (a kill or a full disk midway through a save), with a
    warning naming what was skipped. CheckpointError when none loads."""
    checkpoints = RunFolder(run_dir).checkpoints()
    if not checkpoints:
        raise CheckpointError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    skipped = []
    for path in reversed(checkpoints):
        try:
            saved = load_checkpoint(path)
        except CheckpointError as error:
            skipped.append(str(error))
            continue
        for problem in skipped:
            logger.warning("skipped %s; resuming from the older %s", problem, path.name)
        return path, saved
    raise CheckpointError(f"--resume {run_dir}: no checkpoint loads: " + "; ".join(skipped))


def start_run(
    config: Any, run_dir: Path, resume: bool, ctx: DistributedContext, *, resumable_keys: tuple[str, ...]
) -> RunStart:
    """The run folder (rank 0) and metrics log; with `resume`, the newest readable checkpoint of
    run_dir loaded and checked against the config, and the metrics log cut to its length; else
    config.yaml written."""
    folder = RunFolder(run_dir) if ctx.is_main else None
    metrics = MetricsLog(folder)
    config_fingerprint = fingerprint(config, resumable_keys)
    latest = saved = None
    if resume:
        latest, content = newest_readable_checkpoint(run_dir)
        saved = check_run_checkpoint(content, latest, config=config_fingerprint)
        metrics.lines = int(saved["metrics_lines"])
        if folder is not None:
            folder.truncate_metrics(metrics.lines)
    elif folder is not None:
        folder.write_config(to_dict(config))
    seconds = float(saved.get("seconds", 0.0)) if saved is not None else 0.0
    return RunStart(folder, metrics, config_fingerprint, latest, saved, seconds)

"""Checkpoints of a run, on vaenas.runtime.files (atomic save, weights_only load, CheckpointError),
with a check that a checkpoint belongs to the run that loads it.

A checkpoint is {"format", "version", "config" (the flat fingerprint of the resolved config: every
key that changes results), "phase", "metrics_lines" (records of metrics.jsonl when it was saved),
"seconds" (wall time of the run so far, all its processes), "state" (the job's state_dict)}. Loading one for a run whose config differs is a CheckpointError
naming the differences; a file torch cannot read (truncated, corrupt) is one too
(vaenas.runtime.files.load_checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaenas.runtime.files import CheckpointError, load_checkpoint

FORMAT, VERSION = "vaenas-run-checkpoint", 1


def checkpoint_payload(
    *, config: dict[str, Any], phase: str, metrics_lines: int, seconds: float, state: dict[str, Any]
) -> dict:
    """What a run saves: its config fingerprint, phase, metrics position and wall time next to its state."""
    return {"format": FORMAT, "version": VERSION, "config": config, "phase": phase,
            "metrics_lines": metrics_lines, "seconds": float(seconds), "state": state}


def load_run_checkpoint(path: Path, *, config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at `path`, checked against this run's config fingerprint."""
    return check_run_checkpoint(load_checkpoint(path), path, config=config)


def check_run_checkpoint(saved: Any, path: Path, *, config: dict[str, Any]) -> dict[str, Any]:
    """`saved` (what load_checkpoint read from `path`) if it is a checkpoint of a run with this
    config fingerprint; CheckpointError naming the differences otherwise."""
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a checkpoint of a vaenas run")
    if saved.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path}: version {saved.get('version')}, this code reads {VERSION}")
    theirs = saved["config"]
    absent = "<absent>"
    differences = [
        f"{key}: checkpoint {theirs.get(key, absent)!r}, this run {config.get(key, absent)!r}"
        for key in sorted(set(theirs) | set(config))
        if theirs.get(key, absent) != config.get(key, absent)
    ]
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise CheckpointError(f"checkpoint {path}: written with another config ({shown})")
    return saved

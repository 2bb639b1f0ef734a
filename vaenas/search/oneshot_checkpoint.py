"""Checkpoints of the one-shot search on vaenas.runtime (atomic save, weights_only load, CheckpointError),
with a check that a checkpoint belongs to this run.

A checkpoint is {"format", "version", "space", "config" (the flat fingerprint of the resolved
config, oneshot_config.fingerprint), "phase", "metrics_lines", "state" (OneShotSearch.state_dict)}.
Loading one for a run whose space or config differ is a CheckpointError naming the differences;
a file torch cannot read (truncated, corrupt) is one too (vaenas.runtime.load_checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaenas.runtime import CheckpointError, load_checkpoint

FORMAT, VERSION = "vaenas-oneshot-checkpoint", 1


def payload(*, space: str, config: dict[str, Any], phase: str, metrics_lines: int, state: dict[str, Any]) -> dict:
    return {"format": FORMAT, "version": VERSION, "space": space, "config": config,
            "phase": phase, "metrics_lines": metrics_lines, "state": state}


def load(path: Path, *, space: str, config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at `path`, checked against this run's space and config fingerprint."""
    saved = load_checkpoint(path)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a one-shot search checkpoint")
    if saved.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path}: version {saved.get('version')}, this code reads {VERSION}")
    if saved["space"] != space:
        raise CheckpointError(f"checkpoint {path}: written for space {saved['space']!r}, this run's space is {space!r}")
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

"""Checkpoint files of the one-shot search: written atomically, read with weights_only=True, checked.

A checkpoint is {"format", "version", "space", "config" (the flat fingerprint of the resolved
config, oneshot_config.fingerprint), "phase", "metrics_lines", "state" (OneShotSearch.state_dict)}.
Loading it for a run whose space or config differ is a CheckpointError naming the differences;
so is a file torch cannot read (truncated, corrupt, not a checkpoint).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT, VERSION = "vaenas-oneshot-checkpoint", 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, or written by another space or config."""


def write_atomic_torch(path: Path, payload: Any) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`: a reader
    (or a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save(path: Path, *, space: str, config: dict[str, Any], phase: str, metrics_lines: int,
         state: dict[str, Any]) -> None:
    write_atomic_torch(path, {"format": FORMAT, "version": VERSION, "space": space, "config": config,
                              "phase": phase, "metrics_lines": metrics_lines, "state": state})


def load(path: Path, *, space: str, config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at `path`, checked against this run's space and config fingerprint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there (was the run started with a checkpoint interval?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, bad pickle, unsafe type: all one answer
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated?): {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a one-shot search checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')}, this code reads {VERSION}")
    if payload["space"] != space:
        raise CheckpointError(f"{path}: checkpoint of space {payload['space']!r}, this run's space is {space!r}")
    saved = payload["config"]
    differences = [
        f"{key}: checkpoint {saved.get(key, '<absent>')!r}, this run {config.get(key, '<absent>')!r}"
        for key in sorted(set(saved) | set(config))
        if saved.get(key, "<absent>") != config.get(key, "<absent>")
    ]
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise CheckpointError(f"{path}: written with another config ({shown})")
    return payload

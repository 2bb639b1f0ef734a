"""The folder of one run: resolved config, metrics log, checkpoints, finished units of work.

    <run>/config.yaml                    the resolved config (write_config / read_config)
    <run>/metrics.jsonl                  one JSON object per line, appended (log_metrics)
    <run>/checkpoints/step-00001200.pt   save_checkpoint / latest_checkpoint
    <run>/<group>/<name>.json            a finished unit of work, e.g. seeds/seed-3.json (save_unit)

Everything except the metrics log is written atomically (vaenas.runtime.files), so a run killed at
any instant leaves a folder that loads and resumes: a unit or checkpoint is there whole or not at
all. The metrics log is appended line by line; a kill can cut its last line, which read_metrics
skips. Only rank 0 should write config, metrics and checkpoints; units may be written by the rank
that finished them (their names differ).

The rule every CLI follows (`claim_run_folder`): a new run needs a folder that does not exist or is
empty, so that a finished run is never overwritten; a resumed run needs the folder of a run (its
config.yaml). Either way the folder is locked (`RunFolder.lock`) for as long as the run writes in
it, so that two processes never write one run at once, and the temporary files that a killed
write left behind are removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import yaml

from vaenas.runtime.files import save_checkpoint, write_atomic

_CHECKPOINT = re.compile(r"^step-(\d+)\.pt$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


def default_run_path(name: str, root: str | os.PathLike = "runs") -> Path:
    """root/<name>-<YYYYmmdd-HHMMSS>: where a run goes when the user names no folder. Compute it
    on rank 0 only and broadcast it: ranks' clocks can straddle a second."""
    return Path(root) / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


class RunFolderError(RuntimeError):
    """A run folder that cannot serve: a finished run that a new one would overwrite, a folder in
    use by another process, a place that is not a writable folder."""


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{kind} {name!r}: use letters, digits and _ . = + - (no path separators)")
    return name


class RunFolder:
    """One run's folder (created if missing); see the module docstring for the layout."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # --- config -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def write_config(self, config: Mapping[str, Any] | Any) -> Path:
        """Write the resolved config (a mapping, or a dataclass instance) as YAML; returns its path."""
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)
        write_atomic(self.config_path, yaml.safe_dump(dict(config), sort_keys=False))
        return self.config_path

    def read_config(self) -> dict[str, Any]:
        """The config written by write_config; FileNotFoundError naming the file if there is none."""
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.config_path}: no config (is {self.path} a run folder?)")
        return yaml.safe_load(self.config_path.read_text()) or {}

    # --- metrics ------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log_metrics(self, step: int | None = None, **values: Any) -> None:
        """Append {"step": step, "time": unix time, **values} as one JSON line (JSON-able values).

        One write() of one line on a file opened for appending: the line survives a kill of this
        process once the call returns (not a power cut: no fsync, metrics are not worth one per step).
        """
        record = {"step": step, "time": round(time.time(), 3), **values}
        line = json.dumps(record, allow_nan=True) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(line)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete record of the metrics log, in order (a cut last line is skipped)."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # the line a kill cut short
            records.append(json.loads(line))
        return records

    def truncate_metrics(self, count: int) -> None:
        """Keep the first `count` records (e.g. the count saved with the checkpoint a run resumes
        from, so that the steps it repeats are not logged twice). Atomic."""
        kept = self.read_metrics()[:count]
        write_atomic(self.metrics_path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept))

    # --- checkpoints --------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_path(self, step: int) -> Path:
        """checkpoints/step-<step, 8 digits>.pt (names sort by step)."""
        if step < 0:
            raise ValueError(f"checkpoint step {step} < 0")
        return self.checkpoint_dir / f"step-{step:08d}.pt"

    def save_checkpoint(self, state: Any, step: int, keep: int | None = 2) -> Path:
        """Save `state` atomically as checkpoint `step`; then delete all but the newest `keep`
        checkpoints (None: keep all). The new one is complete before any old one goes."""
        if keep is not None and keep < 1:
            raise ValueError(f"keep={keep}: keep at least the checkpoint just saved (or None: all)")
        path = self.checkpoint_path(step)
        save_checkpoint(path, state)
        if keep is not None:
            for old in self.checkpoints()[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest step first (temporary files of interrupted saves excluded)."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoint_dir.iterdir() if (m := _CHECKPOINT.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint of the highest step, or None. Load it with vaenas.runtime.load_checkpoint."""
        checkpoints = self.checkpoints()
        return checkpoints[-1] if checkpoints else None

    # --- finished units of work ---------------------------------------------------------------
    def unit_path(self, group: str, name: str) -> Path:
        """<group>/<name>.json, e.g. unit_path("seeds", "seed-3")."""
        return self.path / _check_name("group", group) / f"{_check_name('unit', name)}.json"

    def save_unit(self, group: str, name: str, document: Any) -> Path:
        """Write one finished unit (a JSON-able document) atomically; returns its path."""
        path = self.unit_path(group, name)
        write_atomic(path, json.dumps(document, allow_nan=True) + "\n")
        return path

    def load_units(self, group: str) -> dict[str, Any]:
        """{name: document} of every finished unit of `group` ({} if none)."""
        folder = self.path / _check_name("group", group)
        if not folder.is_dir():
            return {}
        units = {}
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith("."):  # a temporary of an interrupted write is hidden (.tmp)
                continue
            try:
                units[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:  # atomic writes never leave one
                raise ValueError(f"{path}: not a readable unit ({error}); delete it to redo that unit") from None
        return units

    # --- one writer at a time -----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (an flock on <run>/.lock, released when the block ends or the
        process dies) and name the holder in it. RunFolderError naming the holder if another
        process holds it."""
        handle = open(self.path / ".lock", "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunFolderError(f"{self.path} is in use by {holder}; two processes writing one run folder would "
                                 "mix their outputs: wait for that one to end") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now():%Y-%m-%d %H:%M:%S}\n")
            handle.flush()
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files (.<name>.<pid>.<random>.tmp) that writes killed midway left in
        the folder, its checkpoints and its unit groups; call it while holding the lock (no write of
        this run is under way then). Returns what it deleted."""
        removed = []
        for folder in [self.path, *(p for p in self.path.iterdir() if p.is_dir())]:
            for temporary in folder.glob(".*.tmp"):
                temporary.unlink(missing_ok=True)
                removed.append(temporary)
        return removed


def claim_run_folder(path: str | os.PathLike, resume: bool) -> RunFolder:
    """The RunFolder of a new run (`path` absent or an empty folder, created) or of a run to resume
    (`path` holds its config.yaml); RunFolderError saying what is wrong and what to do instead.
    Lock it before writing (RunFolder.lock)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} is a file, not a folder: choose a folder for the run's outputs")
    if resume:
        if not (path / "config.yaml").is_file():
            raise RunFolderError(f"--resume {path}: no config.yaml there (not a run folder of vaenas)")
    elif path.is_dir() and any(p.name != ".lock" for p in path.iterdir()):
        if (path / "config.yaml").is_file():
            raise RunFolderError(f"{path} already holds a run: continue it with --resume {path}, or choose "
                                 "another --out")
        raise RunFolderError(f"{path} is not empty: choose a new or empty folder for the run's outputs (--out)")
    try:
        folder = RunFolder(path)
        probe = folder.path / f".write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RunFolderError(f"{path}: cannot write there ({error.strerror or error})") from None
    return folder

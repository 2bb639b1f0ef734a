"""The command line every long job shares (the search methods, the retraining): one parser, one way
to start and to resume a run.

    <command> [--config FILE] [--out DIR] [key=value ...]
    <command> --resume RUN_DIR [key=value ...]

Each kind of job describes itself with a `JobCLI` (its config class, its `run`, which keys a resumed
run may change); `run_cli` does the rest, the same way for all:
- options: `--config` (a YAML file or a packaged config's name), `--out`, `--resume`, then key=value
  overrides in any order (before or after the flags);
- a new run needs a new or empty folder (a finished run is never overwritten); `--resume` takes the
  folder's own config.yaml (neither --config nor --out), refuses overrides of keys that change
  results, and names the folder's job when it is another one;
- rank 0 locks the run folder while the run writes (vaenas.runtime.claim_run_folder);
- exit status 0 done, 2 a bad config or command line, 1 bad data, ground truth or checkpoint,
  130 interrupted (Ctrl-C: the message says how to continue).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaenas.config import ConfigError, describe_options, flat_values, load_config, read_yaml
from vaenas.runtime.distributed import DistributedContext, distributed_run
from vaenas.runtime.files import CheckpointError
from vaenas.runtime.job import setup_logging
from vaenas.runtime.run_folder import RunFolderError, claim_run_folder, default_run_path

logger = logging.getLogger(__name__)


def resume_command(job: str) -> str:
    """The command that resumes a folder of `job` (its config.yaml's `method`)."""
    return "python -m vaenas.train" if job == "retrain" else "python -m vaenas.search"


@dataclass(frozen=True)
class JobCLI:
    """What the shared command line needs to know of one kind of job (a search method, a retraining)."""

    #: what the folder's config.yaml says under `method` (tabular, oneshot, gradient, retrain)
    name: str
    #: the command that starts it, e.g. "python -m vaenas.search method=oneshot"
    prog: str
    config_class: type
    description: str
    examples: tuple[str, ...]
    #: run(config, run_dir, resume, ctx) -> exit status; rank 0 writes inside it, in the claimed folder
    run: Callable[[Any, Path, bool, DistributedContext], int]
    #: the default folder's name under runs/ (a time stamp is appended)
    run_name: Callable[[Any], str]
    #: keys a resumed run may set differently (they do not change results)
    resumable_keys: tuple[str, ...]
    #: overrides applied before the user's when resuming (e.g. run.stop_at=null)
    resume_overrides: tuple[str, ...] = ()
    #: what an interrupted run keeps, for the Ctrl-C message
    keeps: str = "its last checkpoint"
    #: the process-group backend for a config (None: nccl with CUDA, else gloo)
    backend: Callable[[Any], str | None] = lambda config: "gloo"
    #: checks of a config that need more than the config (e.g. the benchmark's size), made before any
    #: folder is claimed; ConfigError, or the errors run_cli maps to exit status 1
    validate: Callable[[Any], None] = lambda config: None
    #: the other jobs a --help names, e.g. "methods: method=tabular (the default), ..."
    siblings: str = ""
    #: packaged configs --config accepts by name
    packaged: tuple[str, ...] = ()


def parser(method: JobCLI) -> argparse.ArgumentParser:
    """The argument parser of `method` (its --help lists every key of its config)."""
    result = argparse.ArgumentParser(
        prog=method.prog,
        description=f"{method.description}\n\n" + (f"{method.siblings}\n\n" if method.siblings else "")
        + "Options are set in a YAML file (--config) and/or as key=value, before or after the flags.",
        epilog="options (key=default (type) description):\n"
        + "\n".join(describe_options(method.config_class()))
        + "\n\nexamples:\n" + "\n".join(f"  {example}" for example in method.examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("--config", help="YAML config file" + (f", or a packaged one: {', '.join(method.packaged)}"
                                                                if method.packaged else ""))
    result.add_argument("--out", help="run folder, new or empty (default: runs/<name>-<time>)")
    result.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR with its own config.yaml (overrides may change only "
                        + ", ".join(method.resumable_keys) + ")")
    result.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (the keys are listed below)")
    return result


def load_run_config(method: JobCLI, arguments: argparse.Namespace) -> tuple[Any, Path | None]:
    """(config, folder to resume or None) of a command line; ConfigError for a bad one."""
    overrides = list(arguments.overrides)
    if arguments.resume is None:
        config = load_config(arguments.config, overrides + ([f"out={arguments.out}"] if arguments.out else []),
                             cls=method.config_class)
        return config, None
    run_dir = Path(arguments.resume)
    if arguments.config or arguments.out:
        raise ConfigError("--resume takes the run folder's own config: give neither --config nor --out")
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there (not a run folder of vaenas.search)")
    theirs = read_yaml(saved).get("method", "tabular")  # the tabular study's folders before it had the key
    if theirs != method.name:
        raise ConfigError(f"--resume {run_dir}: the folder holds a {theirs} run, not a {method.name} one; continue "
                          f"it with `{resume_command(theirs)} --resume {run_dir}`")
    here = [*method.resume_overrides, f"out={run_dir}"]
    config = load_config(saved, [*method.resume_overrides, *overrides, f"out={run_dir}"], cls=method.config_class)
    before, after = flat_values(load_config(saved, here, cls=method.config_class)), flat_values(config)
    changed = sorted(key for key in before.keys() | after.keys()
                     if before.get(key) != after.get(key) and key not in method.resumable_keys)
    if changed:
        raise ConfigError(f"--resume: {', '.join(changed)} would differ from the run's config.yaml, with which "
                          f"its results so far were computed (only {', '.join(method.resumable_keys)} may change)")
    return config, run_dir


@contextlib.contextmanager
def claimed_folder(ctx: DistributedContext, config: Any, method: JobCLI, resume_dir: Path | None) -> Iterator[Path]:
    """The run's folder on every rank, claimed and locked by rank 0 for the block: rank 0 names it
    (a default name carries rank 0's clock) and checks it; every rank raises its RunFolderError."""
    with contextlib.ExitStack() as held:
        answer = None
        if ctx.is_main:
            path = resume_dir or (Path(config.out) if config.out else default_run_path(method.run_name(config)))
            try:
                folder = claim_run_folder(path, resume=resume_dir is not None)
                held.enter_context(folder.lock())
                for temporary in folder.remove_temporaries():
                    logger.info("removed %s, left by a write that was killed", temporary)
                answer = (str(path), None)
            except RunFolderError as problem:
                answer = (str(path), str(problem))
        path, error = ctx.broadcast_object(answer)
        if error is not None:
            raise RunFolderError(error)
        yield Path(path)


def run_cli(method: JobCLI, argv: list[str]) -> int:
    """Parse argv, claim the run folder and run `method` in it; returns the exit status."""
    from vaenas.data import DataError  # here: vaenas.data sits above vaenas.runtime
    from vaenas.groundtruth import GroundTruthError

    arguments = parser(method).parse_intermixed_args(argv)
    setup_logging()
    run_dir: Path | None = None
    try:
        config, run_dir = load_run_config(method, arguments)
        method.validate(config)
        resume_dir = run_dir
        with distributed_run(method.backend(config)) as ctx, claimed_folder(ctx, config, method, resume_dir) as run_dir:
            return method.run(config, run_dir, resume_dir is not None, ctx)
    except (ConfigError, RunFolderError) as error:
        print(f"{method.prog}: error: {error}", file=sys.stderr)
        return 2
    except (DataError, GroundTruthError, CheckpointError) as error:
        print(f"{method.prog}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = f"{run_dir} keeps {method.keeps}; continue with `{resume_command(method.name)} --resume {run_dir}`" \
            if run_dir is not None else "nothing was written yet"
        print(f"\n{method.prog}: interrupted: {where}", file=sys.stderr)
        return 130

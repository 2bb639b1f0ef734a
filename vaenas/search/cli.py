"""What the search methods' command lines share beyond vaenas.runtime.cli: the methods, which one an
argument list asks for (`method_of`), and each method's JobCLI (`method_cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaenas.config import ConfigError, read_yaml
from vaenas.runtime.cli import JobCLI
from vaenas.search import PACKAGED_CONFIGS

#: the methods of `python -m vaenas.search method=...` (the first is the default)
METHODS = ("tabular", "oneshot", "gradient")


def method_of(argv: list[str]) -> str:
    """The method an argument list asks for: a method= override, else the --config file's or the
    --resume folder's `method`, else 'tabular'. Unreadable files are left to the method's loader."""
    for argument in argv:
        if argument.startswith("method="):
            return argument.partition("=")[2].strip()
    for flag, name in (("--config", None), ("--resume", "config.yaml")):
        value = _flag_value(argv, flag)
        if value is None:
            continue
        try:
            tree = read_yaml(Path(value) / name if name else value, PACKAGED_CONFIGS)
        except (ConfigError, OSError):
            continue
        if isinstance(tree.get("method"), str):
            return tree["method"]
    return METHODS[0]


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of `--flag VALUE` or `--flag=VALUE` in argv, or None."""
    for index, argument in enumerate(argv):
        if argument.startswith(flag + "="):
            return argument.partition("=")[2]
        if argument == flag and index + 1 < len(argv):
            return argv[index + 1]
    return None


def method_cli(name: str, **fields: Any) -> JobCLI:
    """The JobCLI of search method `name`: its command, the other methods in its --help, its packaged configs."""
    methods = ", ".join(f"method={m}" + (" (the default)" if m == METHODS[0] else "") for m in METHODS)
    return JobCLI(
        name=name,
        prog="python -m vaenas.search" + ("" if name == METHODS[0] else f" method={name}"),
        siblings=f"methods: {methods}; `python -m vaenas.search method=<method> --help` lists that method's keys.",
        packaged=tuple(sorted(p.stem for p in PACKAGED_CONFIGS.glob(f"{name}_*.yaml"))),
        **fields,
    )

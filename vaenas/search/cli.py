"""What the methods' command lines share: which method an argument list asks for (`method_of`)."""

from __future__ import annotations

from pathlib import Path

from vaenas.config import ConfigError, read_yaml
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
        for index, argument in enumerate(argv):
            value = argument.partition("=")[2] if argument.startswith(flag + "=") else (
                argv[index + 1] if argument == flag and index + 1 < len(argv) else None)
            if value is None:
                continue
            try:
                tree = read_yaml(Path(value) / name if name else value, PACKAGED_CONFIGS)
            except (ConfigError, OSError):
                continue
            if isinstance(tree.get("method"), str):
                return tree["method"]
    return METHODS[0]

"""`python -m vaenas.search [method=tabular|oneshot|gradient] [--config FILE] [--out DIR] [--resume RUN_DIR] [key=value ...]`.

The one CLI of every search method. The method comes from `method=`, else from the --config file
or the --resume folder's config.yaml, else it is the tabular study (the default job: NAS-Bench-201
CIFAR-10, about two minutes on 2 CPU cores). Each method's own CLI is its package's `cli.main`.
"""

from __future__ import annotations

import sys

from vaenas.search.cli import METHODS, method_of


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    method = method_of(argv)
    # imported on demand: each method's modules (supernets, data loaders) are only needed when it runs
    if method == "tabular":
        from vaenas.search.tabular.cli import main as method_main
    elif method == "oneshot":
        from vaenas.search.oneshot.cli import main as method_main
    elif method == "gradient":
        from vaenas.search.gradient.cli import main as method_main
    elif method == "retrain":  # a --resume of a retraining folder (or its config)
        print("python -m vaenas.search: error: that is a retraining run (method: retrain); continue it with "
              "`python -m vaenas.train --resume RUN_DIR`", file=sys.stderr)
        return 2
    else:
        print(f"python -m vaenas.search: error: method: unknown value {method!r}; choose one of {', '.join(METHODS)}",
              file=sys.stderr)
        return 2
    return method_main(argv)


if __name__ == "__main__":
    sys.exit(main())

"""pytest-benchmark setup for bench/: collect bench_*.py, print ratios to the reference at the end.

Each benchmark records its median in the session's results (the `decode_results` fixture);
`pytest_terminal_summary` prints one table: architectures per second, the speedup over the
reference measured in the same run (reference median / backend median per size and M), and the
achieved FLOP/s of the matrix products on a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

RESULTS = pytest.StashKey[dict]()
SUPERNET_RESULTS = pytest.StashKey[dict]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # a file named on the command line is collected by pytest itself: collecting it here too ran it twice
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture
def decode_results(request: pytest.FixtureRequest) -> dict:
    """{(device, size, M): {backend: {"median": s, "flops": n}}}, shared by the whole session."""
    return request.config.stash.setdefault(RESULTS, {})


@pytest.fixture
def supernet_results(request: pytest.FixtureRequest) -> dict:
    """{(what, device, unit): {variant: throughput}}, shared by the whole session; the first
    variant of each row is the baseline of its ratios."""
    return request.config.stash.setdefault(SUPERNET_RESULTS, {})


def _versions(cuda: bool) -> str:
    versions = f"torch {torch.__version__}"
    if "triton" in sys.modules:
        versions += f", triton {sys.modules['triton'].__version__}"
    if cuda:
        versions += f", {torch.cuda.get_device_name()}"
    return versions


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    _supernet_summary(terminalreporter, config.stash.get(SUPERNET_RESULTS, {}))
    results = config.stash.get(RESULTS, {})
    if not results:
        return
    versions = _versions(any(device == "cuda" for device, _, _ in results))
    terminalreporter.section(f"vae_decode: architectures/s and speedup over the reference ({versions})")
    terminalreporter.write_line(
        f"{'device':6} {'size':10} {'M':>8} {'backend':9} {'median ms':>10} {'arch/s':>11} {'ratio':>7} {'GFLOP/s':>8}"
    )
    for (device, size, num_rows), backends in sorted(results.items()):
        reference = backends.get("reference", {}).get("median")
        for backend, measured in backends.items():
            median = measured["median"]
            ratio = f"{reference / median:7.2f}" if reference else f"{'n/a':>7}"
            gflops = f"{measured['flops'] / median / 1e9:8.0f}" if device == "cuda" else f"{'':8}"
            terminalreporter.write_line(
                f"{device:6} {size:10} {num_rows:8d} {backend:9} {median * 1e3:10.2f} "
                f"{num_rows / median:11.0f} {ratio} {gflops}"
            )


def _supernet_summary(terminalreporter: pytest.TerminalReporter, results: dict) -> None:
    """One line per variant: throughput and its ratio to the row's first variant (the baseline)."""
    if not results:
        return
    terminalreporter.section(f"supernet: throughput and speedup over the baseline ({_versions(any(d == 'cuda' for _, d, _ in results))})")
    terminalreporter.write_line(f"{'what':48} {'device':6} {'variant':14} {'throughput':>16} {'ratio':>7}")
    for (what, device, unit), variants in sorted(results.items()):
        baseline = next(iter(variants.values()))
        for variant, value in variants.items():
            ratio = f"{value / baseline:7.2f}" if unit != "%" else ""  # shares are not ratios
            terminalreporter.write_line(f"{what:48} {device:6} {variant:14} {value:10.1f} {unit:>5} {ratio}")

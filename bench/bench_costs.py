"""Cost benchmark: architectures costed per second, the cost table against building the child.

Baseline: `space.cost(arch, image_size, **options)` on architectures it has not seen (its cache
never hits for random NASNet / ShuffleNet strings): build_child, one FlopCounterMode forward.
Fast path: `space.cost_model(...).costs(archs)` on BENCH_COST_ARCHS (default 10,000) random
architectures at once, token and validity checks included. Both on the space's default child
(NASNet: DARTS's CIFAR network, C 36, 20 cells, 32 px; ShuffleNet: 224 px, width 1.0; NAS-Bench-201:
16 channels, 5 cells per stage, 32 px; NAS-Bench-101: 128 stem channels, 3 x 3 cells, 32 px), in one
process at one thread (torch.set_num_threads(1)). Best of BENCH_COST_ROUNDS rounds (default 5) for the
table, BENCH_COST_BUILDS built children (default 5) for the baseline; wall time and process CPU time.
The table's one-off counting (probe children on the meta device) is reported beside it. Issue 21's
goal: >= 1000x, 10,000 NASNet architectures in under 0.1 s.

    pytest bench/bench_costs.py -q -s
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from vaenas.spaces import get_space
from vaenas.spaces.cost_table import cost_model

ARCHS = int(os.environ.get("BENCH_COST_ARCHS", "10000"))
ROUNDS = int(os.environ.get("BENCH_COST_ROUNDS", "5"))
BUILDS = int(os.environ.get("BENCH_COST_BUILDS", "5"))


def _timed(function) -> tuple[float, float]:
    """(wall s, process CPU s) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


@pytest.mark.parametrize("name", ["nasnet", "shufflenet", "nasbench201", "nasbench101"])
def test_cost_table_against_building_the_child(name: str, supernet_results: dict) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        space = get_space(name)
        generator = torch.Generator().manual_seed(0)
        built_archs = space.sample(BUILDS + 1, generator)
        space.cost(built_archs[0])  # the first call's one-off start (about a second), not timed
        build = [_timed(lambda arch=arch: space.cost(arch)) for arch in built_archs[1:]]
        build_wall = min(w for w, _ in build)
        build_cpu = min(c for _, c in build)
        one_off = _timed(lambda: cost_model(space))
        table = cost_model(space)
        archs = space.sample(ARCHS, generator)
        rounds = [_timed(lambda: table.costs(archs)) for _ in range(ROUNDS)]
        table_wall, table_cpu = min(w for w, _ in rounds), min(c for _, c in rounds)
        for arch, row in zip(built_archs[1:3], table.costs(built_archs[1:3]).tolist()):  # the same numbers
            assert list(space.cost(arch).values()) == row
    finally:
        torch.set_num_threads(threads)
    per_arch_table = table_wall / ARCHS
    print(f"\n{name}: building the child {build_wall * 1e3:.1f} ms wall / {build_cpu * 1e3:.1f} ms CPU per "
          f"architecture (best of {BUILDS}); the table {ARCHS} architectures in {table_wall * 1e3:.2f} ms wall / "
          f"{table_cpu * 1e3:.2f} ms CPU (best of {ROUNDS}), {per_arch_table * 1e6:.2f} us each; ratio "
          f"{build_wall / per_arch_table:,.0f}x wall, {build_cpu / (table_cpu / ARCHS):,.0f}x CPU; "
          f"table counted once in {one_off[0]:.2f} s wall")
    row = supernet_results.setdefault((f"costed {name} architectures (1 thread)", "cpu", "arch/s"), {})
    row["build child"] = 1.0 / build_wall
    row["cost table"] = ARCHS / table_wall

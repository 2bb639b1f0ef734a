"""Gradient synchronisation of the one-shot step: ours vs DistributedDataParallel (issue 6 §3).

    python -m torch.distributed.run --nproc-per-node 2 bench/oneshot_allreduce.py [steps]

Per training step (same supernet, same architectures on every rank, gloo on CPU), median of
`steps` steps after 5 warm-up steps, in ms:
  used:      vaenas.search.oneshot.train.allreduce_used_gradients (flat buckets of the used parameters only)
  all:       the same all-reduce of EVERY parameter (unused ones zero-filled): the cost a run with
             no unused parameters pays, i.e. the baseline
  ddp_find:  DDP(find_unused_parameters=True) (graph walk each step, reduces every bucket); on
             this supernet its reducer raises "Encountered gradient which is undefined, but still
             allreduced" (some candidate outputs carry undefined gradients), so it is last
Rank 0 prints one line per variant.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from vaenas.runtime import distributed_run
from vaenas.search.oneshot.train import allreduce_used_gradients
from vaenas.spaces import get_space
from vaenas.supernet import get_supernet


def main(steps: int) -> None:
    torch.set_num_threads(1)
    with distributed_run("gloo") as context:
        space = get_space("nasbench201")
        torch.manual_seed(0)
        supernet = get_supernet(space, channels=16, cells_per_stage=2)
        params = [p for p in supernet.parameters()]
        generator = torch.Generator().manual_seed(0)
        images, labels = torch.randn(32, 3, 16, 16), torch.randint(10, (32,))
        ddp = DistributedDataParallel(supernet, find_unused_parameters=True, broadcast_buffers=False)

        def step(variant: str) -> tuple[float, float]:
            archs = space.sample(1, generator)
            for p in params:
                p.grad = None
            start = time.perf_counter()
            model = ddp if variant == "ddp_find" else supernet
            loss = F.cross_entropy(model(images, archs), labels)
            loss.backward()
            backward_done = time.perf_counter()
            if variant == "used":
                allreduce_used_gradients(params, context.world_size)
            elif variant == "all":
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                allreduce_used_gradients(params, context.world_size)
            end = time.perf_counter()
            return end - start, end - backward_done

        for variant in ("used", "all", "ddp_find"):
            totals, syncs = [], []
            try:
                for index in range(steps + 5):
                    total, sync = step(variant)
                    if index >= 5:
                        totals.append(total)
                        syncs.append(sync)
            except RuntimeError as error:  # measured (torch 2.x): DDP's reducer rejects the supernet
                if context.is_main:
                    print(f"{variant:9s} fails: {str(error).splitlines()[0][:120]}")
                break
            if context.is_main:
                print(f"{variant:9s} step {1e3 * statistics.median(totals):7.2f} ms   "
                      f"sync after backward {1e3 * statistics.median(syncs):6.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)

"""Peak memory and time of one architecture step of the gradient search (paper Algorithm 3, line 3)
on the NASNet-like supernet (C = 16, 8 layers, 32 px, batch 64, 10 classes), by mixed-op variant:

- two:            vaenas.ops.gated_mixed_op, mode two: the active path runs, the second path's
                  output is recomputed in backward under no_grad (ProxylessNAS full_v2 / NNI);
- full-recompute: the same op, mode full (every candidate recomputed in backward, one at a time);
- naive-two:      the two paths both run with autograd and both outputs (and activations) are
                  stored (the reference backend, mode two);
- darts:          every candidate runs with autograd and is stored (the reference backend, mode
                  full: the memory pattern of a DARTS mixed op).
The step is forward with gates + backward (logits' and weights' gradients), the same architecture
and second paths for every variant. The weight step (Algorithm 3 line 4) is a plain one-path
step, the same for all variants, and is not timed here.

Peak memory: on a GPU, torch.cuda.max_memory_allocated above what was allocated before the step;
on the CPU, the process's peak resident set (getrusage ru_maxrss) above its resident set before
the step, each variant in its own process (ru_maxrss never goes down). Time: median of `--steps`
steps after the first, wall and the process's CPU time (on a shared CPU the wall time follows the
other jobs' load; with one thread the CPU time is the step's own work).

    python bench/bench_gated.py [--device cpu|cuda] [--steps 3] [--variants two,naive-two,darts]
Goal (issue 7): two's peak <= 1/3 of darts's, at no more than naive-two's time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("two", "full-recompute", "naive-two", "darts")


def _resident_bytes() -> int:
    """The process's current resident set (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(variant: str, device_name: str, steps: int, batch: int) -> dict:
    """One variant in this process: {variant, peak_mb, step_s, ...}."""
    import torch
    import torch.nn.functional as F

    from vaenas import ops
    from vaenas.search.gradient import initial_logits
    from vaenas.spaces import get_space
    from vaenas.supernet import get_supernet
    from vaenas.supernet.gates import Gates

    device = torch.device(device_name)
    space = get_space("nasnet")
    torch.manual_seed(0)
    supernet = get_supernet(space, C=16, layers=8, num_classes=10).to(device).train()
    logits = initial_logits(space, device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(10, (batch,), generator=generator).to(device)
    arch = space.sample(1, generator)
    other = ops.draw_other_path(logits, arch[0], generator)
    gates = {
        "two": Gates(logits, "two", other),
        "full-recompute": Gates(logits, "full"),
        "naive-two": Gates(logits, "two", other, backend="reference"),
        "darts": Gates(logits, "full", backend="reference"),
    }[variant]

    def step() -> None:
        supernet.zero_grad(set_to_none=True)
        logits.grad = None
        F.cross_entropy(supernet(images, arch, gates=gates), labels).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        step()  # cuDNN / allocator warm-up, then the peak of a step from a clean baseline
        supernet.zero_grad(set_to_none=True)
        logits.grad = None
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before = _resident_bytes()
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times, cpu_times = [], []
    for _ in range(steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    return {"variant": variant, "device": device_name, "batch": batch, "peak_mb": peak / 2**20,
            "step_s": statistics.median(times), "cpu_s": statistics.median(cpu_times),
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one variant, print JSON
    arguments = parser.parse_args(argv)
    if arguments.one:
        print(json.dumps(measure(arguments.one, arguments.device, arguments.steps, arguments.batch)))
        return 0
    rows = []
    for variant in arguments.variants.split(","):
        # a fresh process per variant: ru_maxrss is a high-water mark of the whole process
        command = [sys.executable, __file__, "--one", variant, "--device", arguments.device,
                   "--steps", str(arguments.steps), "--batch", str(arguments.batch)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    darts = next((r for r in rows if r["variant"] == "darts"), None)
    print(f"\nNASNet supernet C=16, 8 layers, 32 px, batch {arguments.batch}, {arguments.device}: "
          "one architecture step (gated forward + backward)")
    print("| variant | peak memory (MiB) | vs darts | step time (s) | process CPU time (s) |\n|---|---|---|---|---|")
    for row in rows:
        ratio = f"{row['peak_mb'] / darts['peak_mb']:.2f}" if darts else "-"
        print(f"| {row['variant']} | {row['peak_mb']:.0f} | {ratio} | {row['step_s']:.3f} | {row['cpu_s']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

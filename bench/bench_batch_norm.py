"""Segmented batch norm + ReLU, forward + backward (one training step's worth), fused against the
PyTorch composite, in the same run (issue 19 item 2).

Variants, the first the baseline of the ratios:
- composite: vaenas.ops.reference.segmented_batch_norm (PyTorch elementwise ops, autograd);
- aten:      PyTorch's fused batch norm per segment view, torch.cat, then ReLU in place;
- fused:     the fused op of the device: C++ on the CPU (csrc/cpu/segmented_batch_norm.cpp),
             Triton on a GPU (kernels/segmented_batch_norm.py).
Shapes: the NB201 supernet's batch norms at G = 16 segments of 8 images (C = 16 at 32 px,
C = 64 at 8 px) and one G = 1 ResNet-like layer; channels-last (the supernets' layout) and NCHW.
CPU: interleaved rounds, best of each; process CPU time at one thread (robust to the shared
machine's load) and wall time at one and two threads. GPU: median of pytest-benchmark rounds,
with GB/s against the bytes a fused step must move (x, y read/written, grad, x again, dx: 5
passes of the tensor). The Triton interpreter is no speed path: the GPU figures need a GPU.
Goals (issue 19): >= 1.5x the composite on 2 CPU cores; >= 2x and >= 70 % of HBM bandwidth on a GPU.

    pytest bench/bench_batch_norm.py -q
"""

from __future__ import annotations

import time

import pytest
import torch

from vaenas import ops

#: (label, segments, rows per segment, channels, pixels a side)
SHAPES = (
    ("G=16 C=16 32px", 16, 8, 16, 32),
    ("G=16 C=64 8px", 16, 8, 64, 8),
    ("G=1 C=64 16px", 1, 64, 64, 16),
)
CPU_VARIANTS = ("reference", "aten", "cpu")
LABELS = {"reference": "composite", "aten": "aten", "cpu": "fused C++", "triton": "fused Triton"}


def _inputs(shape: tuple, device: torch.device, memory_format: torch.memory_format) -> tuple:
    _, segments, rows, channels, side = shape
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(segments * rows, channels, side, side, generator=generator).to(device)
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    weight = torch.randn(channels, generator=generator).to(device).requires_grad_()
    bias = torch.randn(channels, generator=generator).to(device).requires_grad_()
    upstream = torch.randn(x.shape, generator=generator).to(device).contiguous(memory_format=memory_format)
    return x, weight, bias, upstream


def _step(backend: str, segments: int, x, weight, bias, upstream) -> None:
    """Forward and backward of batch norm + ReLU with batch statistics (a training step)."""
    x.grad = weight.grad = bias.grad = None
    y, _, _ = ops.segmented_batch_norm(x, segments, weight, bias, activation="relu", backend=backend)
    y.backward(upstream)


def _best_times(shape: tuple, memory_format: torch.memory_format, threads: int, steps: int = 5) -> dict:
    """{variant: (cpu_s, wall_s) per step}: variants interleaved over 3 rounds, best round each."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    best: dict[str, tuple[float, float]] = {}
    try:
        inputs = _inputs(shape, torch.device("cpu"), memory_format)
        for _ in range(3):
            for variant in CPU_VARIANTS:
                _step(variant, shape[1], *inputs)  # warm (allocator, first-call costs)
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(steps):
                    _step(variant, shape[1], *inputs)
                cpu, wall = (time.process_time() - cpu) / steps, (time.perf_counter() - wall) / steps
                if variant not in best or cpu < best[variant][0]:
                    best[variant] = (cpu, wall)
    finally:
        torch.set_num_threads(previous)
    return best


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format], ids=["NHWC", "NCHW"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_segmented_batch_norm_relu_cpu(benchmark, supernet_results: dict, shape: tuple, memory_format) -> None:
    layout = "NHWC" if memory_format == torch.channels_last else "NCHW"
    measured = {}

    def rounds() -> None:
        measured[1] = _best_times(shape, memory_format, threads=1)
        measured[2] = _best_times(shape, memory_format, threads=2)

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    for clock, threads, index in (("CPU time, 1 thread", 1, 0), ("wall, 1 thread", 1, 1), ("wall, 2 threads", 2, 1)):
        row = supernet_results.setdefault((f"BN+ReLU fwd+bwd {shape[0]} {layout} ({clock})", "cpu", "steps/s"), {})
        for variant in CPU_VARIANTS:
            row[LABELS[variant]] = 1.0 / measured[threads][variant][index]
    benchmark.extra_info.update({f"{variant} cpu_ms": measured[1][variant][0] * 1e3 for variant in CPU_VARIANTS})


@pytest.mark.cuda
@pytest.mark.parametrize("variant", ["reference", "aten", "triton"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_segmented_batch_norm_relu_cuda(benchmark, supernet_results: dict, shape: tuple, variant: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    inputs = _inputs(shape, torch.device("cuda"), torch.channels_last)

    def step() -> None:
        _step(variant, shape[1], *inputs)
        torch.cuda.synchronize()

    benchmark.pedantic(step, rounds=20, warmup_rounds=3)
    median = benchmark.stats.stats.median
    gigabytes = 5 * inputs[0].numel() * inputs[0].element_size() / 1e9
    supernet_results.setdefault((f"BN+ReLU fwd+bwd {shape[0]} NHWC", "cuda", "steps/s"), {})[LABELS[variant]] = 1 / median
    benchmark.extra_info["GB/s"] = gigabytes / median

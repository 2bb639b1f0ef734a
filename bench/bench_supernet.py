"""Supernet benchmarks: many architectures per pass against the one-at-a-time SPOS loop.

(a) Evaluation throughput (architectures/s) of `evaluate_architectures` on the NAS-Bench-201
    supernet (C=16, N=5, 32 px, 10 classes), the same architectures, recalibration and held-out
    images in the same run. CPU (16 architectures, 32 recalibration and 64 held-out images, one
    thread, CPU time and wall time): G = 1 and G = 16 with the reference ops in NCHW (before issue
    19: gather / scatter routing) against G = 1 and G = 16 channels-last with route_sum on views.
    Goals (issue 19): G = 16 >= G = 1 and >= 2x the reference G = 16. GPU: G = 64 against G = 1,
    64 architectures, 4 x 64 and 4 x 256 images, bf16 autocast, channels-last.
(c) ShuffleNet-like supernet training throughput (images/s) at 224 px, batch 256, bf16 autocast,
    channels-last, one SPOS step (G = 1) per batch (GPU only).

The speedup table is printed at the end of `pytest bench/` (bench/conftest.py).
"""

from __future__ import annotations

import time

import pytest
import torch

from vaenas.spaces import get_space
from vaenas.supernet import get_supernet
from vaenas.supernet.evaluation import evaluate_architectures

EVAL_SIZES = {  # device -> (architectures, calibration batches x size, held-out batches x size)
    "cpu": (16, (1, 32), (1, 64)),
    "cuda": (64, (4, 64), (4, 256)),
}
#: the variants of the CPU comparison: (label, group size, memory format, backend of the supernet ops);
#: the first is the baseline of the ratios: the G = 1 SPOS loop as the trainer ran it before issue 19
CPU_VARIANTS = (
    ("G=1 ref NCHW", 1, torch.contiguous_format, "reference"),
    ("G=16 ref NCHW", 16, torch.contiguous_format, "reference"),  # today's routed reference: gather, scatter
    ("G=1", 1, torch.channels_last, None),
    ("G=16", 16, torch.channels_last, None),  # route_sum on views, no copies; channels-last
)


def _batches(count: int, size: int, generator: torch.Generator, device: torch.device) -> list:
    return [
        (torch.randn(size, 3, 32, 32, generator=generator).to(device), torch.randint(10, (size,), generator=generator).to(device))
        for _ in range(count)
    ]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _evaluation_setup(device: torch.device) -> tuple:
    num_archs, (cal_batches, cal_size), (held_batches, held_size) = EVAL_SIZES[device.type]
    space = get_space("nasbench201")
    generator = torch.Generator().manual_seed(0)
    supernet = get_supernet(space).to(device)
    archs = space.sample(num_archs, generator)
    return supernet, archs, _batches(cal_batches, cal_size, generator, device), _batches(held_batches, held_size, generator, device)


def test_evaluation_cpu_variants(benchmark, supernet_results: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """NB201 supernet (C = 16, N = 5) evaluation on the CPU, one thread: the four variants
    interleaved over 3 rounds, best round of each; process CPU time (robust to the shared machine's
    other load) beside wall time."""
    supernet, archs, calibration, holdout = _evaluation_setup(torch.device("cpu"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    best: dict[str, tuple[float, float]] = {}

    def one(label: str, group_size: int, memory_format: torch.memory_format, backend: str | None) -> None:
        if backend is None:
            monkeypatch.delenv("VAENAS_BACKEND", raising=False)
        else:
            monkeypatch.setenv("VAENAS_BACKEND", backend)
        supernet.to(memory_format=memory_format)
        cpu, wall = time.process_time(), time.perf_counter()
        evaluate_architectures(supernet, archs, calibration, holdout, group_size, torch.device("cpu"))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if label not in best or cpu < best[label][0]:
            best[label] = (cpu, wall)

    def rounds() -> None:
        for _ in range(3):
            for variant in CPU_VARIANTS:
                one(*variant)

    try:
        benchmark.pedantic(rounds, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(previous)
    for clock, index in (("CPU time, 1 thread", 0), ("wall, 1 thread", 1)):
        row = supernet_results.setdefault((f"evaluation, NB201 32px ({clock})", "cpu", "arch/s"), {})
        for label, *_ in CPU_VARIANTS:
            row[label] = len(archs) / best[label][index]
    benchmark.extra_info.update({f"{label} cpu_s": best[label][0] for label, *_ in CPU_VARIANTS})


@pytest.mark.cuda
@pytest.mark.parametrize("group_size", [1, 64])
def test_evaluation_throughput_cuda(benchmark, supernet_results: dict, group_size: int) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device("cuda")
    supernet, archs, calibration, holdout = _evaluation_setup(device)
    supernet = supernet.to(memory_format=torch.channels_last)

    def evaluate() -> torch.Tensor:
        scores = evaluate_architectures(supernet, archs, calibration, holdout, group_size, device, torch.bfloat16)
        _synchronize(device)
        return scores.accuracy

    benchmark.pedantic(evaluate, rounds=3, warmup_rounds=1)
    median = benchmark.stats.stats.median
    supernet_results.setdefault(("evaluation, NB201 32px", "cuda", "arch/s"), {})[f"G={group_size}"] = len(archs) / median
    benchmark.extra_info["architectures_per_second"] = len(archs) / median


@pytest.mark.cuda
def test_shufflenet_training_throughput(benchmark, supernet_results: dict) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device("cuda")
    space = get_space("shufflenet")
    supernet = get_supernet(space).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(256, 3, 224, 224, generator=generator).to(device, memory_format=torch.channels_last)
    labels = torch.randint(1000, (256,), generator=generator).to(device)

    def step() -> None:
        arch = space.sample(1, generator)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(supernet(images, arch), labels)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()

    benchmark.pedantic(step, rounds=10, warmup_rounds=3)
    images_per_second = 256 / benchmark.stats.stats.median
    supernet_results.setdefault(("training, ShuffleNet 224px b256 bf16", "cuda", "img/s"), {})["G=1"] = images_per_second
    benchmark.extra_info["images_per_second"] = images_per_second

"""Supernet benchmarks: many architectures per pass against the one-at-a-time SPOS loop.

(a) Evaluation throughput (architectures/s) of `evaluate_architectures` on the NAS-Bench-201
    supernet (C=16, N=5, 32 px, 10 classes): G = 16 architectures per forward pass against G = 1
    (the SPOS loop: recalibrate and score one architecture at a time), the same architectures,
    recalibration and held-out images in the same run. Goal: >= 2x on 2 CPU cores, >= 8x on a GPU.
    CPU: 16 architectures, 32 recalibration and 64 held-out images; GPU: 64 architectures,
    4 x 64 and 4 x 256, bf16 autocast.
(c) ShuffleNet-like supernet training throughput (images/s) at 224 px, batch 256, bf16 autocast,
    channels-last, one SPOS step (G = 1) per batch (GPU only).

The speedup table is printed at the end of `pytest bench/` (bench/conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from vaenas.spaces import get_space
from vaenas.supernet import get_supernet
from vaenas.supernet.evaluation import evaluate_architectures

EVAL_SIZES = {  # device -> (architectures, calibration batches x size, held-out batches x size)
    "cpu": (16, (1, 32), (1, 64)),
    "cuda": (64, (4, 64), (4, 256)),
}
EVAL_CASES = [
    pytest.param(device, group_size, id=f"{device}-G{group_size}", marks=[pytest.mark.cuda] if device == "cuda" else [])
    for device in ("cpu", "cuda")
    for group_size in (1, 16)
]


def _batches(count: int, size: int, generator: torch.Generator, device: torch.device) -> list:
    return [
        (torch.randn(size, 3, 32, 32, generator=generator).to(device), torch.randint(10, (size,), generator=generator).to(device))
        for _ in range(count)
    ]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("device_type, group_size", EVAL_CASES)
def test_evaluation_throughput(benchmark, supernet_results: dict, device_type: str, group_size: int) -> None:
    if device_type == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device(device_type)
    num_archs, (cal_batches, cal_size), (held_batches, held_size) = EVAL_SIZES[device_type]
    space = get_space("nasbench201")
    generator = torch.Generator().manual_seed(0)
    supernet = get_supernet(space).to(device)
    if device.type == "cuda":
        supernet = supernet.to(memory_format=torch.channels_last)
    archs = space.sample(num_archs, generator)
    calibration = _batches(cal_batches, cal_size, generator, device)
    holdout = _batches(held_batches, held_size, generator, device)
    autocast = torch.bfloat16 if device.type == "cuda" else None

    def evaluate() -> torch.Tensor:
        scores = evaluate_architectures(supernet, archs, calibration, holdout, group_size, device, autocast)
        _synchronize(device)
        return scores.accuracy

    benchmark.pedantic(evaluate, rounds=3, warmup_rounds=1)
    median = benchmark.stats.stats.median
    key = ("evaluation, NB201 32px", device_type, "arch/s")
    supernet_results.setdefault(key, {})[f"G={group_size}"] = num_archs / median
    benchmark.extra_info["architectures_per_second"] = num_archs / median


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

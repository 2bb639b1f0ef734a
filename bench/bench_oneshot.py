"""(b) Training throughput of the one-shot VAENAS loop against plain SPOS at the same step count.

Both run `OneShotSearch.train` for the same number of steps on the same supernet and data:
- SPOS: uniform architectures (ε_inc = 0) and no refit (n_vae beyond the last step);
- VAENAS: Γ = (1-ε)U + ε·VAE with a refit every `refit_every` steps (N_s architectures scored on
  the supernet, `fit_topk`, plus the VAE-vs-uniform comparison samples).
Reported: images/s of each (training images only), the ratio, and the share of VAENAS's wall time
spent in the VAE itself (fit_topk and sampling: the goal is <= 5 %) and in scoring candidates on
the supernet (the price of Algorithm 2's refits, which SPOS pays once at the end instead).

CPU: the demo's reduced NB201 supernet (8 channels, 1 cell per stage, 16 px digits), 150 steps,
refit every 50. GPU: the full NB201 supernet (C=16, N=5) at 32 px, batch 256, 300 steps, bf16.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pytest
import torch

from vaenas.data import build_search_data
from vaenas.config import load_config
from vaenas.search.oneshot import OneShotConfig, OneShotSearch

SIZES = {
    "cpu": ["train.steps=150", "vaenas.refit_every=50", "train.threads=1"],
    "cuda": [
        "supernet.nasbench201.channels=16", "supernet.nasbench201.cells_per_stage=5", "data.image_size=32",
        "data.batch_size=256", "train.steps=300", "vaenas.refit_every=100", "train.bf16=true",
    ],
}
CASES = [
    pytest.param(device, variant, id=f"{device}-{variant}", marks=[pytest.mark.cuda] if device == "cuda" else [])
    for device in ("cpu", "cuda")
    for variant in ("spos", "vaenas")
]


def _timed(timers: dict[str, float], name: str, function: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timers[name] += time.perf_counter() - start

    return wrapper


@pytest.mark.parametrize("device_type, variant", CASES)
def test_training_throughput(benchmark, supernet_results: dict, device_type: str, variant: str) -> None:
    if device_type == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    overrides = ["method=oneshot", "progress=false", f"train.device={device_type}", *SIZES[device_type]]
    if variant == "spos":
        overrides += ["vaenas.epsilon_inc=0", "vaenas.refit_every=1000000"]
    config = load_config(None, overrides, cls=OneShotConfig)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    data = build_search_data(config.data)
    timers: dict[str, float] = defaultdict(float)

    def train() -> None:
        search = OneShotSearch(config, data, torch.device(device_type))
        search.vae.fit_topk = _timed(timers, "vae", search.vae.fit_topk)
        search.vae.sample = _timed(timers, "vae", search.vae.sample)
        search.score = _timed(timers, "scoring", search.score)
        timers.clear()
        start = time.perf_counter()
        search.train()
        if device_type == "cuda":
            torch.cuda.synchronize()
        timers["wall"] = time.perf_counter() - start

    benchmark.pedantic(train, rounds=1, warmup_rounds=0)
    images_per_second = config.train.steps * config.data.batch_size / timers["wall"]
    what = f"one-shot training, {config.train.steps} steps"
    supernet_results.setdefault((what, device_type, "img/s"), {})[variant] = images_per_second
    benchmark.extra_info.update(
        images_per_second=images_per_second,
        vae_share=timers["vae"] / timers["wall"],
        scoring_share=timers["scoring"] / timers["wall"],
    )
    if variant == "vaenas":
        shares = supernet_results.setdefault((f"{what}: share of wall time", device_type, "%"), {})
        shares["VAE fit+sample"] = 100 * timers["vae"] / timers["wall"]
        shares["scoring"] = 100 * timers["scoring"] / timers["wall"]

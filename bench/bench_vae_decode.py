"""Benchmark of vaenas.ops.vae_decode: every backend paired with the reference in the same run.

NAS-Bench-101 layout (26 positions, 21 budgeted edge bits, at most 9), sampled decode with the
op's own random stream (uniforms=None, the sampler's production path). Two decoder sizes: the
VAE's default (hidden 64, latent 16, embedding 16) and hidden 256. CPU: reference and the C++
op for M in {1000, 10000}; GPU (skipped without one): reference, CUDA and Triton for M in
{1000, 100000, 1000000}. Run: `pytest bench/` (GPU only: `pytest bench/ -m cuda`).

The timed function synchronises the device, so pytest-benchmark's wall time is the kernel's.
extra_info holds architectures/s, the ratio to the reference (reference median / this median,
when the reference ran first in the session) and, on a GPU, the achieved FLOP/s of the products,
counted as 2 * M * T * (4H * H + V * H).
"""

from __future__ import annotations

import pytest
import torch

from vaenas.ops import DecodeConstraints, DecoderWeights, vae_decode

VOCAB = (2,) * 21 + (3,) * 5
BUDGET_POSITIONS, BUDGET_MAX = 21, 9
LATENT = EMBEDDING = 16
SIZES = {"hidden64": 64, "hidden256": 256}

# (device, M, backend), the reference first in each (device, M) so that the ratio is known when
# the backend runs.
CASES = [
    pytest.param("cpu", num_rows, backend, id=f"cpu-{num_rows}-{backend}")
    for num_rows in (1000, 10000)
    for backend in ("reference", "cpu")
] + [
    pytest.param("cuda", num_rows, backend, id=f"cuda-{num_rows}-{backend}", marks=pytest.mark.cuda)
    for num_rows in (1000, 100000, 1000000)
    for backend in ("reference", "cuda", "triton")
]


def make_decoder(hidden: int, device: torch.device) -> tuple[DecoderWeights, DecodeConstraints]:
    """Random decoder of the VAE's shapes; input_table built as the VAE does (embedding @ weight_ih.T + biases)."""
    generator = torch.Generator().manual_seed(0)
    positions, max_vocab, table_rows = len(VOCAB), max(VOCAB), 1 + sum(VOCAB)

    def randn(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    embedding = randn(table_rows, EMBEDDING, scale=1.0)
    weight_ih = randn(4 * hidden, EMBEDDING, scale=EMBEDDING**-0.5)
    input_table = embedding @ weight_ih.T + randn(4 * hidden, scale=0.1) + randn(4 * hidden, scale=0.1)
    weights = DecoderWeights(
        latent_weight=randn(hidden, LATENT, scale=LATENT**-0.5).to(device),
        latent_bias=randn(hidden, scale=0.1).to(device),
        input_table=input_table.to(device),
        weight_hh=randn(4 * hidden, hidden, scale=hidden**-0.5).to(device),
        weight_out=randn(positions, max_vocab, hidden, scale=2 * hidden**-0.5).to(device),
        bias_out=randn(positions, max_vocab, scale=0.5).to(device),
    )
    constraints = DecodeConstraints(
        torch.tensor(VOCAB), torch.arange(positions) < BUDGET_POSITIONS, BUDGET_MAX
    ).to(device)
    return weights, constraints


@pytest.mark.parametrize("device_type, num_rows, backend", CASES)
@pytest.mark.parametrize("size", sorted(SIZES))
def test_vae_decode(benchmark, decode_results: dict, size: str, device_type: str, num_rows: int,
                    backend: str) -> None:
    if device_type == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device(device_type)
    hidden = SIZES[size]
    weights, constraints = make_decoder(hidden, device)
    z = torch.randn(num_rows, LATENT, generator=torch.Generator().manual_seed(1)).to(device)

    def decode() -> tuple[torch.Tensor, torch.Tensor]:
        result = vae_decode(z, weights, constraints, seed=0, backend=backend)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result

    try:
        decode()  # warm-up outside the timing: Triton compiles and autotunes on its first call
    except (RuntimeError, NotImplementedError) as error:
        if backend == "reference":
            raise
        pytest.skip(f"backend {backend!r} cannot run vae_decode here: {error}")

    flops = 2 * num_rows * len(VOCAB) * (4 * hidden * hidden + max(VOCAB) * hidden)
    # Keep `pytest bench/` within ~3 minutes on 2 CPU cores: the CPU reference takes 1-4 s a
    # call beyond 5e9 flops (hidden 64 at M 10000, hidden 256), so those cases get 3 rounds.
    rounds = 3 if device.type == "cpu" and flops > 5e9 else 5
    tokens, _ = benchmark.pedantic(decode, rounds=rounds, iterations=1, warmup_rounds=0)
    assert tokens.shape == (num_rows, len(VOCAB))

    median = benchmark.stats.stats.median
    measured = decode_results.setdefault((device_type, size, num_rows), {})
    measured[backend] = {"median": median, "flops": flops}
    benchmark.extra_info["architectures_per_s"] = num_rows / median
    if "reference" in measured:
        benchmark.extra_info["ratio_to_reference"] = measured["reference"]["median"] / median
    if device.type == "cuda":
        benchmark.extra_info["flop_per_s"] = flops / median

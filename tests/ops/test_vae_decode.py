"""Compiled backends of vae_decode (C++ CPU, CUDA) against the reference, vaenas.ops.reference.vae_decode.

Every test that compares a backend with the reference is parametrised over BACKENDS, so another
backend ("triton") plugs in by adding it there. The reference always runs on the CPU, in float32.
Float rounding differs between backends (summation order, exp/tanh implementations), so a row's
tokens may differ where a uniform or a near-tie of logits sits within ~1e-6 of a boundary: the
tests allow at most one such row per 1000 and compare log_prob only on rows whose tokens agree.
"""

from __future__ import annotations

import zlib

import pytest
import torch

from vaenas import _extension
from vaenas.ops import DecodeConstraints, DecoderWeights, reference, vae_decode
from vaenas.ops._dispatch import BACKENDS as BACKEND_INFO
from vaenas.spaces import SPACE_NAMES, get_space

# The C++ kernels behind torch.ops.vaenas.vae_decode (opcheck and input checks are theirs).
OP_BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]
# Every backend reached through vaenas.ops.vae_decode(backend=...); add
# pytest.param("triton", id="triton", marks=pytest.mark.triton) to run these tests on Triton.
BACKENDS = [*OP_BACKENDS]

# The four spaces' layouts (DESIGN §3): their own decode_constraints(), NB101's edge budget included.
SPACES = {name: get_space(name).decode_constraints() for name in SPACE_NAMES}
LATENT = 16


def backend_device(backend: str) -> torch.device:
    """The device a backend runs on; skips the test when the backend cannot run here."""
    if backend == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    # Triton runs on CUDA tensors, or interpreted on CPU tensors without a GPU (tests/conftest.py).
    device = torch.device("cuda" if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()) else "cpu")
    reasons = BACKEND_INFO[backend].not_supported_reasons(device)
    if reasons:
        pytest.skip(f"backend {backend} unavailable: {'; '.join(reasons)}")
    return device


@pytest.fixture
def generator(request: pytest.FixtureRequest) -> torch.Generator:
    """Fresh random data per test, reproducible from the test's id."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


def make_decoder(space: str, hidden: int, generator: torch.Generator) -> tuple[DecoderWeights, DecodeConstraints]:
    """Random decoder weights scaled so that gates and logits are O(1): neither saturated nor flat."""
    constraints = SPACES[space]
    vocab = constraints.vocab_sizes.tolist()
    positions, max_vocab, table_rows = len(vocab), max(vocab), 1 + sum(vocab)

    def randn(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    weights = DecoderWeights(
        latent_weight=randn(hidden, LATENT, scale=LATENT**-0.5),
        latent_bias=randn(hidden, scale=0.1),
        input_table=randn(table_rows, 4 * hidden, scale=0.5),
        weight_hh=randn(4 * hidden, hidden, scale=1.5 * hidden**-0.5),
        weight_out=randn(positions, max_vocab, hidden, scale=3.0 * hidden**-0.5),
        bias_out=randn(positions, max_vocab, scale=0.5),
    )
    return weights, constraints


def weights_to(weights: DecoderWeights, device: torch.device) -> DecoderWeights:
    return DecoderWeights(**{name: getattr(weights, name).to(device) for name in weights.__dataclass_fields__})


def op_arguments(z, weights: DecoderWeights, constraints: DecodeConstraints, uniforms, temperature=1.0, greedy=False, seed=0):
    """The positional arguments of torch.ops.vaenas.vae_decode."""
    return (
        z, weights.latent_weight, weights.latent_bias, weights.input_table, weights.weight_hh, weights.weight_out,
        weights.bias_out, constraints.vocab_sizes.to(z.device), constraints.budget_mask.to(z.device),
        constraints.budget_max, uniforms, temperature, greedy, seed,
    )


def assert_matches(tokens: torch.Tensor, log_prob: torch.Tensor, expected_tokens: torch.Tensor, expected_log_prob: torch.Tensor):
    tokens, log_prob = tokens.cpu(), log_prob.cpu()
    assert tokens.dtype == torch.int64 and log_prob.dtype == torch.float32
    assert tokens.shape == expected_tokens.shape and log_prob.shape == expected_log_prob.shape
    agree = (tokens == expected_tokens).all(dim=1)
    mismatched = int((~agree).sum())
    assert mismatched <= tokens.shape[0] // 1000, f"{mismatched} of {tokens.shape[0]} rows differ from the reference"
    torch.testing.assert_close(log_prob[agree], expected_log_prob[agree], rtol=1e-4, atol=1e-4)


def budget_used(tokens: torch.Tensor, constraints: DecodeConstraints) -> torch.Tensor:
    return ((tokens.cpu() != 0) & constraints.budget_mask).sum(dim=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("rows", [1, 7, 1003])
@pytest.mark.parametrize("hidden", [32, 64])
@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "uniforms"])
def test_matches_reference(backend, space, rows, hidden, greedy, generator):
    device = backend_device(backend)
    weights, constraints = make_decoder(space, hidden, generator)
    z = torch.randn(rows, LATENT, generator=generator)
    uniforms = None if greedy else torch.rand(rows, len(SPACES[space].vocab_sizes), generator=generator)
    temperature = 0.9
    expected = reference.vae_decode(*op_arguments(z, weights, constraints, uniforms, temperature, greedy))
    tokens, log_prob = vae_decode(
        z.to(device), weights_to(weights, device), constraints, greedy=greedy, temperature=temperature,
        uniforms=None if uniforms is None else uniforms.to(device), backend=backend,
    )
    assert tokens.device.type == device.type and log_prob.device.type == device.type
    assert_matches(tokens, log_prob, *expected)
    vocab = constraints.vocab_sizes
    assert bool(((tokens.cpu() >= 0) & (tokens.cpu() < vocab)).all())


@pytest.mark.parametrize("hidden", [32, 64])
@pytest.mark.parametrize("seed", [0, 12345, -3])
def test_cpu_seeded_equals_reference(hidden, seed, generator):
    """Without uniforms the CPU backend draws torch.rand(M, T) from a CPU generator seeded like the reference."""
    backend_device("cpu")
    weights, constraints = make_decoder("nasbench101", hidden, generator)
    z = torch.randn(1003, LATENT, generator=generator)
    expected = reference.vae_decode(*op_arguments(z, weights, constraints, None, seed=seed))
    assert_matches(*vae_decode(z, weights, constraints, seed=seed, backend="cpu"), *expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "seeded"])
def test_budget_never_exceeded(backend, greedy, generator):
    """Heads biased towards edges, so that the budget of 9 binds on most rows."""
    device = backend_device(backend)
    weights, constraints = make_decoder("nasbench101", 64, generator)
    weights.bias_out[:21, 1] += 3.0
    z = torch.randn(2000, LATENT, generator=generator)
    tokens, _ = vae_decode(z.to(device), weights_to(weights, device), constraints, greedy=greedy, seed=5, backend=backend)
    used = budget_used(tokens, constraints)
    assert int(used.max()) <= 9
    assert float((used == 9).float().mean()) > 0.5, "the budget should bind on most rows of this test"


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_rows(backend, generator):
    device = backend_device(backend)
    weights, constraints = make_decoder("nasbench201", 32, generator)
    tokens, log_prob = vae_decode(torch.randn(0, LATENT).to(device), weights_to(weights, device), constraints, backend=backend)
    assert tokens.shape == (0, 6) and log_prob.shape == (0,)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_every_backend_takes_any_floating_dtype_and_rejects_others(backend, generator):
    """The wrapper's dtype contract: floating z, weights and uniforms are converted to float32, the
    precision the op computes in; anything else is a ValueError, whichever backend runs."""
    device = backend_device(backend)
    weights, constraints = make_decoder("nasbench101", 32, generator)
    z = torch.randn(67, LATENT, generator=generator, dtype=torch.float64)
    uniforms = torch.rand(67, 26, generator=generator, dtype=torch.float64)
    expected = vae_decode(z.float().to(device), weights_to(weights, device), constraints,
                          uniforms=uniforms.float().to(device), backend=backend)
    doubles = DecoderWeights(**{name: getattr(weights, name).double().to(device) for name in weights.__dataclass_fields__})
    for dtype in (torch.float64, torch.float16):
        tokens, log_prob = vae_decode(z.to(device, dtype), doubles, constraints, uniforms=uniforms.to(device),
                                      backend=backend)
        assert tokens.dtype == torch.int64 and log_prob.dtype == torch.float32
        if dtype == torch.float64:  # float16 z is rounded before the conversion
            assert torch.equal(tokens, expected[0]) and torch.equal(log_prob, expected[1])
    with pytest.raises(ValueError, match="z must be a floating-point tensor, got torch.int64"):
        vae_decode(z.long().to(device), weights, constraints, greedy=True, backend=backend)


@pytest.mark.parametrize("backend", OP_BACKENDS)
@pytest.mark.parametrize("greedy", [True, False])
def test_opcheck(backend, greedy, generator):
    device = backend_device(backend)
    weights, constraints = make_decoder("nasbench101", 32, generator)
    z = torch.randn(5, LATENT, generator=generator)
    uniforms = None if greedy else torch.rand(5, 26, generator=generator).to(device)
    arguments = op_arguments(z.to(device), weights_to(weights, device), constraints, uniforms, 1.0, greedy, 3)
    torch.library.opcheck(torch.ops.vaenas.vae_decode.default, arguments)


@pytest.mark.cuda
def test_cuda_philox_distribution(generator):
    """Chi-square test of the CUDA backend's own Philox draws against the reference's probabilities.

    One latent vector repeated N times, T = 1, 6 tokens: the token counts must follow p, the
    softmax of the first step's logits (computed here in float64 from the reference's formulas), and
    every row's log_prob must be log p[token].
    """
    device = backend_device("cuda")
    vocab = (6,)
    hidden, rows = 32, 60000

    def randn(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale

    weights = DecoderWeights(
        latent_weight=randn(hidden, LATENT, scale=LATENT**-0.5), latent_bias=randn(hidden, scale=0.1),
        input_table=randn(7, 4 * hidden, scale=0.5), weight_hh=randn(4 * hidden, hidden, scale=hidden**-0.5),
        weight_out=randn(1, 6, hidden, scale=hidden**-0.5), bias_out=randn(1, 6, scale=0.7),
    )
    z = torch.randn(1, LATENT, generator=generator, dtype=torch.float64)
    h = torch.tanh(z @ weights.latent_weight.T + weights.latent_bias)
    i, f, g, o = (weights.input_table[0] + h @ weights.weight_hh.T).split(hidden, dim=1)
    h = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))
    probabilities = torch.softmax(h @ weights.weight_out[0].T + weights.bias_out[0], dim=1)[0]

    weights32 = DecoderWeights(**{name: getattr(weights, name).float().to(device) for name in weights.__dataclass_fields__})
    constraints = DecodeConstraints.vocabulary_only(vocab)
    tokens, log_prob = vae_decode(z.float().to(device).expand(rows, LATENT).contiguous(), weights32, constraints, seed=2024, backend="cuda")
    counts = torch.bincount(tokens.cpu()[:, 0], minlength=6).double()
    expected = probabilities * rows
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 25.74, f"chi-square {chi_square:.1f} with 5 degrees of freedom (p < 1e-4): counts {counts} vs {expected}"
    torch.testing.assert_close(log_prob.cpu().double(), probabilities.log()[tokens.cpu()[:, 0]], rtol=1e-4, atol=1e-4)
    again, _ = vae_decode(z.float().to(device).expand(rows, LATENT).contiguous(), weights32, constraints, seed=2024, backend="cuda")
    assert torch.equal(tokens, again), "the same seed must give the same tokens"


@pytest.mark.parametrize("backend", OP_BACKENDS)
class TestBadInputs:
    """The C++ checks, reached through torch.ops directly (the Python wrapper checks some of them first)."""

    def call(self, backend, generator, **changes):
        device = backend_device(backend)
        weights, constraints = make_decoder("nasbench101", 32, generator)
        z = torch.randn(4, LATENT, generator=generator)
        arguments = dict(zip(
            ["z", "latent_weight", "latent_bias", "input_table", "weight_hh", "weight_out", "bias_out", "vocab_sizes",
             "budget_mask", "budget_max", "uniforms", "temperature", "greedy", "seed"],
            op_arguments(z, weights, constraints, torch.rand(4, 26, generator=generator)),
        ))
        arguments = {name: value.to(device) if isinstance(value, torch.Tensor) else value for name, value in arguments.items()}
        arguments.update(changes)
        return torch.ops.vaenas.vae_decode(*arguments.values())

    def test_valid_call_runs(self, backend, generator):
        tokens, _ = self.call(backend, generator)
        assert tokens.shape == (4, 26)

    def test_wrong_dtype(self, backend, generator):
        device = backend_device(backend)
        with pytest.raises(RuntimeError, match="z must be Float"):
            self.call(backend, generator, z=torch.randn(4, LATENT, dtype=torch.float64, device=device))
        with pytest.raises(RuntimeError, match="vocab_sizes must be Long"):
            self.call(backend, generator, vocab_sizes=torch.ones(26, dtype=torch.int32, device=device))
        with pytest.raises(RuntimeError, match="budget_mask must be Bool"):
            self.call(backend, generator, budget_mask=torch.zeros(26, dtype=torch.uint8, device=device))

    def test_mismatched_shapes(self, backend, generator):
        device = backend_device(backend)
        with pytest.raises(RuntimeError, match="weight_hh must be"):
            self.call(backend, generator, weight_hh=torch.randn(100, 32, device=device))
        with pytest.raises(RuntimeError, match="latent_weight must be"):
            self.call(backend, generator, latent_weight=torch.randn(32, LATENT + 1, device=device))
        with pytest.raises(RuntimeError, match="input_table must be"):
            self.call(backend, generator, input_table=torch.randn(10, 128, device=device))
        with pytest.raises(RuntimeError, match="uniforms must be"):
            self.call(backend, generator, uniforms=torch.rand(4, 25, device=device))
        with pytest.raises(RuntimeError, match="budget_mask must be"):
            self.call(backend, generator, budget_mask=torch.zeros(25, dtype=torch.bool, device=device))
        with pytest.raises(RuntimeError, match=r"vocab_sizes\[3\] = 4 is outside"):
            self.call(backend, generator, vocab_sizes=torch.tensor([2] * 3 + [4] + [2] * 17 + [3] * 5, device=device))

    def test_temperature(self, backend, generator):
        for temperature in (0.0, -1.0):
            with pytest.raises(RuntimeError, match="temperature must be > 0"):
                self.call(backend, generator, temperature=temperature)

    def test_wrong_device(self, backend, generator):
        if backend == "cpu" and not torch.cuda.is_available():
            pytest.skip("needs a second device type")
        other = "cuda" if backend == "cpu" else "cpu"
        # A CUDA tensor among the arguments sends the call to the CUDA kernel, which names z or bias_out.
        with pytest.raises(RuntimeError, match="z must be a CUDA tensor|bias_out must be on z's device"):
            self.call(backend, generator, bias_out=torch.randn(26, 3, device=other))

"""Triton backend of vae_decode against the reference (vaenas.ops.reference.vae_decode).

Without a GPU the kernel runs under the Triton interpreter on CPU tensors (tests/conftest.py
sets TRITON_INTERPRET=1 before anything imports triton); with one, it runs compiled on CUDA
tensors and the reference runs on the same device. Sizes stay small: the interpreter executes
each program as numpy calls, about 0.6 s per decode of 67 rows x 26 positions on 2 cores.
"""

from __future__ import annotations

import zlib

import pytest
import torch

from vaenas.ops import DecodeConstraints, DecoderWeights, reference, vae_decode
from vaenas.ops._dispatch import triton_interpreted
from vaenas.spaces import SPACE_NAMES, get_space

pytest.importorskip("triton")
from vaenas.kernels.vae_decode import vae_decode_triton  # noqa: E402  (after the skip)

pytestmark = pytest.mark.triton

# The four spaces' layouts (DESIGN §3): their own decode_constraints(), NB101's edge budget included.
SPACES = {name: get_space(name).decode_constraints() for name in SPACE_NAMES}
LATENT = 16


@pytest.fixture
def device() -> torch.device:
    if triton_interpreted():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.skip("Triton needs a CUDA GPU, or TRITON_INTERPRET=1 to run on CPU")
    return torch.device("cuda")


@pytest.fixture
def generator(request: pytest.FixtureRequest) -> torch.Generator:
    """Fresh random data per test, reproducible from the test's id."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


def make_decoder(space: str, hidden: int, generator: torch.Generator, device: torch.device,
                 budget_max: int | None = None) -> tuple[DecoderWeights, DecodeConstraints]:
    """Random decoder weights scaled so that gates and logits are O(1): neither saturated nor flat."""
    layout = SPACES[space]
    vocab = layout.vocab_sizes.tolist()
    positions, max_vocab, table_rows = len(vocab), max(vocab), 1 + sum(vocab)

    def randn(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * scale).to(device)

    weights = DecoderWeights(
        latent_weight=randn(hidden, LATENT, scale=LATENT**-0.5),
        latent_bias=randn(hidden, scale=0.1),
        input_table=randn(table_rows, 4 * hidden, scale=1.0),
        weight_hh=randn(4 * hidden, hidden, scale=hidden**-0.5),
        weight_out=randn(positions, max_vocab, hidden, scale=2 * hidden**-0.5),
        bias_out=randn(positions, max_vocab, scale=0.5),
    )
    constraints = DecodeConstraints(
        layout.vocab_sizes.to(device), layout.budget_mask.to(device),
        layout.budget_max if budget_max is None else budget_max,
    )
    return weights, constraints


def arguments(z: torch.Tensor, weights: DecoderWeights, constraints: DecodeConstraints,
              uniforms: torch.Tensor | None, temperature: float, greedy: bool, seed: int = 0) -> tuple:
    """The argument list of reference.vae_decode and vae_decode_triton."""
    return (
        z, weights.latent_weight, weights.latent_bias, weights.input_table, weights.weight_hh,
        weights.weight_out, weights.bias_out, constraints.vocab_sizes, constraints.budget_mask,
        constraints.budget_max, uniforms, temperature, greedy, seed,
    )


def assert_matches_reference(args: tuple) -> torch.Tensor:
    """Tokens equal row for row, log_prob close; returns the Triton tokens.

    A sampled token can differ where a uniform lies within float rounding (~1e-7) of a
    cumulative-probability boundary, since the kernel sums the probabilities in another order;
    one such row per call is tolerated (none was seen in these tests). A differing row diverges
    from there on, so its log_prob is not compared.
    """
    tokens, log_prob = vae_decode_triton(*args)
    expected_tokens, expected_log_prob = reference.vae_decode(*args)
    assert tokens.dtype == torch.int64 and log_prob.dtype == torch.float32
    assert tokens.shape == expected_tokens.shape and log_prob.shape == expected_log_prob.shape
    same = (tokens == expected_tokens).all(dim=1)
    assert int((~same).sum()) <= 1, f"{int((~same).sum())} of {len(same)} rows differ"
    torch.testing.assert_close(log_prob[same], expected_log_prob[same], rtol=1e-4, atol=1e-4)
    return tokens


def assert_within_constraints(tokens: torch.Tensor, constraints: DecodeConstraints) -> None:
    assert bool((tokens >= 0).all()) and bool((tokens < constraints.vocab_sizes).all())
    if constraints.budget_max >= 0:
        used = (tokens[:, constraints.budget_mask] != 0).sum(dim=1)
        assert int(used.max()) <= constraints.budget_max


@pytest.mark.parametrize("mode", ["greedy", "uniforms"])
@pytest.mark.parametrize("hidden", [32, 64])
@pytest.mark.parametrize("num_rows", [1, 7, 67])
@pytest.mark.parametrize("space", sorted(SPACES))
def test_matches_reference(space: str, num_rows: int, hidden: int, mode: str,
                           generator: torch.Generator, device: torch.device) -> None:
    weights, constraints = make_decoder(space, hidden, generator, device)
    z = torch.randn(num_rows, LATENT, generator=generator).to(device)
    positions = len(constraints.vocab_sizes)
    uniforms = torch.rand(num_rows, positions, generator=generator).to(device) if mode == "uniforms" else None
    tokens = assert_matches_reference(arguments(z, weights, constraints, uniforms, 1.0, mode == "greedy"))
    assert_within_constraints(tokens, constraints)


@pytest.mark.parametrize("budget_max", [0, 3])
@pytest.mark.parametrize("mode", ["greedy", "uniforms"])
def test_budget_masks_every_later_edge(budget_max: int, mode: str, generator: torch.Generator,
                                       device: torch.device) -> None:
    # A tight budget binds in nearly every row, so the masking after exhaustion is exercised.
    weights, constraints = make_decoder("nasbench101", 32, generator, device, budget_max=budget_max)
    z = torch.randn(67, LATENT, generator=generator).to(device)
    uniforms = torch.rand(67, 26, generator=generator).to(device) if mode == "uniforms" else None
    tokens = assert_matches_reference(arguments(z, weights, constraints, uniforms, 1.0, mode == "greedy"))
    assert_within_constraints(tokens, constraints)
    used = (tokens[:, :21] != 0).sum(dim=1)
    assert int((used == budget_max).sum()) > 0  # the budget was reached at least once


@pytest.mark.parametrize("mode", ["greedy", "uniforms"])
def test_hidden_size_over_one_product_chunk(mode: str, generator: torch.Generator, device: torch.device) -> None:
    # H = 160: a tile of 256 in three chunks of 64 (MAX_BLOCK_K) plus a padded one, the path
    # the benchmarked H = 256 takes on a GPU.
    weights, constraints = make_decoder("nasbench101", 160, generator, device)
    z = torch.randn(7, LATENT, generator=generator).to(device)
    uniforms = torch.rand(7, 26, generator=generator).to(device) if mode == "uniforms" else None
    tokens = assert_matches_reference(arguments(z, weights, constraints, uniforms, 1.0, mode == "greedy"))
    assert_within_constraints(tokens, constraints)


@pytest.mark.parametrize("temperature", [0.25, 3.0])
def test_temperature(temperature: float, generator: torch.Generator, device: torch.device) -> None:
    weights, constraints = make_decoder("nasnet", 32, generator, device)
    z = torch.randn(7, LATENT, generator=generator).to(device)
    uniforms = torch.rand(7, 28, generator=generator).to(device)
    assert_matches_reference(arguments(z, weights, constraints, uniforms, temperature, False))


def test_op_dispatches_to_triton(generator: torch.Generator, device: torch.device) -> None:
    weights, constraints = make_decoder("shufflenet", 32, generator, device)
    z = torch.randn(7, LATENT, generator=generator).to(device)
    uniforms = torch.rand(7, 20, generator=generator).to(device)
    tokens, log_prob = vae_decode(z, weights, constraints, uniforms=uniforms, backend="triton")
    expected_tokens, expected_log_prob = vae_decode(z, weights, constraints, uniforms=uniforms, backend="reference")
    assert torch.equal(tokens, expected_tokens)
    torch.testing.assert_close(log_prob, expected_log_prob, rtol=1e-4, atol=1e-4)


def first_position_probabilities(z: torch.Tensor, weights: DecoderWeights) -> torch.Tensor:
    """p(token at position 0 | z) for one z [d], in float64: one LSTM step from the start row."""
    w = {name: getattr(weights, name).double().cpu() for name in DecoderWeights.__dataclass_fields__}
    h = torch.tanh(w["latent_weight"] @ z.double().cpu() + w["latent_bias"])
    i, f, g, o = (w["input_table"][0] + w["weight_hh"] @ h).chunk(4)
    h = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))
    return torch.softmax(w["weight_out"][0] @ h + w["bias_out"][0], dim=0)


def test_internal_random_stream_has_the_reference_distribution(generator: torch.Generator,
                                                               device: torch.device) -> None:
    """uniforms=None: tl.rand(seed, ...) replaces torch.rand, so compare distributions, not tokens.

    Every row decodes the same z, so the first token is one categorical draw per row; the
    chi-square statistic of the counts against the float64 probabilities must not be
    improbable (p > 1e-3, df = 4). 1024 rows (16 programs) take ~2 s interpreted.
    """
    num_rows = 1024
    weights, constraints = make_decoder("nasbench201", 32, generator, device)
    z = torch.randn(LATENT, generator=generator).to(device)
    rows = z.expand(num_rows, LATENT).contiguous()
    tokens, log_prob = vae_decode_triton(*arguments(rows, weights, constraints, None, 1.0, False, seed=1234))
    assert_within_constraints(tokens, constraints)
    assert bool(torch.isfinite(log_prob).all()) and bool((log_prob <= 0).all())

    probabilities = first_position_probabilities(z, weights)
    counts = torch.bincount(tokens[:, 0].cpu(), minlength=5).double()
    expected = num_rows * probabilities
    statistic = ((counts - expected) ** 2 / expected).sum()
    degrees = len(expected) - 1
    p_value = float(torch.special.gammaincc(torch.tensor(degrees / 2, dtype=torch.float64), statistic / 2))
    assert p_value > 1e-3, f"counts {counts.tolist()} vs expected {expected.tolist()}: p = {p_value:.2e}"


def test_internal_random_stream_depends_only_on_the_seed(generator: torch.Generator,
                                                         device: torch.device) -> None:
    weights, constraints = make_decoder("nasbench201", 32, generator, device)
    z = torch.randn(67, LATENT, generator=generator).to(device)
    tokens, _ = vae_decode_triton(*arguments(z, weights, constraints, None, 1.0, False, seed=1234))
    again, _ = vae_decode_triton(*arguments(z, weights, constraints, None, 1.0, False, seed=1234))
    other_seed, _ = vae_decode_triton(*arguments(z, weights, constraints, None, 1.0, False, seed=1235))
    assert torch.equal(tokens, again)
    assert not torch.equal(tokens, other_seed)


@pytest.mark.parametrize("given_uniforms", [True, False])
def test_opcheck(given_uniforms: bool, generator: torch.Generator, device: torch.device) -> None:
    weights, constraints = make_decoder("nasbench101", 32, generator, device)
    z = torch.randn(7, LATENT, generator=generator).to(device)
    uniforms = torch.rand(7, 26, generator=generator).to(device) if given_uniforms else None
    options = {}  # opcheck's default: schema, autograd registration, fake tensor, AOT dispatch
    if triton_interpreted():
        # Under TRITON_INTERPRET, torch.library.wrap_triton returns the interpreted kernel as is
        # (torch/_library/triton.py), so the fake implementation that triton_op derives from
        # the function launches the interpreter on FakeTensors, which fails ("set the storage
        # of a tensor on device meta to a storage on device cpu"). Only the compiled kernel
        # (GPU) can pass the fake-tensor and AOT-dispatch checks.
        options = {"test_utils": ("test_schema", "test_autograd_registration")}
    torch.library.opcheck(
        torch.ops.vaenas.vae_decode_triton.default,
        arguments(z, weights, constraints, uniforms, 1.0, False, seed=7),
        **options,
    )

"""Triton backend of segmented_batch_norm (+ activation) against the reference, forward and backward.

Without a GPU the kernels run under the Triton interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET=1); with one, compiled on CUDA tensors, the reference on the same device. The
reference runs in float64 on the same (rounded) inputs; float32 must match it closely, bf16 and
fp16 within about twice PyTorch's own error (the aten backend at that dtype). Sizes stay tiny.
"""

from __future__ import annotations

import zlib

import pytest
import torch

from vaenas import ops
from vaenas.ops import reference
from vaenas.ops._dispatch import triton_interpreted

pytest.importorskip("triton")  # before the kernel module imports it
from vaenas.kernels.segmented_batch_norm import segmented_batch_norm_triton

pytestmark = pytest.mark.triton

ACTIVATIONS = pytest.mark.parametrize("activation", [None, "relu", "silu"])
# (S, b, C, *spatial): odd sizes; C = 40 spans two channel blocks, 7 * 25 rows x spatial > one row tile
SHAPES = [(3, 5, 7, 3, 5), (1, 6, 5, 4, 3), (3, 7, 40, 5, 5), (3, 4, 9), (1, 9, 6, 11)]


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


def make_inputs(shape, generator, device, dtype=torch.float32, affine=True, given=False, channels_last=False):
    """x (mean 0.5, not centred: the variance pass must not cancel), weight, bias, stats, upstream."""
    segments, rows, channels, *spatial = shape
    x = (torch.randn(segments * rows, channels, *spatial, generator=generator) + 0.5).to(device, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(channels, generator=generator) + 1).to(device) if affine else None
    bias = torch.randn(channels, generator=generator).to(device) if affine else None
    stats = (torch.randn(segments, channels, generator=generator).to(device),
             (torch.rand(segments, channels, generator=generator) + 0.5).to(device)) if given else (None, None)
    upstream = torch.randn(x.shape, generator=generator).to(device, dtype)
    return x, weight, bias, stats, upstream


def run(function, x, weight, bias, stats, upstream, activation, dtype=None):
    """(y, mean, var, dx, dweight, dbias) of function with x (and the parameters) cast to dtype."""
    leaves = [None if t is None else t.detach().to(dtype or t.dtype).requires_grad_() for t in (x, weight, bias)]
    given = [None if t is None else t.to(dtype or t.dtype) if dtype == torch.float64 else t for t in stats]
    y, mean, var = function(leaves[0], leaves[1], leaves[2], *given, activation)
    (y * upstream.to(y.dtype)).sum().backward()
    return (y, mean, var, *(None if t is None else t.grad for t in leaves))


def with_segments(segments):
    """The three implementations as f(x, weight, bias, mean, var, activation) for `segments` segments."""
    return {
        "triton": lambda x, w, b, m, v, a: segmented_batch_norm_triton(x, segments, w, b, 1e-5, m, v, a),
        "reference": lambda x, w, b, m, v, a: reference.segmented_batch_norm(x, segments, w, b, 1e-5, m, v, a),
        "aten": lambda x, w, b, m, v, a: ops.segmented_batch_norm(x, segments, w, b, 1e-5, m, v, activation=a,
                                                                  backend="aten"),
    }


def max_error(got, want):
    return 0.0 if got is None else (got.double() - want.double()).abs().max().item()


@ACTIVATIONS
@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_float32_matches_the_float64_reference(shape, given, activation, generator, device):
    backends = with_segments(shape[0])
    inputs = make_inputs(shape, generator, device, given=given)
    got = run(backends["triton"], *inputs, activation)
    want = run(backends["reference"], *inputs, activation, dtype=torch.float64)
    names = ("y", "mean", "var", "dx", "dweight", "dbias")
    for name, mine, exact in zip(names, got, want):
        torch.testing.assert_close(mine.double(), exact, rtol=1e-5, atol=2e-5, msg=lambda m, name=name: f"{name}: {m}")
    assert got[0].dtype == torch.float32 and got[1].dtype == got[2].dtype == torch.float32


@ACTIVATIONS
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_twice_pytorchs_error(dtype, channels_last, activation, generator, device):
    """Against float64 on the same rounded input: the kernel's error at most ~2x the aten backend's
    (PyTorch's mixed-precision batch norm, float32 weights) for y, dx, dweight and dbias."""
    shape = (3, 6, 10, 4, 5)
    backends = with_segments(shape[0])
    x, weight, bias, stats, upstream = make_inputs(shape, generator, device, dtype, channels_last=channels_last)
    got = run(backends["triton"], x, weight, bias, stats, upstream, activation)
    pytorch = run(backends["aten"], x, weight, bias, stats, upstream, activation)
    exact = run(backends["reference"], x, weight, bias, stats, upstream, activation, dtype=torch.float64)
    assert got[0].dtype == dtype and got[3].dtype == dtype and got[4].dtype == torch.float32
    for name, mine, theirs, want in zip(("y", "mean", "var", "dx", "dweight", "dbias"), got, pytorch, exact):
        floor = 1e-6 if name in ("mean", "var") else 1e-3  # both near-exact: float32 statistics
        assert max_error(mine, want) <= 2 * max_error(theirs, want) + floor, name


@ACTIVATIONS
@pytest.mark.parametrize("given", [False, True])
def test_channels_last_in_channels_last_out(given, activation, generator, device):
    shape = (3, 5, 7, 3, 5)
    backends = with_segments(shape[0])
    inputs = make_inputs(shape, generator, device, given=given, channels_last=True)
    got = run(backends["triton"], *inputs, activation)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    assert got[3].is_contiguous(memory_format=torch.channels_last)  # dx too
    want = run(backends["reference"], *inputs, activation, dtype=torch.float64)
    for mine, exact in zip(got, want):
        torch.testing.assert_close(mine.double(), exact, rtol=1e-5, atol=2e-5)


def test_strided_layouts_give_the_same_values(generator, device):
    """A slice whose spatial dims do not merge, and an upstream gradient that is an expanded view."""
    backends = with_segments(3)
    x, weight, bias, _, _ = make_inputs((3, 4, 6, 5, 8), generator, device)
    sliced = x[:, :, :, ::2]
    upstream = torch.randn(1, 6, 1, 4, generator=generator).to(device).expand(sliced.shape)
    got = run(backends["triton"], sliced, weight, bias, (None, None), upstream, "silu")
    want = run(backends["reference"], sliced, weight, bias, (None, None), upstream, "silu", dtype=torch.float64)
    for mine, exact in zip(got, want):
        torch.testing.assert_close(mine.double(), exact, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_affine_free_and_expanded_running_statistics(activation, generator, device):
    """No weight and bias; evaluation with running statistics broadcast to [S, C] (stride 0), as
    SegmentedBatchNorm2d passes them."""
    backends = with_segments(3)
    x, _, _, _, upstream = make_inputs((3, 5, 7, 3, 5), generator, device, affine=False)
    running = (torch.randn(7, generator=generator).to(device)[None].expand(3, -1),
               (torch.rand(7, generator=generator) + 0.5).to(device)[None].expand(3, -1))
    for stats in ((None, None), running):
        got = run(backends["triton"], x, None, None, stats, upstream, activation)
        want = run(backends["reference"], x, None, None, stats, upstream, activation, dtype=torch.float64)
        for mine, exact in zip(got, want):
            assert (mine is None) == (exact is None)
            if mine is not None:
                torch.testing.assert_close(mine.double(), exact, rtol=1e-5, atol=2e-5)


def test_through_the_op_and_given_statistics_returned_as_given(generator, device):
    x, weight, bias, (mean, var), _ = make_inputs((3, 5, 7, 3, 5), generator, device, given=True)
    y, used_mean, used_var = ops.segmented_batch_norm(x, 3, weight, bias, 1e-5, mean, var, activation="swish",
                                                      backend="triton")
    assert used_mean is mean and used_var is var
    expected = reference.segmented_batch_norm(x, 3, weight, bias, 1e-5, mean, var, "silu")[0]
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_input_errors(generator, device):
    x, weight, bias, (mean, var), _ = make_inputs((3, 5, 7, 3, 5), generator, device, given=True)
    with pytest.raises(ValueError, match="must be float32, bfloat16 or float16, got torch.float64"):
        segmented_batch_norm_triton(x.double(), 3, None, None, 1e-5, None, None, None)
    with pytest.raises(ValueError, match="no gradient for given mean and var"):
        segmented_batch_norm_triton(x, 3, weight, bias, 1e-5, mean.requires_grad_(), var, "relu")
    with pytest.raises(ValueError, match="does not split into 4 equal segments"):
        ops.segmented_batch_norm(x, 4, weight, bias, backend="triton")


@pytest.mark.parametrize("given", [False, True])
def test_opcheck(given, generator, device):
    """Schema, fake tensors, autograd registration, AOT dispatch of both custom ops."""
    x, weight, bias, (mean, var), upstream = make_inputs((3, 4, 5, 3, 3), generator, device, given=given)
    x, weight, bias = (t.requires_grad_() for t in (x, weight, bias))
    torch.library.opcheck(torch.ops.vaenas.segmented_batch_norm_triton_forward.default,
                          (x, 3, weight, bias, 1e-5, mean, var, "relu"))
    _, batch_mean, batch_var = torch.ops.vaenas.segmented_batch_norm_triton_forward(
        x.detach(), 3, weight.detach(), bias.detach(), 1e-5, mean, var, "silu")
    torch.library.opcheck(torch.ops.vaenas.segmented_batch_norm_triton_backward.default,
                          (upstream, x.detach(), weight.detach(), bias.detach(), batch_mean, batch_var, 1e-5, 3,
                           "silu", not given))

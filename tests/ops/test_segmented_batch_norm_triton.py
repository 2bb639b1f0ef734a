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
from batch_norm_cases import (
    SHAPES,
    assert_all_close,
    assert_within_twice_pytorch,
    implementations,
    make_inputs,
    run,
)

from vaenas import ops
from vaenas.ops import reference
from vaenas.ops._dispatch import triton_interpreted

pytest.importorskip("triton")  # before the kernel module imports it
from vaenas.kernels.segmented_batch_norm import segmented_batch_norm_triton

pytestmark = pytest.mark.triton

ACTIVATIONS = pytest.mark.parametrize("activation", [None, "relu", "silu"])


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


def with_segments(segments):
    return implementations(segments, segmented_batch_norm_triton)


@ACTIVATIONS
@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_float32_matches_the_float64_reference(shape, given, activation, generator, device):
    backends = with_segments(shape[0])
    inputs = make_inputs(shape, generator, device, given=given)
    got = run(backends["fused"], *inputs, activation)
    assert_all_close(got, run(backends["reference"], *inputs, activation, dtype=torch.float64), rtol=1e-5, atol=2e-5)
    assert got[0].dtype == torch.float32 and got[1].dtype == got[2].dtype == torch.float32


@ACTIVATIONS
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_twice_pytorchs_error(dtype, channels_last, activation, generator, device):
    """Against float64 on the same rounded input, next to PyTorch's mixed-precision batch norm."""
    shape = (3, 6, 10, 4, 5)
    backends = with_segments(shape[0])
    inputs = make_inputs(shape, generator, device, dtype, channels_last=channels_last)
    got = run(backends["fused"], *inputs, activation)
    assert got[0].dtype == dtype and got[3].dtype == dtype and got[4].dtype == torch.float32
    assert_within_twice_pytorch(got, run(backends["aten"], *inputs, activation),
                                run(backends["reference"], *inputs, activation, dtype=torch.float64))


@ACTIVATIONS
@pytest.mark.parametrize("given", [False, True])
def test_channels_last_in_channels_last_out(given, activation, generator, device):
    shape = (3, 5, 7, 3, 5)
    backends = with_segments(shape[0])
    inputs = make_inputs(shape, generator, device, given=given, channels_last=True)
    got = run(backends["fused"], *inputs, activation)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    assert got[3].is_contiguous(memory_format=torch.channels_last)  # dx too
    assert_all_close(got, run(backends["reference"], *inputs, activation, dtype=torch.float64), rtol=1e-5, atol=2e-5)


def test_strided_layouts_give_the_same_values(generator, device):
    """A slice whose spatial dims do not merge, and an upstream gradient that is an expanded view."""
    backends = with_segments(3)
    x, weight, bias, _, _ = make_inputs((3, 4, 6, 5, 8), generator, device)
    sliced = x[:, :, :, ::2]
    upstream = torch.randn(1, 6, 1, 4, generator=generator).to(device).expand(sliced.shape)
    inputs = (sliced, weight, bias, (None, None), upstream)
    got = run(backends["fused"], *inputs, "silu")
    assert_all_close(got, run(backends["reference"], *inputs, "silu", dtype=torch.float64), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_affine_free_and_expanded_running_statistics(activation, generator, device):
    """No weight and bias; evaluation with running statistics broadcast to [S, C] (stride 0), as
    SegmentedBatchNorm2d passes them."""
    backends = with_segments(3)
    x, _, _, _, upstream = make_inputs((3, 5, 7, 3, 5), generator, device, affine=False)
    running = (torch.randn(7, generator=generator).to(device)[None].expand(3, -1),
               (torch.rand(7, generator=generator) + 0.5).to(device)[None].expand(3, -1))
    for stats in ((None, None), running):
        got = run(backends["fused"], x, None, None, stats, upstream, activation)
        want = run(backends["reference"], x, None, None, stats, upstream, activation, dtype=torch.float64)
        assert_all_close(got, want, rtol=1e-5, atol=2e-5)


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

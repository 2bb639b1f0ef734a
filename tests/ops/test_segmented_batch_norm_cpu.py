"""The C++ CPU backend of segmented_batch_norm (+ activation) against the reference, forward and
backward: float64 to rounding, float32 against float64, bf16 and fp16 within about twice PyTorch's
own error; both memory formats kept; opcheck of both custom ops."""

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
from vaenas.ops import batch_norm_cpu

if batch_norm_cpu.missing_reason() is not None:  # a build without the ops is a setup error, not a skip
    pytest.fail(f"the C++ segmented_batch_norm is not available: {batch_norm_cpu.missing_reason()}",
                pytrace=False)

ACTIVATIONS = pytest.mark.parametrize("activation", [None, "relu", "silu"])
CPU = torch.device("cpu")


@pytest.fixture
def generator(request: pytest.FixtureRequest) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


def with_segments(segments):
    return implementations(segments, batch_norm_cpu.segmented_batch_norm_cpu)


# every shape channels-first, the 4-D ones channels-last too
LAYOUTS = [(shape, False) for shape in SHAPES] + [(shape, True) for shape in SHAPES if len(shape) == 5]


@ACTIVATIONS
@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize(("shape", "channels_last"), LAYOUTS)
def test_float64_equals_the_reference(shape, given, channels_last, activation, generator):
    backends = with_segments(shape[0])
    inputs = make_inputs(shape, generator, CPU, torch.float64, given=given, channels_last=channels_last)
    got = run(backends["fused"], *inputs, activation)
    if channels_last:
        assert got[0].is_contiguous(memory_format=torch.channels_last)
        assert got[3].is_contiguous(memory_format=torch.channels_last)
    assert_all_close(got, run(backends["reference"], *inputs, activation), rtol=1e-10, atol=1e-12)


@ACTIVATIONS
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("given", [False, True])
def test_float32_matches_the_float64_reference(given, channels_last, activation, generator):
    backends = with_segments(3)
    inputs = make_inputs((3, 7, 40, 5, 5), generator, CPU, given=given, channels_last=channels_last)
    got = run(backends["fused"], *inputs, activation)
    assert got[1].dtype == got[2].dtype == torch.float32
    assert_all_close(got, run(backends["reference"], *inputs, activation, dtype=torch.float64), rtol=1e-5, atol=2e-5)


@ACTIVATIONS
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_twice_pytorchs_error(dtype, channels_last, activation, generator):
    shape = (3, 6, 10, 4, 5)
    backends = with_segments(shape[0])
    inputs = make_inputs(shape, generator, CPU, dtype, channels_last=channels_last)
    got = run(backends["fused"], *inputs, activation)
    assert got[0].dtype == dtype and got[3].dtype == dtype and got[4].dtype == torch.float32
    assert_within_twice_pytorch(got, run(backends["aten"], *inputs, activation),
                                run(backends["reference"], *inputs, activation, dtype=torch.float64))


def test_strided_layouts_and_affine_free_running_statistics(generator):
    """A slice (copied once), an expanded upstream gradient, no affine, [S, C] views of stride 0."""
    backends = with_segments(3)
    x, weight, bias, _, _ = make_inputs((3, 4, 6, 5, 8), generator, CPU, torch.float64)
    sliced = x[:, :, :, ::2]
    upstream = torch.randn(1, 6, 1, 4, generator=generator, dtype=torch.float64).expand(sliced.shape)
    got = run(backends["fused"], sliced, weight, bias, (None, None), upstream, "silu")
    assert_all_close(got, run(backends["reference"], sliced, weight, bias, (None, None), upstream, "silu"),
                     rtol=1e-10, atol=1e-12)
    running = (torch.randn(6, dtype=torch.float64)[None].expand(3, -1),
               (torch.rand(6, dtype=torch.float64) + 0.5)[None].expand(3, -1))
    got = run(backends["fused"], sliced, None, None, running, upstream, "relu")
    assert_all_close(got, run(backends["reference"], sliced, None, None, running, upstream, "relu"),
                     rtol=1e-10, atol=1e-12)


def test_the_cpu_default_is_the_fused_kernel(generator, monkeypatch):
    """Without backend=, CPU tensors run the C++ op (same values as backend='cpu'), unless forced."""
    monkeypatch.delenv("VAENAS_BACKEND", raising=False)
    x, weight, bias, _, _ = make_inputs((3, 5, 7, 3, 5), generator, CPU)
    calls = []
    original = batch_norm_cpu.segmented_batch_norm_cpu
    monkeypatch.setattr(batch_norm_cpu, "segmented_batch_norm_cpu", lambda *a: calls.append(1) or original(*a))
    y, _, _ = ops.segmented_batch_norm(x, 3, weight, bias, activation="relu")
    assert calls == [1]
    torch.testing.assert_close(y, ops.segmented_batch_norm(x, 3, weight, bias, activation="relu", backend="aten")[0])


def test_input_errors(generator):
    x, weight, bias, (mean, var), _ = make_inputs((3, 5, 7, 3, 5), generator, CPU, given=True)
    with pytest.raises(ValueError, match="no gradient for given mean and var"):
        batch_norm_cpu.segmented_batch_norm_cpu(x, 3, weight, bias, 1e-5, mean.requires_grad_(), var, "relu")
    with pytest.raises(RuntimeError, match=r"weight must be \[C\] = \[7\]"):
        torch.ops.vaenas.segmented_batch_norm_forward(x, 3, weight[:5], bias, 1e-5, None, None, "relu")
    with pytest.raises(RuntimeError, match="activation must be 'none', 'relu' or 'silu', got 'gelu'"):
        torch.ops.vaenas.segmented_batch_norm_forward(x, 3, weight, bias, 1e-5, None, None, "gelu")
    with pytest.raises(RuntimeError, match="does not split into 4 equal segments"):
        torch.ops.vaenas.segmented_batch_norm_forward(x, 4, weight, bias, 1e-5, None, None, "none")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("given", [False, True])
def test_opcheck(given, channels_last, generator):
    """Schema, fake tensors, autograd registration, AOT dispatch of both custom ops."""
    x, weight, bias, (mean, var), upstream = make_inputs((3, 4, 5, 3, 3), generator, CPU, given=given,
                                                         channels_last=channels_last)
    x, weight, bias = (t.requires_grad_() for t in (x, weight, bias))
    torch.library.opcheck(torch.ops.vaenas.segmented_batch_norm_forward.default,
                          (x, 3, weight, bias, 1e-5, mean, var, "silu"))
    _, batch_mean, batch_var = torch.ops.vaenas.segmented_batch_norm_forward(
        x.detach(), 3, weight.detach(), bias.detach(), 1e-5, mean, var, "relu")
    torch.library.opcheck(torch.ops.vaenas.segmented_batch_norm_backward.default,
                          (upstream, x.detach(), weight.detach(), bias.detach(), batch_mean, batch_var, 1e-5, 3,
                           "relu", not given))


def test_an_extension_without_the_ops_falls_back_to_aten_unless_forced(generator, monkeypatch):
    """vaenas._C built before these ops still loads: automatic choice runs aten, a forced cpu says why."""
    monkeypatch.delenv("VAENAS_BACKEND", raising=False)
    monkeypatch.setattr(batch_norm_cpu, "missing_reason", lambda: "vaenas._C was built without them")
    monkeypatch.setattr(batch_norm_cpu, "segmented_batch_norm_cpu", lambda *a: pytest.fail("ran the C++ op"))
    x, weight, bias, _, _ = make_inputs((3, 5, 7, 3, 5), generator, CPU)
    y, _, _ = ops.segmented_batch_norm(x, 3, weight, bias, activation="relu")
    torch.testing.assert_close(y, ops.segmented_batch_norm(x, 3, weight, bias, activation="relu", backend="aten")[0])
    with pytest.raises(RuntimeError, match="backend 'cpu' cannot run segmented_batch_norm on cpu: vaenas._C was built"):
        ops.segmented_batch_norm(x, 3, weight, bias, backend="cpu")

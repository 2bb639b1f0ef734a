"""Inputs and runners shared by the fused segmented_batch_norm backend tests (C++ CPU, Triton).

Every implementation is called as f(x, weight, bias, mean, var, activation) for a fixed number of
segments (`implementations`); `run` returns its outputs and the gradients of (y * upstream).sum().
"""

from __future__ import annotations

import torch

from vaenas import ops
from vaenas.ops import reference

# (S, b, C, *spatial): odd sizes. Channel blocks: 32 in Triton (C = 40 and 70 span two and three),
# 64 in C++ channels-last (C = 70 spans two); 7 * 25 values a channel exceed one Triton row tile.
SHAPES = [(3, 5, 7, 3, 5), (1, 6, 5, 4, 3), (3, 7, 40, 5, 5), (3, 4, 9), (1, 9, 6, 11), (3, 2, 70, 2, 3)]
NAMES = ("y", "mean", "var", "dx", "dweight", "dbias")


def make_inputs(shape, generator, device, dtype=torch.float32, affine=True, given=False, channels_last=False):
    """x (mean 0.5, not centred: the variance pass must not cancel), weight, bias, (mean, var), upstream."""
    segments, rows, channels, *spatial = shape
    x = (torch.randn(segments * rows, channels, *spatial, generator=generator) + 0.5).to(device, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(channels, generator=generator) + 1).to(device) if affine else None
    bias = torch.randn(channels, generator=generator).to(device) if affine else None
    stats_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # as the op's own statistics
    stats = (torch.randn(segments, channels, generator=generator).to(device, stats_dtype),
             (torch.rand(segments, channels, generator=generator) + 0.5).to(device, stats_dtype)) if given else (None, None)
    upstream = torch.randn(x.shape, generator=generator).to(device, dtype)
    return x, weight, bias, stats, upstream


def run(function, x, weight, bias, stats, upstream, activation, dtype=None):
    """(y, mean, var, dx, dweight, dbias) of function, x and the parameters (and the given
    statistics, for float64) cast to dtype."""
    leaves = [None if t is None else t.detach().to(dtype or t.dtype).requires_grad_() for t in (x, weight, bias)]
    given = [None if t is None else t.to(dtype) if dtype == torch.float64 else t for t in stats]
    y, mean, var = function(leaves[0], leaves[1], leaves[2], *given, activation)
    (y * upstream.to(y.dtype)).sum().backward()
    return (y, mean, var, *(None if t is None else t.grad for t in leaves))


def implementations(segments, fused):
    """The fused backend under test (f with the op's argument order after num_segments), the
    reference and the aten backend, for `segments` segments."""
    return {
        "fused": lambda x, w, b, m, v, a: fused(x, segments, w, b, 1e-5, m, v, a),
        "reference": lambda x, w, b, m, v, a: reference.segmented_batch_norm(x, segments, w, b, 1e-5, m, v, a),
        "aten": lambda x, w, b, m, v, a: ops.segmented_batch_norm(x, segments, w, b, 1e-5, m, v, activation=a,
                                                                  backend="aten"),
    }


def max_error(got, want):
    return 0.0 if got is None else (got.double() - want.double()).abs().max().item()


def assert_all_close(got, want, rtol, atol):
    """Each output and gradient of `run` against the other's (None where the other is None)."""
    for name, mine, exact in zip(NAMES, got, want):
        assert (mine is None) == (exact is None), name
        if mine is not None:
            torch.testing.assert_close(mine.double(), exact.double(), rtol=rtol, atol=atol,
                                       msg=lambda message, name=name: f"{name}: {message}")


def assert_within_twice_pytorch(got, pytorch, exact):
    """Half precision: the fused backend's error at most ~2x PyTorch's own (aten), per output."""
    for name, mine, theirs, want in zip(NAMES, got, pytorch, exact):
        floor = 1e-6 if name in ("mean", "var") else 1e-3  # both near-exact there: float32 statistics
        assert max_error(mine, want) <= 2 * max_error(theirs, want) + floor, name

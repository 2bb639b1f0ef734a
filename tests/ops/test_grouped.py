"""vaenas.ops.route and segmented_batch_norm against naive per-segment loops, forward and backward.

float64, fresh random inputs of odd sizes (S = 3 segments of 5 rows, 7 channels, 3 x 5 pixels).
"""

import pytest
import torch
import torch.nn.functional as F

from vaenas import ops

S, B, C, H, W = 3, 5, 7, 3, 5


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(20261128)


def randn(generator, *shape, grad=True):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(grad)


def grads(*tensors):
    grads = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return grads


# --- segmented_batch_norm ---------------------------------------------------------------------


BACKENDS = pytest.mark.parametrize("backend", ["reference", "aten"])


@BACKENDS
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(S * B, C, H, W), (S * B, C)])
def test_batch_statistics_equal_one_batch_norm_per_segment(generator, affine, shape, backend):
    x = randn(generator, *shape)
    weight, bias = (randn(generator, C), randn(generator, C)) if affine else (None, None)
    params = [x] + ([weight, bias] if affine else [])
    upstream = randn(generator, *shape, grad=False)

    y, mean, var = ops.segmented_batch_norm(x, S, weight, bias, eps=1e-3, backend=backend)
    (y * upstream).sum().backward()
    fused = grads(*params)

    reduce = [0] + list(range(2, len(shape)))
    expected = []
    for s, part in enumerate(x.chunk(S)):
        expected.append(F.batch_norm(part, None, None, weight, bias, True, 0.0, 1e-3))
        torch.testing.assert_close(mean[s], part.mean(reduce), rtol=0, atol=1e-12)
        torch.testing.assert_close(var[s], part.var(reduce, unbiased=False), rtol=0, atol=1e-12)
    torch.testing.assert_close(y, torch.cat(expected), rtol=0, atol=1e-12)
    (torch.cat(expected) * upstream).sum().backward()
    for got, want in zip(fused, grads(*params)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@BACKENDS
def test_given_statistics_normalise_each_segment_with_its_own(generator, backend):
    x, weight, bias = randn(generator, S * B, C, H, W), randn(generator, C), randn(generator, C)
    mean, var = randn(generator, S, C, grad=False), randn(generator, S, C, grad=False).exp()
    upstream = randn(generator, S * B, C, H, W, grad=False)
    y, used_mean, used_var = ops.segmented_batch_norm(x, S, weight, bias, 1e-5, mean, var, backend=backend)
    assert used_mean is mean and used_var is var
    (y * upstream).sum().backward()
    fused = grads(x, weight, bias)
    expected = torch.cat(
        [F.batch_norm(part, mean[s], var[s], weight, bias, False, 0.0, 1e-5) for s, part in enumerate(x.chunk(S))]
    )
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    (expected * upstream).sum().backward()
    for got, want in zip(fused, grads(x, weight, bias)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@BACKENDS
def test_half_precision_keeps_float32_statistics(generator, backend):
    x = torch.randn(S * B, C, H, W, generator=generator).bfloat16()
    y, mean, var = ops.segmented_batch_norm(x, S, None, None, backend=backend)
    assert y.dtype == torch.bfloat16 and mean.dtype == var.dtype == torch.float32
    torch.testing.assert_close(mean, x.float().unflatten(0, (S, B)).mean((1, 3, 4)))


def test_batch_norm_input_errors(generator):
    x = randn(generator, S * B, C, H, W, grad=False)
    with pytest.raises(ValueError, match="does not split into 4 equal segments"):
        ops.segmented_batch_norm(x, 4, None, None)
    with pytest.raises(ValueError, match="both mean and var"):
        ops.segmented_batch_norm(x, S, None, None, 1e-5, torch.zeros(S, C))
    with pytest.raises(ValueError, match=r"\[S, C\] = \[3, 7\]"):
        ops.segmented_batch_norm(x, S, None, None, 1e-5, torch.zeros(S, C + 1), torch.ones(S, C + 1))
    with pytest.raises(ValueError, match="takes \\[S\\*b, C, \\*\\]"):
        ops.segmented_batch_norm(x.flatten()[:S], S, None, None)


# --- route ------------------------------------------------------------------------------------


class Recorded:
    """A candidate that records the segments it ran on: conv (C -> C + 1 channels, stride 2) whose
    output depends on the global group (y + group), to check that `segments` is passed on."""

    def __init__(self, generator):
        self.weight = randn(generator, C + 1, C, 3, 3)
        self.calls = []

    def __call__(self, x, segments):
        self.calls.append((segments.tolist(), x.shape[0]))
        y = F.conv2d(x, self.weight, stride=2, padding=1)
        return y + segments.to(y).repeat_interleave(x.shape[0] // len(segments))[:, None, None, None]


def naive_route(x, segments, choice, candidates):
    """One segment at a time; zeros for a None candidate (shape from a candidate that ran)."""
    outputs = [None if candidates[k] is None else candidates[k](part, segments[s : s + 1])
               for s, (part, k) in enumerate(zip(x.chunk(len(segments)), choice.tolist()))]  # fmt: skip
    like = next(out for out in outputs if out is not None)
    return torch.cat([torch.zeros_like(like) if out is None else out for out in outputs])


@pytest.mark.parametrize("choice", [[2, 0, 2, 1, 0], [1, 2, 1, 1, 2], [0, 0, 3, 0, 0]])
def test_route_equals_a_loop_over_segments_and_runs_each_candidate_once(generator, choice):
    segments = torch.tensor([4, 0, 2, 7, 5])  # a subset of global groups, in any order
    x = randn(generator, len(segments) * B, C, H, W)
    recorded = [Recorded(generator) for _ in range(3)]
    candidates = [None, *recorded[:2], recorded[2]]  # 0 is `none`
    choice = torch.tensor(choice)
    upstream = randn(generator, len(segments) * B, C + 1, (H + 1) // 2, (W + 1) // 2, grad=False)
    params = [x] + [c.weight for c in recorded]

    y = ops.route(x, segments, choice, candidates)
    for k, candidate in enumerate(candidates):
        if candidate is not None:  # at most once, on exactly the segments that chose it
            chose = segments[choice == k].tolist()
            assert candidate.calls == ([(chose, len(chose) * B)] if chose else []), k
    (y * upstream).sum().backward()
    routed = [None if p.grad is None else p.grad.clone() for p in params]
    for p in params:
        p.grad = None

    expected = naive_route(x, segments, choice, candidates)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    (expected * upstream).sum().backward()
    for got, param in zip(routed, params):
        assert (got is None) == (param.grad is None)  # an unchosen candidate gets no gradient
        if got is not None:
            torch.testing.assert_close(got, param.grad, rtol=1e-10, atol=1e-12)


def test_route_with_one_choice_calls_the_candidate_on_the_whole_batch(generator):
    x, segments = randn(generator, S * B, C, H, W, grad=False), torch.arange(S)
    seen = []
    y = ops.route(x, segments, torch.full((S,), 1), [None, lambda inputs, segs: seen.append(inputs) or inputs * 2])
    assert seen[0] is x  # no gather or scatter: the ordinary G = 1 step costs nothing extra
    torch.testing.assert_close(y, x * 2)


def test_route_of_none_only_is_none_and_bad_choice_is_an_error(generator):
    x, segments = randn(generator, S * B, C, grad=False), torch.arange(S)
    never = [None, lambda inputs, segs: pytest.fail("a None-only route ran a candidate")]
    assert ops.route(x, segments, torch.zeros(S, dtype=torch.long), never) is None
    with pytest.raises(ValueError, match=r"choice must be \[S\] = \[3\]"):
        ops.route(x, segments, torch.zeros(S + 1, dtype=torch.long), never)

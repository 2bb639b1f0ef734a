"""vaenas.ops.route and segmented_batch_norm against naive per-segment loops, forward and backward.

float64, fresh random inputs of odd sizes (S = 3 segments of 5 rows, 7 channels, 3 x 5 pixels).
"""

import pytest
import torch
import torch.nn.functional as F

from vaenas import ops

S, B, C, H, W = 3, 5, 7, 3, 5


BACKENDS = pytest.mark.parametrize("backend", ["reference", "aten"])


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
@pytest.mark.parametrize("activation", ["relu", "silu", "swish"])
@pytest.mark.parametrize("given", [False, True])
def test_activation_follows_the_batch_norm(generator, activation, given, backend):
    """activation(batch norm) equals the unfused pair, forward and backward, statistics untouched."""
    x, weight, bias = randn(generator, S * B, C, H, W), randn(generator, C), randn(generator, C)
    stats = (randn(generator, S, C, grad=False), randn(generator, S, C, grad=False).exp()) if given else (None, None)
    upstream = randn(generator, S * B, C, H, W, grad=False)
    y, mean, var = ops.segmented_batch_norm(x, S, weight, bias, 1e-5, *stats, activation=activation, backend=backend)
    (y * upstream).sum().backward()
    fused = grads(x, weight, bias)
    plain, plain_mean, plain_var = ops.segmented_batch_norm(x, S, weight, bias, 1e-5, *stats, backend=backend)
    expected = F.relu(plain) if activation == "relu" else F.silu(plain)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close((mean, var), (plain_mean, plain_var), rtol=0, atol=0)
    (expected * upstream).sum().backward()
    for got, want in zip(fused, grads(x, weight, bias)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_unknown_activation_is_an_error(generator):
    with pytest.raises(ValueError, match="activation must be None, 'relu', 'silu' or 'swish', got 'gelu'"):
        ops.segmented_batch_norm(randn(generator, S * B, C, grad=False), S, None, None, activation="gelu")


@pytest.mark.parametrize("given", [False, True])
def test_aten_batch_norm_keeps_channels_last(generator, given):
    """The supernets run channels-last (faster on the CPU too): the aten backend must not turn it back."""
    x = randn(generator, S * B, C, H, W, grad=False).contiguous(memory_format=torch.channels_last)
    weight, bias = randn(generator, C, grad=False), randn(generator, C, grad=False)
    stats = (randn(generator, S, C, grad=False), randn(generator, S, C, grad=False).exp()) if given else (None, None)
    y, mean, var = ops.segmented_batch_norm(x, S, weight, bias, 1e-5, *stats, backend="aten")
    assert y.is_contiguous(memory_format=torch.channels_last)
    expected, _, _ = ops.segmented_batch_norm(x.contiguous(), S, weight, bias, 1e-5, *stats, backend="reference")
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


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


def runs_of(chosen_positions):
    """The runs of consecutive positions in a sorted list: [[0, 1], [3]] for [0, 1, 3]."""
    runs = []
    for position in chosen_positions:
        if runs and runs[-1][-1] == position - 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs


@BACKENDS
@pytest.mark.parametrize("choice", [[2, 0, 2, 1, 0], [1, 2, 1, 1, 2], [0, 0, 3, 0, 0], [1, 1, 2, 2, 2]])
def test_route_equals_a_loop_over_segments(generator, choice, backend):
    """reference: each candidate once, on all the segments that chose it; aten: once per run of
    consecutive segments that chose it, on a view of x."""
    segments = torch.tensor([4, 0, 2, 7, 5])  # a subset of global groups, in any order
    x = randn(generator, len(segments) * B, C, H, W)
    recorded = [Recorded(generator) for _ in range(3)]
    candidates = [None, *recorded[:2], recorded[2]]  # 0 is `none`
    choice = torch.tensor(choice)
    upstream = randn(generator, len(segments) * B, C + 1, (H + 1) // 2, (W + 1) // 2, grad=False)
    params = [x] + [c.weight for c in recorded]

    y = ops.route(x, segments, choice, candidates, backend=backend)
    for k, candidate in enumerate(candidates):
        if candidate is not None:  # on exactly the segments that chose it
            positions = (choice == k).nonzero().flatten().tolist()
            groups = [positions] if backend == "reference" and positions else runs_of(positions)
            assert candidate.calls == [(segments[g].tolist(), len(g) * B) for g in groups], k
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


@pytest.mark.parametrize("choices", [([1, 1, 0, 2, 1], [2, 0, 2, 2, 1]), ([1, 1, 1, 1, 1], [0, 2, 2, 0, 0]),
                                     ([0, 0, 0, 0, 1], [0, 0, 2, 2, 2])])
def test_route_sum_without_autograd_writes_the_same_sum(generator, choices):
    """Under no_grad the aten backend adds straight into the node (torch.add(out=)): same values."""
    segments = torch.arange(5)
    inputs = [randn(generator, 5 * B, C, H, W, grad=False) for _ in range(2)]
    weight = randn(generator, C, C, 3, 3, grad=False)
    candidates = [None, lambda x, segs: x, lambda x, segs: F.conv2d(x, weight, padding=1)]
    terms = [(x, torch.tensor(choice), candidates) for x, choice in zip(inputs, choices)]
    with torch.no_grad():
        fast = ops.route_sum(terms, segments, backend="aten")
    torch.testing.assert_close(fast, ops.route_sum(terms, segments, backend="reference"), rtol=0, atol=1e-12)


@BACKENDS
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_route_sum_equals_the_sum_of_routes_and_never_writes_an_input(generator, backend, memory_format):
    """A node's sum of three edges: a skip (its output is x itself), a conv, and an all-`none` edge
    with no input; forward and backward, both memory formats kept."""
    segments = torch.tensor([3, 1, 0, 2, 4])
    inputs = [randn(generator, len(segments) * B, C, H, W, grad=False).contiguous(memory_format=memory_format)
              .requires_grad_() for _ in range(2)]
    weight = randn(generator, C, C, 3, 3)
    skip = lambda x, segs: x  # noqa: E731 (the identity candidate, as the supernets pass it)
    conv = lambda x, segs: F.conv2d(x, weight, padding=1)  # noqa: E731
    terms = [(inputs[0], torch.tensor([1, 1, 0, 2, 1]), [None, skip, conv]),
             (inputs[1], torch.tensor([2, 0, 2, 2, 1]), [None, skip, conv]),
             (None, torch.zeros(5, dtype=torch.long), [None, skip, conv])]
    before = [x.detach().clone() for x in inputs]
    upstream = randn(generator, len(segments) * B, C, H, W, grad=False)
    y = ops.route_sum(terms, segments, backend=backend)
    assert all(torch.equal(x, b) for x, b in zip(inputs, before))  # no input written into
    if backend == "aten" and memory_format == torch.channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    (y * upstream).sum().backward()
    got = grads(*inputs, weight)
    expected = sum(naive_route(x, segments, choice, candidates) for x, choice, candidates in terms[:2])
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    (expected * upstream).sum().backward()
    for mine, want in zip(got, grads(*inputs, weight)):
        torch.testing.assert_close(mine, want, rtol=1e-10, atol=1e-12)
    assert ops.route_sum(terms[2:], segments, backend=backend) is None


@BACKENDS
def test_route_with_one_choice_calls_the_candidate_on_the_whole_batch(generator, backend):
    x, segments = randn(generator, S * B, C, H, W, grad=False), torch.arange(S)
    seen = []
    y = ops.route(x, segments, torch.full((S,), 1), [None, lambda inputs, segs: seen.append(inputs) or inputs * 2],
                  backend=backend)
    assert seen[0] is x  # no gather or scatter: the ordinary G = 1 step costs nothing extra
    torch.testing.assert_close(y, x * 2)


@BACKENDS
def test_route_of_none_only_is_none_and_bad_choice_is_an_error(generator, backend):
    x, segments = randn(generator, S * B, C, grad=False), torch.arange(S)
    never = [None, lambda inputs, segs: pytest.fail("a None-only route ran a candidate")]
    assert ops.route(x, segments, torch.zeros(S, dtype=torch.long), never, backend=backend) is None
    with pytest.raises(ValueError, match=r"choice must be \[S\] = \[3\]"):
        ops.route(x, segments, torch.zeros(S + 1, dtype=torch.long), never, backend=backend)

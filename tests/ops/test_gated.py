"""vaenas.ops.gated_mixed_op (ProxylessNAS binary gates, recompute in backward) against autograd on
an explicit gated sum, in float64 on tiny sizes; rescale_updated_logits; draw_other_path; and a toy
edge where one candidate is clearly best, on which the logits concentrate in both modes."""

import pytest
import torch
from torch import nn

from vaenas import ops
from vaenas.ops.gated import draw_two_paths, gate_estimator

B, C, H, W = 2, 3, 4, 4


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(20261128)


class Counted(nn.Module):
    """A candidate that records each call and whether grad was enabled in it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module, self.calls = module, []

    def forward(self, x):
        self.calls.append(torch.is_grad_enabled())
        return self.module(x)


def make_candidates(seed: int):
    """K = 5: conv 1x1, None (`none`), conv 3x3, identity, avg pool; float64, fixed init."""
    torch.manual_seed(seed)
    modules = [
        Counted(nn.Conv2d(C, C, 1).double()),
        None,
        Counted(nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, 3, padding=1)).double()),
        Counted(nn.Identity()),
        Counted(nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
    ]
    return modules


def run(backend, mode, active, other, generator_seed=7):
    """One forward + backward through a nonlinear head; returns (x.grad, logits.grad, weight grads, candidates)."""
    gen = torch.Generator().manual_seed(generator_seed)
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
    head = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
    candidates = make_candidates(0)
    y = ops.gated_mixed_op(x * 1.5, candidates, active, logits, mode, other, backend=backend)
    loss = (torch.tanh(y) * head).sum() + (y**2).sum() * 0.1
    loss.backward()
    weights = [[None if p.grad is None else p.grad.clone() for p in c.parameters()] if c is not None else []
               for c in candidates]
    return x.grad, logits.grad, weights, candidates, (x, logits, head)


CASES = [("full", 0, None), ("full", 2, None), ("full", 1, None), ("full", 3, None),
         ("two", 0, 2), ("two", 2, 4), ("two", 1, 2), ("two", 3, 1), ("two", 4, 0)]


@pytest.mark.parametrize("mode,active,other", CASES)
def test_recompute_matches_explicit_gated_sum(mode, active, other):
    x_grad, logit_grad, weights, _, _ = run("aten", mode, active, other)
    ref_x_grad, ref_logit_grad, ref_weights, _, _ = run("reference", mode, active, other)
    torch.testing.assert_close(logit_grad, ref_logit_grad, rtol=1e-10, atol=1e-12)
    if x_grad is None:  # active `none`: x reaches y through no candidate
        assert active == 1 and torch.count_nonzero(ref_x_grad) == 0
    else:
        torch.testing.assert_close(x_grad, ref_x_grad, rtol=1e-10, atol=1e-12)
    for k, (mine, theirs) in enumerate(zip(weights, ref_weights)):
        for g, ref in zip(mine, theirs):
            if k == active:
                torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)
            else:  # off the active path: no gradient at all (reference: zeros through g_k = 0)
                assert g is None and (ref is None or torch.count_nonzero(ref) == 0)
    if mode == "two":
        untouched = [k for k in range(5) if k not in (active, other)]
        assert torch.count_nonzero(logit_grad[untouched]) == 0


@pytest.mark.parametrize("mode,active,other", CASES)
def test_estimator_from_autograd_gate_gradients(mode, active, other):
    """∂L/∂g_j by autograd on y = Σ g_j o_j(x) with a leaf g, then Σ_j ∂L/∂g_j p_j(δ_ij − p_i) by
    explicit loops: the op's logits gradient."""
    _, logit_grad, _, candidates, (x, logits, head) = run("aten", mode, active, other)
    paths = list(range(5)) if mode == "full" else [active, other]
    gates = torch.nn.functional.one_hot(torch.tensor(active), 5).double().requires_grad_(True)
    with torch.no_grad():
        outputs = {j: torch.zeros(B, C, H, W, dtype=torch.float64) if candidates[j] is None
                   else candidates[j](x.detach() * 1.5) for j in paths}
    y = sum(gates[j] * outputs[j] for j in paths)
    ((torch.tanh(y) * head).sum() + (y**2).sum() * 0.1).backward()
    p = torch.softmax(logits.detach()[paths], 0)
    expected = torch.zeros(5, dtype=torch.float64)
    for a, i in enumerate(paths):
        for b, j in enumerate(paths):
            expected[i] += gates.grad[j] * p[b] * (float(a == b) - p[a])
    torch.testing.assert_close(logit_grad, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gate_estimator(gates.grad, logits.detach(), paths), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode,active,other", [("full", 0, None), ("two", 2, 4), ("two", 1, 3)])
def test_only_the_active_candidate_runs_forward_and_others_are_recomputed_without_grad(mode, active, other):
    _, _, _, candidates, _ = run("aten", mode, active, other)
    paths = range(5) if mode == "full" else (active, other)
    for k, candidate in enumerate(candidates):
        if candidate is None:
            continue
        if k == active:
            assert candidate.calls == [True]  # forward only, with grad (its activations are its own graph)
        elif k in paths:
            assert candidate.calls == [False]  # once, in backward, under no_grad
        else:
            assert candidate.calls == []


def saved_bytes(fn):
    """Bytes of the tensors autograd saves for backward while fn() runs (distinct storages)."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_non_active_outputs_are_not_stored():
    """The op saves what the active candidate alone saves, plus x and the output; the explicit
    gated sum saves every candidate's activations."""
    x = torch.randn(B, 8, 16, 16, dtype=torch.float64, requires_grad=True)
    logits = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(0)
    convs = [nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)).double()
             for _ in range(4)]
    active_alone = saved_bytes(lambda: convs[0](x))
    op = saved_bytes(lambda: ops.gated_mixed_op(x, convs, 0, logits, "full", backend="aten"))
    ref = saved_bytes(lambda: ops.gated_mixed_op(x, convs, 0, logits, "full", backend="reference"))
    activation = x.numel() * 8
    assert op <= active_alone + 2 * activation
    assert ref >= 4 * active_alone


def test_autocast_state_is_replayed_in_the_recompute():
    seen = []

    def spy(x):
        seen.append(torch.is_autocast_enabled("cpu"))
        return x * 2

    x = torch.randn(2, 4, requires_grad=True)
    logits = torch.zeros(2, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ops.gated_mixed_op(x, [lambda t: t, spy], 0, logits, "full", backend="aten")
    y.float().sum().backward()
    assert seen == [True]


def test_rescale_keeps_the_pair_total_and_the_others(generator):
    old = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    new = old.clone()
    pairs = torch.stack([torch.randperm(5, generator=generator)[:2] for _ in range(6)])
    new.scatter_(1, pairs, old.gather(1, pairs) + torch.randn(6, 2, generator=generator, dtype=torch.float64))
    rescaled = ops.rescale_updated_logits(new, old, pairs)
    p_old, p_new, p = (torch.softmax(t, 1) for t in (old, new, rescaled))
    others = torch.ones_like(old, dtype=torch.bool).scatter(1, pairs, False)
    torch.testing.assert_close(p[others], p_old[others])
    torch.testing.assert_close(p.gather(1, pairs).sum(1), p_old.gather(1, pairs).sum(1))
    # inside the pair, the update's ratio is kept
    ratio = lambda q: q.gather(1, pairs[:, :1]) / q.gather(1, pairs[:, 1:])  # noqa: E731
    torch.testing.assert_close(ratio(p), ratio(p_new))
    torch.testing.assert_close(rescaled[others], new[others])


def test_draw_other_path_never_returns_the_active_one(generator):
    logits = torch.tensor([[0.0, 0.0, 9.0, 0.0]] * 200)
    active = torch.tensor([2] * 100 + [0] * 100)
    other = ops.draw_other_path(logits, active, generator)
    assert not bool((other == active).any())
    assert (other[100:] == 2).float().mean() > 0.9  # follows p outside the active path


def test_draw_two_paths_is_proxylessnas_binarize(generator):
    """Mode two as ProxylessNAS draws it: a pair from p without replacement, the active path from
    the pair's softmax. For p = (.7, .2, .1) the active path is drawn with (.771, .174, .055), not p."""
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    expected = torch.zeros(3, dtype=torch.float64)
    for i in range(3):  # the pair drawn in order (i, j), then i active with p_i / (p_i + p_j)
        for j in range(3):
            if i != j:
                pair = p[i] * p[j] / (1 - p[i])
                expected[i] += pair * p[i] / (p[i] + p[j])
                expected[j] += pair * p[j] / (p[i] + p[j])
    torch.testing.assert_close(expected, torch.tensor([0.771, 0.174, 0.055], dtype=torch.float64), atol=5e-4, rtol=0)
    n = 200_000
    active, other = draw_two_paths(p.log()[None].expand(n, 3), generator)
    assert not bool((active == other).any())
    frequency = torch.bincount(active, minlength=3).double() / n
    # 5 standard errors (at most 0.0047 here)
    assert bool(((frequency - expected).abs() < 5 * (expected * (1 - expected) / n).sqrt()).all()), frequency
    pair_of_two = ((active == 1) & (other == 2)) | ((active == 2) & (other == 1))
    assert abs(float(pair_of_two.double().mean()) - 0.0472) < 0.003  # P({1, 2}) = .2·.1/.8 + .1·.2/.9


def test_bad_arguments_are_refused():
    x, logits = torch.randn(2, 3), torch.zeros(3, requires_grad=True)
    candidates = [lambda t: t] * 3
    with pytest.raises(ValueError, match="mode"):
        ops.gated_mixed_op(x, candidates, 0, logits, "three")
    with pytest.raises(ValueError, match="another path"):
        ops.gated_mixed_op(x, candidates, 1, logits, "two", 1)
    with pytest.raises(ValueError, match="logits"):
        ops.gated_mixed_op(x, candidates, 0, torch.zeros(4), "full")


# --- toy: one candidate is clearly best ------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "two"])
@pytest.mark.parametrize("sampling", ["softmax", "uniform"])
def test_logits_concentrate_on_the_best_candidate(mode, sampling):
    """One edge, K = 5 fixed candidates with orthogonal outputs (f_k scales column k; f_1 is
    `none`); the target is f_3's output. Active paths drawn from softmax(w) (ProxylessNAS) or
    uniformly (the VAE before its first refit); Adam on w; pair rescaled in mode two."""
    K, best = 5, 3
    x = torch.ones(4, K, dtype=torch.float64)
    columns = torch.eye(K, dtype=torch.float64)
    candidates = [(lambda t, k=k: t * columns[k]) for k in range(K)]
    candidates[1] = None
    target = candidates[best](x)
    logits = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.05, betas=(0.0, 0.999))
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        p = torch.softmax(logits.detach(), 0)
        weights = p if sampling == "softmax" else torch.full((K,), 1.0 / K, dtype=torch.float64)
        active = int(torch.multinomial(weights, 1, generator=generator))
        other = int(ops.draw_other_path(logits[None], torch.tensor([active]), generator)[0]) if mode == "two" else None
        optimizer.zero_grad()
        y = ops.gated_mixed_op(x, candidates, active, logits, mode, other, none_shape=x.shape)
        ((y - target) ** 2).sum().backward()
        before = logits.detach().clone()
        optimizer.step()
        if mode == "two":
            with torch.no_grad():
                logits.copy_(ops.rescale_updated_logits(logits[None], before[None], torch.tensor([[active, other]]))[0])
    p = torch.softmax(logits.detach(), 0)
    assert int(p.argmax()) == best
    assert float(p[best]) > 0.6

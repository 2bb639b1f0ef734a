"""The binary-gate mixed op of ProxylessNAS (paper §4.3, Algorithm 3): one path forward, gate
gradients for the others recomputed in backward.

A choice point with K candidates o_1..o_K, logits w [K] and binary gates g (one-hot on the active
path a) computes y = Σ_j g_j·o_j(x) = o_a(x). ProxylessNAS's estimator of ∂L/∂w is

    ∂L/∂g_j = Σ o_j(x) · ∂L/∂y          (an inner product over all elements of y)
    ∂L/∂w_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i),   p = softmax(w)

Modes:
- `full`: ∂L/∂g_j for every candidate j (every non-active one recomputed once in backward);
- `two`: only for the active path a and one other path b; p is the softmax of w restricted to the
  pair (w_a, w_b), and only w_a, w_b receive a gradient (ProxylessNAS's memory-light mode).
  ProxylessNAS draws the pair from p without replacement and a from the pair's softmax
  (`draw_two_paths`). After the optimiser step, `rescale_updated_logits` shifts the pair back so
  that the pair's total probability, and so every other candidate's, is what it was.

When a is `none` (a zero layer), ProxylessNAS gives the edge's logits no gradient at all (and so
no Adam step and no rescale); this op still returns the estimator's value, and the caller skips
the update (vaenas.search.gradient.arch_optimizer.PositionAdam).

Memory (ProxylessNAS `full_v2`, the detach-and-recompute pattern NNI adopted): only the active
candidate runs in forward, so only its activations are stored; the others' outputs, needed only
for the inner product with ∂L/∂y, are recomputed in backward under no_grad, one at a time, and
freed at once. Side effects of a candidate (batch-norm running statistics) happen again in that
recompute, as in ProxylessNAS; the searches recalibrate batch norm before any evaluation.

What VAE sampling changes (VAENAS-G). The estimator above is ProxylessNAS's: its gates are drawn
from p itself (g ~ Multinomial(p)), and the expression is the derivative of the *expected* gated
output Σ_j p_j·o_j with the loss linearised at the sampled path. In VAENAS-G the active path a of
every edge comes from the VAE's p_θ(α|z) (jointly over all edges), not from softmax(w), while the
formula for ∂L/∂w is unchanged. So the logits are updated by the same expression evaluated at a
path whose distribution is no longer p: the estimator is biased relative to ∇_w E_{α~p}[L] (paths
that p favours are no longer visited in proportion to p; ∂L/∂y, the downstream signal, comes from
the VAE's architecture). Under `full` the bias is only through ∂L/∂y (every g_j's gradient is
computed at the VAE's path); under `two` also through which pairs are compared, since the second
path b is drawn from p without a (draw_other_path) but a is not drawn from p. This decoupling is the point of the paper (§4.3: the path
distribution no longer follows the logits, which removes ProxylessNAS's winner-takes-all
feedback); the price is that w no longer follows an unbiased gradient of the expected loss.
This op does not care where a comes from: the bias lives entirely in the caller's choice of a.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from vaenas.ops import reference
from vaenas.ops._dispatch import choose_backend

IMPLEMENTED_BACKENDS = ("reference", "aten")
MODES = ("full", "two")

#: a candidate of a gated choice point: x [B, *] -> y [B, *'] (None: the `none` op, y = 0)
GatedCandidate = Callable[[Tensor], Tensor]


def gated_mixed_op(
    x: Tensor,
    candidates: Sequence[GatedCandidate | None],
    active: int,
    logits: Tensor,
    mode: str = "two",
    other: int | None = None,
    none_shape: Sequence[int] | None = None,
    *,
    backend: str | None = None,
) -> Tensor:
    """y = o_active(x), with ∂L/∂logits from the gate-gradient estimator (module docstring).

    x [B, *]; candidates: K callables (None = the `none` op, a zero output of shape `none_shape`,
    default x's shape); active: the active path a; logits w [K] (requires grad to get one);
    mode: "full" or "two"; other: in "two" mode the second path b != a (e.g. drawn by
    `draw_other_path`). Returns y [B, *'], the active candidate's output (zeros if it is None).
    Gradients: x and the active candidate's weights through the active path only (the other
    candidates' weights get none); logits per the estimator. Backends: reference (every
    candidate run with autograd, explicit gated sum), aten (active only, recompute in backward).
    """
    paths = check_paths(len(candidates), active, logits, mode, other)
    chosen = choose_backend("gated_mixed_op", x.device, backend, IMPLEMENTED_BACKENDS)
    shape = tuple(x.shape) if none_shape is None else tuple(none_shape)
    if chosen == "reference":
        return reference.gated_mixed_op(x, candidates, active, logits, paths, shape)
    return _GatedMixedOp.apply(x, logits, candidates, active, paths, shape)


def check_paths(num_candidates: int, active: int, logits: Tensor, mode: str, other: int | None) -> list[int]:
    """The candidate indices whose gate gradient is computed: all in "full", [active, other] in "two"."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if logits.shape != (num_candidates,):
        raise ValueError(f"logits must be [K] = [{num_candidates}], got {tuple(logits.shape)}")
    if not 0 <= active < num_candidates:
        raise ValueError(f"active path {active} is not a candidate index (K = {num_candidates})")
    if mode == "full":
        if other is not None:
            raise ValueError("`other` is the second path of mode 'two'; mode 'full' takes none")
        return list(range(num_candidates))
    if other is None or not 0 <= other < num_candidates or other == active:
        raise ValueError(f"mode 'two' needs another path != active {active} in 0..{num_candidates - 1}, got {other}")
    return [active, other]


def gate_estimator(gate_grads: Tensor, logits: Tensor, paths: Sequence[int]) -> Tensor:
    """∂L/∂w [K] from gate gradients [K] (only `paths` used): Σ_j ∂L/∂g_j·p_j(δ_ij − p_i), p the
    softmax of w over `paths` (all K: ProxylessNAS full; a pair: mode two); zero outside `paths`.
    Vectorised as p_i·(∂L/∂g_i − Σ_j ∂L/∂g_j·p_j)."""
    index = torch.tensor(paths, device=logits.device)
    p = torch.softmax(logits.detach().index_select(0, index), dim=0)
    g = gate_grads.index_select(0, index).to(p.dtype)
    grad = torch.zeros_like(logits, dtype=p.dtype)
    grad[index] = p * (g - (g * p).sum())
    return grad.to(logits.dtype)


class _GatedMixedOp(torch.autograd.Function):
    """Runs the active candidate inside forward (its own graph, on a detached x) and, in backward,
    (1) propagates ∂L/∂y through that graph (accumulating its weights' .grad, returning ∂L/∂x),
    (2) recomputes the other paths under no_grad for their gate gradients.

    Why the active candidate runs inside the Function rather than before it: a Function that
    returned the candidate's output unchanged would return a view of its input, which in-place
    ops downstream may not modify (autograd forbids it); this keeps the output a fresh tensor
    with no copy. Consequence: the active candidate's weights get their gradient from a nested
    backward, i.e. accumulated into .grad (as loss.backward() does), also when the caller used
    torch.autograd.grad; no double backward."""

    @staticmethod
    def forward(ctx, x, logits, candidates, active, paths, none_shape):  # type: ignore[override]
        ctx.candidates, ctx.active, ctx.paths, ctx.logits = candidates, active, paths, logits.detach()
        ctx.autocast = (torch.is_autocast_enabled(x.device.type), torch.get_autocast_dtype(x.device.type))
        inner_x = x.detach().requires_grad_(x.requires_grad)
        candidate = candidates[active]
        if candidate is None:
            ctx.inner = None
            output = x.new_zeros(none_shape)
        else:
            with torch.enable_grad():
                inner = candidate(inner_x)
            ctx.inner = inner if inner.requires_grad else None
            output = inner.detach()
        ctx.save_for_backward(inner_x, output)  # output: the active gate's inner product; version-checked
        return output

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        inner_x, output = ctx.saved_tensors
        gate_grads = torch.zeros(len(ctx.candidates), dtype=torch.float64, device=grad_output.device)
        if ctx.candidates[ctx.active] is not None:
            gate_grads[ctx.active] = _inner_product(output, grad_output)
        enabled, dtype = ctx.autocast
        with torch.no_grad(), torch.autocast(inner_x.device.type, dtype=dtype, enabled=enabled):
            for j in ctx.paths:
                if j != ctx.active and ctx.candidates[j] is not None:
                    # recomputed, used once, freed: never stored across the step
                    gate_grads[j] = _inner_product(ctx.candidates[j](inner_x), grad_output)
        grad_x = None
        if ctx.inner is not None:
            torch.autograd.backward(ctx.inner, grad_output)
            grad_x = inner_x.grad
        ctx.inner = None
        grad_logits = gate_estimator(gate_grads, ctx.logits, ctx.paths) if ctx.needs_input_grad[1] else None
        return grad_x, grad_logits, None, None, None, None


def _inner_product(a: Tensor, b: Tensor) -> Tensor:
    """Σ a·b over all elements, accumulated in float64 (one product in the inputs' dtype, no copies)."""
    return (a * b).sum(dtype=torch.float64)


def draw_two_paths(logits: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """ProxylessNAS's `binarize` in mode two, per row r: a pair of candidates drawn from
    p = softmax(logits[r]) without replacement, then the active one drawn from the softmax of the
    pair's two logits, the other one inactive. logits [E, K] (at least two candidates of positive
    probability per row) -> (active, other), LongTensor[E] each (CPU).

    The active path is sharper than p: for p = (.7, .2, .1) it is drawn with probabilities
    (.771, .174, .055) (mit-han-lab/proxylessnas search/modules/mix_op.py, MixedEdge.binarize)."""
    w = logits.detach().double().cpu()
    pairs = torch.multinomial(torch.softmax(w, dim=-1), 2, replacement=False, generator=generator)  # [E, 2]
    which = torch.multinomial(torch.softmax(w.gather(1, pairs), dim=-1), 1, generator=generator)  # [E, 1]: 0 or 1
    return pairs.gather(1, which).flatten(), pairs.gather(1, 1 - which).flatten()


def draw_other_path(logits: Tensor, active: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mode two's second paths when the active ones are given (VAENAS-G: drawn by the VAE): for
    each row r, b_r ~ softmax(logits[r]) restricted to the candidates other than active[r].
    logits [E, K], active LongTensor[E] -> LongTensor[E] (CPU). ProxylessNAS itself draws both
    paths from p (draw_two_paths)."""
    p = torch.softmax(logits.detach().double().cpu(), dim=-1)
    p = p.scatter(1, active.cpu()[:, None], 0.0)
    return torch.multinomial(p, 1, generator=generator).flatten()


@torch.no_grad()
def rescale_updated_logits(new: Tensor, old: Tensor, pairs: Tensor) -> Tensor:
    """Mode two's correction after the optimiser step (ProxylessNAS `rescale_updated_arch_param`):
    shift the two updated logits of each row by the same offset so that their summed exp, and
    so the pair's total probability and every other candidate's probability, is what it was:
        w'[pair] = new[pair] − log(Σ_pair exp(new) / Σ_pair exp(old)).
    new, old [E, K]; pairs LongTensor[E, 2]. Returns the rescaled logits [E, K] (new elsewhere)."""
    index = pairs.to(new.device)
    offset = torch.logsumexp(new.gather(1, index), dim=1) - torch.logsumexp(old.gather(1, index), dim=1)
    return new.scatter(1, index, new.gather(1, index) - offset[:, None])

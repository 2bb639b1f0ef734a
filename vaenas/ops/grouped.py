"""The grouped supernet forward (DESIGN §4, op family 2): routing and segmented batch norm.

A supernet's `forward(images, archs)` takes archs [G, T] and a batch of G equal consecutive groups
(segments); group g runs archs[g]. Inside, a tensor carries S <= G segments, and `segments`
(LongTensor[S], on the CPU) names the global group of each. These functions are the op boundary
that fused kernels replace later; their specification is vaenas.ops.reference.

- `route`: a choice point (an edge or a choice block): segment s runs the candidate it chose;
- `route_sum`: a node's sum of the routes of its incoming edges, without copies on the aten backend.

Batch norm with per-segment statistics is vaenas.ops.batch_norm.segmented_batch_norm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from vaenas.ops import reference
from vaenas.ops._dispatch import choose_backend

IMPLEMENTED_BACKENDS = ("reference", "aten")

#: a candidate op of a choice point: (x [s*b, *], segments [s]) -> y [s*b, *']
Candidate = Callable[[Tensor, Tensor], Tensor]


def route(
    x: Tensor, segments: Tensor, choice: Tensor, candidates: Sequence[Candidate | None], *, backend: str | None = None
) -> Tensor | None:
    """The output of a choice point: segment s of x runs candidates[choice[s]].

    x [S*b, *]; segments LongTensor[S] (global group of each segment, passed on to candidates);
    choice LongTensor[S] on the CPU, the candidate index of each segment. A None candidate
    contributes nothing (the `none` op): its segments are zeros in the output, and when every
    segment chose a None candidate the result is None (the caller skips the term). With one
    distinct choice the candidate runs on x itself (G = 1, the ordinary SPOS step).
    Backends: reference (each candidate once, on its segments gathered; reference.route) and aten
    (each candidate once per run of consecutive segments that chose it, on views of x: no copy in
    or out but the concatenation).
    """
    return route_sum([(x, choice, candidates)], segments, backend=backend)


#: one term of a node's sum: (input [S*b, *], choice LongTensor[S] on the CPU, its candidates)
Term = tuple[Tensor | None, Tensor, Sequence[Candidate | None]]


def route_sum(terms: Sequence[Term], segments: Tensor, *, backend: str | None = None) -> Tensor | None:
    """Σ_e route(x_e, segments, choice_e, candidates_e) over the choice points e feeding one node
    (a cell's node sums its incoming edges): [S*b, *], or None when every term is None.

    An x_e may be None when every segment chose a None candidate there. Specification:
    reference.route_sum. Backends:
    - reference: each route gathered and scattered (each candidate runs once per choice point);
    - aten: candidates run on views of their runs of consecutive segments and accumulate into
      the node's sum in place (measured on the CPU: the gathers, scatters and sums of the
      reference were half the time of a G = 16 evaluation, issue 19). More candidate calls
      (one per run) and no copies; the choice for a GPU, where launches cost more than copies,
      is the reference until a fused kernel exists.
    """
    chosen = choose_backend("route_sum", _device_of(terms), backend, IMPLEMENTED_BACKENDS)
    for x, choice, _ in terms:
        if choice.shape != (len(segments),):
            raise ValueError(f"choice must be [S] = [{len(segments)}], got {tuple(choice.shape)}")
    if chosen == "reference":
        return reference.route_sum(terms, segments)
    return _route_sum_runs(terms, segments)


def _device_of(terms: Sequence[Term]) -> torch.device:
    return next((x.device for x, _, _ in terms if x is not None), torch.device("cpu"))


def _runs(choice: Tensor) -> list[tuple[int, int, int]]:
    """(first, end, choice) of each run of equal consecutive values of choice LongTensor[S]."""
    values = choice.tolist()
    runs, first = [], 0
    for index in range(1, len(values) + 1):
        if index == len(values) or values[index] != values[first]:
            runs.append((first, index, values[first]))
            first = index
    return runs


def _route_sum_runs(terms: Sequence[Term], segments: Tensor) -> Tensor | None:
    """Each candidate on views of its runs; then the node's sum written block by block, a block
    being a run of segments where no term changes candidate: its rows are written once (the sum
    of the terms that cover it; without autograd straight into the node, torch.add(out=))."""
    num_segments = len(segments)
    pieces: list[list[tuple[int, int, Tensor]]] = []  # per term: (first, end, output of those segments)
    for x, choice, candidates in terms:
        runs = _runs(choice)
        rows = None if x is None else x.shape[0] // num_segments
        outputs = [(first, end, candidates[k](x if len(runs) == 1 else x[first * rows : end * rows],
                                              segments if len(runs) == 1 else segments[first:end]))
                   for first, end, k in runs if candidates[k] is not None]
        if outputs:
            pieces.append(outputs)
    if not pieces:
        return None
    if all(len(term) == 1 and term[0][:2] == (0, num_segments) for term in pieces):  # no term splits: G = 1
        total = pieces[0][0][2]
        for term in pieces[1:]:
            total = total + term[0][2]  # out of place: the first term may be an input (skip)
        return total
    first, end, template = pieces[0][0]
    rows = template.shape[0] // (end - first)
    total = torch.empty((num_segments * rows,) + template.shape[1:], dtype=template.dtype, device=template.device,
                        memory_format=_format_of(template))
    bounds = sorted({0, num_segments} | {b for term in pieces for f, e, _ in term for b in (f, e)})
    direct = not torch.is_grad_enabled()
    for low, high in zip(bounds[:-1], bounds[1:]):
        parts = [y[(low - f) * rows : (high - f) * rows] for term in pieces for f, e, y in term if f <= low and high <= e]
        block = total[low * rows : high * rows]
        if not parts:
            block.zero_()  # every term `none` here
        elif direct and len(parts) > 1:
            torch.add(parts[0], parts[1], out=block)
        else:
            block.copy_(parts[0])
        for part in parts[2 if direct and len(parts) > 1 else 1 :]:
            block.add_(part)
    return total


def _format_of(y: Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor laid out that way (kept through the sum), else contiguous."""
    if y.dim() == 4 and not y.is_contiguous() and y.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format

"""What every supernet shares: the G-group forward contract, segmented batch norm, recalibration.

The contract (DESIGN §4): `supernet(images, archs)` takes archs LongTensor[G, T] (on the CPU) and
images [G*b, C, H, W] made of G equal consecutive groups; group g runs archs[g]. Inside, a tensor
carries S <= G segments and `segments` (LongTensor[S], CPU) names the global group of each: at a
choice point every candidate runs once on the segments that chose it (vaenas.ops.route), and every
batch norm normalises each segment with its own statistics (SegmentedBatchNorm2d), so group g's
output is what a G = 1 forward of archs[g] on its rows gives.

Modules that need `segments` implement `TakesSegments` (forward(x, segments)); SegmentedSequential
passes it to them and calls every other module as module(x).

Batch-norm statistics for evaluation (SPOS): `recalibrate(supernet, num_groups)` is a context in
which every SegmentedBatchNorm2d normalises with batch statistics and accumulates, per group, the
exact mean and (biased) variance of everything it sees (each batch weighted by its rows x pixels,
so batches of any size count each value once); on exit those become the group statistics that
eval-mode forwards use for the segments they carry. An architecture's statistics therefore depend
only on the recalibration images and the weights, not on G or on its batch mates. As in SPOS, each
recalibration batch is normalised with its own statistics on the way through, so a deeper layer's
inputs, hence its statistics, also depend on how the images are cut into batches.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from vaenas import ops
from vaenas.spaces.base import SearchSpace


class TakesSegments:
    """Marker: the module's forward is forward(x, segments) (see the module docstring)."""


def call(module: nn.Module, x: Tensor, segments: Tensor) -> Tensor:
    """module(x, segments) for a TakesSegments module, module(x) for any other."""
    return module(x, segments) if isinstance(module, TakesSegments) else module(x)


#: the activation modules a SegmentedBatchNorm2d runs fused when one follows it, by op name
FUSED_ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.SiLU: "silu"}


class SegmentedSequential(TakesSegments, nn.Sequential):
    """nn.Sequential that hands `segments` to the modules that take it (same state_dict keys).

    A SegmentedBatchNorm2d followed by an nn.ReLU or nn.SiLU runs as one fused op (the activation
    module stays in the tree, so children built alike and state_dicts still match)."""

    def forward(self, x: Tensor, segments: Tensor) -> Tensor:  # type: ignore[override]
        modules = list(self)
        index = 0
        while index < len(modules):
            module = modules[index]
            follower = modules[index + 1] if index + 1 < len(modules) else None
            activation = FUSED_ACTIVATIONS.get(type(follower))
            if isinstance(module, SegmentedBatchNorm2d) and activation is not None:
                x = module(x, segments, activation=activation)
                index += 2
                continue
            x = call(module, x, segments)
            index += 1
        return x


class SlicedWeight:
    """Mixin of a module whose forwards use leading slices weight[:rows, :columns] of one shared
    `weight` (NAS-Bench-101's channel-sliced convolutions; the module sets `slices_used = set()`).

    A forward that can produce a gradient records its slice (`use_slice`); `take_used_slices` hands
    the trainer the union of what each weight used since the last call, so that its optimizer step
    updates only those entries (vaenas.search.oneshot.train): the rest of the gradient is zeros that
    SGD's momentum and weight decay would act on, and that a gradient != 0 mask cannot tell from the
    exact zeros of a dead ReLU inside the slice.
    """

    weight: nn.Parameter
    slices_used: set[tuple[int, int]]

    def use_slice(self, rows: int, columns: int) -> None:
        if torch.is_grad_enabled() and self.weight.requires_grad:
            self.slices_used.add((rows, columns))


#: an index of a weight's leading two dimensions: weight[block] is a view
Block = tuple[slice, slice]


def union_blocks(slices: Iterable[tuple[int, int]]) -> list[Block]:
    """Disjoint blocks whose union is that of the leading slices [:rows, :columns] given.

    The union is a staircase: the slices not inside another, ordered by columns ascending, have rows
    descending, and block k is rows [:rows_k] of columns [columns_(k-1) : columns_k]. E.g. (3, 8)
    and (8, 3) give [:8, 0:3] and [:3, 3:8]; nested slices give the largest alone.
    """
    staircase: list[tuple[int, int]] = []  # columns descending, rows ascending
    for rows, columns in sorted(set(slices), key=lambda slice_: (-slice_[1], -slice_[0])):
        if not staircase or rows > staircase[-1][0]:
            staircase.append((rows, columns))
    blocks, start = [], 0
    for rows, columns in reversed(staircase):
        blocks.append((slice(0, rows), slice(start, columns)))
        start = columns
    return blocks


def take_used_slices(modules: Iterable[SlicedWeight]) -> dict[nn.Parameter, list[Block]]:
    """{weight: union_blocks of the slices it used} for the modules that recorded any since the
    last call, and forget them."""
    used = {}
    for module in modules:
        if module.slices_used:
            used[module.weight] = union_blocks(module.slices_used)
            module.slices_used.clear()
    return used


class _GroupMoments:
    """Exact per-group sums of the values seen during a recalibration (float64): each batch's moments
    weighted by the values they summarise (rows x pixels of the segment), so that batches of any
    size (an EvalLoader's last one is smaller) give the moments of the union of their images."""

    def __init__(self, num_groups: int, channels: int, device: torch.device) -> None:
        self.mean_sum = torch.zeros(num_groups, channels, dtype=torch.float64, device=device)  # sum of x
        self.square_sum = torch.zeros_like(self.mean_sum)  # sum of x^2
        self.count = torch.zeros(num_groups, dtype=torch.float64, device=device)  # values per channel

    def add(self, segments: Tensor, mean: Tensor, var: Tensor, count: int) -> None:
        """Segment s (of group segments[s]) had `count` values per channel with mean[s], var[s] (biased)."""
        index = segments.to(self.mean_sum.device)
        mean, var = mean.double(), var.double()
        self.mean_sum.index_add_(0, index, mean * count)
        self.square_sum.index_add_(0, index, (var + mean * mean) * count)
        self.count.index_add_(0, index, self.count.new_full((len(index),), float(count)))

    def finish(self, fallback_mean: Tensor, fallback_var: Tensor) -> tuple[Tensor, Tensor]:
        """(mean [G, C], var [G, C]) in the dtype of the running statistics: the mean and biased
        variance of every value a group saw; groups that never reached this layer get the running
        statistics."""
        seen = self.count > 0
        count = self.count.clamp(min=1)[:, None]
        mean = self.mean_sum / count
        var = (self.square_sum / count - mean * mean).clamp(min=0)
        mean = torch.where(seen[:, None], mean, fallback_mean.double()[None])
        var = torch.where(seen[:, None], var, fallback_var.double()[None])
        return mean.to(fallback_mean.dtype), var.to(fallback_var.dtype)


class SegmentedBatchNorm2d(TakesSegments, nn.BatchNorm2d):
    """nn.BatchNorm2d for a batch of segments (same parameters, buffers and state_dict keys).

    - training: each segment normalised with its own batch statistics; the running statistics
      (kept only as nn.BatchNorm2d keeps them; evaluation recalibrates) move by the average of
      the segments' statistics;
    - inside `recalibrate`: batch statistics per segment, accumulated per group;
    - eval: the group statistics of the last recalibration for the segments' groups, or the
      running statistics when there are none.
    """

    def __init__(self, num_features: int, **options: Any) -> None:
        super().__init__(num_features, **options)
        self._moments: _GroupMoments | None = None
        self.group_mean: Tensor | None = None  # [G, C] after a recalibration
        self.group_var: Tensor | None = None

    def forward(self, x: Tensor, segments: Tensor, activation: str | None = None) -> Tensor:  # type: ignore[override]
        """activation: None, "relu" or "silu", applied to the normalised output in the same op."""
        num_segments = len(segments)
        if self._moments is not None:
            y, mean, var = ops.segmented_batch_norm(x, num_segments, self.weight, self.bias, self.eps,
                                                    activation=activation)
            self._moments.add(segments, mean, var, x.numel() // (num_segments * x.shape[1]))
            return y
        if self.training or not self.track_running_stats:
            y, mean, var = ops.segmented_batch_norm(x, num_segments, self.weight, self.bias, self.eps,
                                                    activation=activation)
            if self.training and self.track_running_stats:
                self._update_running_statistics(mean, var, x.numel() // (num_segments * x.shape[1]))
            return y
        if self.group_mean is not None:
            if int(segments.max()) >= len(self.group_mean):
                raise RuntimeError(
                    f"segment group {int(segments.max())} has no recalibrated statistics "
                    f"(the last recalibration had {len(self.group_mean)} groups)"
                )
            index = segments.to(self.group_mean.device)
            mean, var = self.group_mean.index_select(0, index), self.group_var.index_select(0, index)
        else:
            mean = self.running_mean[None].expand(num_segments, -1)
            var = self.running_var[None].expand(num_segments, -1)
        return ops.segmented_batch_norm(x, num_segments, self.weight, self.bias, self.eps, mean, var,
                                        activation=activation)[0]

    @torch.no_grad()
    def _update_running_statistics(self, mean: Tensor, var: Tensor, count: int) -> None:
        """nn.BatchNorm2d's momentum update (unbiased variance) from the segments' average."""
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var.mean(0) * (count / max(count - 1, 1))
        self.running_mean.lerp_(mean.mean(0).to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)

    def start_recalibration(self, num_groups: int) -> None:
        device = self.weight.device if self.affine else self.running_mean.device
        self._moments = _GroupMoments(num_groups, self.num_features, device)

    def finish_recalibration(self) -> None:
        assert self._moments is not None
        self.group_mean, self.group_var = self._moments.finish(self.running_mean, self.running_var)
        self._moments = None

    def clear_group_statistics(self) -> None:
        self.group_mean = self.group_var = None


def segmented_batch_norms(module: nn.Module) -> Iterator[SegmentedBatchNorm2d]:
    return (m for m in module.modules() if isinstance(m, SegmentedBatchNorm2d))


@contextlib.contextmanager
def recalibrate(supernet: nn.Module, num_groups: int) -> Iterator[None]:
    """Recalibrate the batch-norm statistics of `num_groups` groups (SPOS evaluation).

    Inside: forward the recalibration images (replicated per group) with archs [num_groups, T];
    the supernet is in eval mode (no dropout) and under no_grad. On exit every
    SegmentedBatchNorm2d holds the exact mean and variance, per group, of all it saw, used by
    eval-mode forwards until the next recalibration or clear_group_statistics().
    """
    was_training = supernet.training
    supernet.eval()
    norms = list(segmented_batch_norms(supernet))
    for norm in norms:
        norm.start_recalibration(num_groups)
    try:
        with torch.no_grad():
            yield
        for norm in norms:
            norm.finish_recalibration()
    finally:
        for norm in norms:
            norm._moments = None
        supernet.train(was_training)


def clear_group_statistics(supernet: nn.Module) -> None:
    for norm in segmented_batch_norms(supernet):
        norm.clear_group_statistics()


def check_groups(images: Tensor, archs: Tensor, space: SearchSpace) -> tuple[Tensor, Tensor]:
    """(archs LongTensor[G, T] on the CPU, checked by the space, segments arange(G)); ValueError
    when the batch does not split into G equal groups."""
    archs = space.check_tokens(archs.cpu() if isinstance(archs, Tensor) else archs)
    if images.shape[0] % archs.shape[0]:
        raise ValueError(f"a batch of {images.shape[0]} images does not split into {archs.shape[0]} equal groups")
    return archs, torch.arange(archs.shape[0])


class Supernet(nn.Module, abc.ABC):
    """A weight-sharing network of one search space: forward(images, archs) -> logits [G*b, classes].

    Subclasses build their modules from the space and implement `forward` and `export_child`.
    """

    space: SearchSpace
    num_classes: int

    @abc.abstractmethod
    def forward(self, images: Tensor, archs: Tensor) -> Tensor:  # type: ignore[override]
        """images [G*b, C, H, W], archs LongTensor[G, T] -> logits [G*b, num_classes]."""

    @abc.abstractmethod
    def export_child(self, arch: Tensor, group: int | None = None) -> nn.Module:
        """The space's child network of arch [T] (space.build_child), its weights inherited from
        the supernet; with `group`, its batch-norm running statistics are that group's
        recalibrated ones (so child.eval() and the supernet's eval forward give the same logits)."""

    def child_options(self) -> dict[str, Any]:
        """The build_child options that give a child of this supernet's shape."""
        return {}


def copy_batch_norm(child: nn.BatchNorm2d, norm: SegmentedBatchNorm2d, group: int | None) -> None:
    """Load a supernet batch norm into a child's: parameters (an affine-free one gives weight 1 and
    bias 0), and running statistics from the group's recalibrated ones when `group` is given (else
    the running statistics)."""
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    if group is not None:
        if norm.group_mean is None:
            raise RuntimeError("export with group= needs a recalibration first")
        state["running_mean"] = norm.group_mean[group].to(state["running_mean"].dtype).clone()
        state["running_var"] = norm.group_var[group].to(state["running_var"].dtype).clone()
    if child.affine and not norm.affine:  # an affine-free supernet norm is the child's with weight 1, bias 0
        state["weight"], state["bias"] = torch.ones_like(child.weight), torch.zeros_like(child.bias)
    child.load_state_dict(state)


def inherit_weights(child: nn.Module, source: nn.Module, group: int | None = None) -> None:
    """Copy the weights of a supernet part into the child part built like it (the same module tree
    with nn.BatchNorm2d where the supernet has SegmentedBatchNorm2d); see copy_batch_norm."""
    pairs = list(zip(child.named_modules(), source.named_modules()))
    if len(pairs) != len(list(child.modules())) or len(pairs) != len(list(source.modules())):
        raise RuntimeError(f"{type(child).__name__} and {type(source).__name__} are not built alike")
    for (name, target), (_, origin) in pairs:
        if isinstance(origin, SegmentedBatchNorm2d):
            copy_batch_norm(target, origin, group)
        elif not isinstance(target, nn.BatchNorm2d):
            own = {k: v.clone() for k, v in origin.state_dict().items() if "." not in k}
            target.load_state_dict(own, strict=False)
            missing = {k for k in target.state_dict() if "." not in k} - set(own)
            if missing:
                raise RuntimeError(f"child module {name!r} has {sorted(missing)} that the supernet lacks")

"""Checks of the supernet contract (vaenas.supernet.base) shared by the supernets' test files.

Every check runs in float64 so that tolerances of ~1e-10 separate a real difference from rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from vaenas.supernet import Supernet, recalibrate


def images(generator: torch.Generator, count: int, size: int) -> Tensor:
    return torch.randn(count, 3, size, size, generator=generator, dtype=torch.float64)


def gradients(module: nn.Module) -> dict[str, Tensor | None]:
    return {name: None if p.grad is None else p.grad.clone() for name, p in module.named_parameters()}


def check_groups_equal_separate_forwards(
    net: Supernet, archs: Tensor, x: Tensor, generator: torch.Generator, tolerance: float = 1e-10
) -> None:
    """Train mode: the G-group forward of archs [G, T] on x [G*b, ...] equals G separate G = 1
    forwards on each group's rows; so do the parameter and input gradients of a random upstream
    gradient (the separate runs' gradients add up)."""
    net.train()
    num_groups = len(archs)
    rows = x.shape[0] // num_groups
    x = x.clone().requires_grad_()
    upstream = torch.randn(x.shape[0], net.num_classes, generator=generator, dtype=torch.float64)
    net.zero_grad(set_to_none=True)
    logits = net(x, archs)
    (logits * upstream).sum().backward()
    grouped, grouped_input = gradients(net), x.grad.clone()

    net.zero_grad(set_to_none=True)
    x.grad = None
    for g in range(num_groups):
        part = slice(g * rows, (g + 1) * rows)
        alone = net(x[part], archs[g : g + 1])
        torch.testing.assert_close(logits[part], alone, rtol=0, atol=tolerance)
        (alone * upstream[part]).sum().backward()
    torch.testing.assert_close(grouped_input, x.grad, rtol=tolerance, atol=tolerance)
    for name, grad in gradients(net).items():
        assert (grad is None) == (grouped[name] is None), name
        if grad is not None:
            torch.testing.assert_close(grouped[name], grad, rtol=tolerance, atol=tolerance, msg=name)


def check_only_chosen_candidates_get_gradient(
    net: Supernet, archs: Tensor, x: Tensor, chosen: Callable[[str, Tensor], bool]
) -> None:
    """After a backward of archs [G, T], a parameter has a gradient exactly when chosen(name, archs)."""
    net.train()
    net.zero_grad(set_to_none=True)
    net(x, archs).sum().backward()
    for name, parameter in net.named_parameters():
        assert (parameter.grad is not None) == chosen(name, archs), name
    net.zero_grad(set_to_none=True)


def check_export_after_recalibration(
    net: Supernet, archs: Tensor, calibration: list[Tensor], x: Tensor, tolerance: float = 1e-10
) -> None:
    """After a train step (running statistics move) and recalibrate(net, G) on the calibration
    batches replicated G times, the child exported for group g gives, in eval mode, the logits of
    the supernet's eval forward of group g, and has the parameters of the space's child."""
    num_groups = len(archs)
    # a plain batch norm would mix the groups' statistics and miss the recalibration
    assert not [name for name, m in net.named_modules() if type(m) is nn.BatchNorm2d]
    net.train()
    net(x.repeat(num_groups, 1, 1, 1), archs).sum().backward()
    net.zero_grad(set_to_none=True)
    with recalibrate(net, num_groups):
        for batch in calibration:
            net(batch.repeat(num_groups, 1, 1, 1), archs)
    net.eval()
    with torch.no_grad():
        logits = net(x.repeat(num_groups, 1, 1, 1), archs).unflatten(0, (num_groups, x.shape[0]))
    for g, arch in enumerate(archs):
        child = net.export_child(arch, group=g).eval()
        assert next(child.parameters()).dtype == torch.float64
        with torch.no_grad():
            torch.testing.assert_close(child(x), logits[g], rtol=0, atol=tolerance)
        reference = net.space.build_child(arch, **net.child_options())
        assert sum(p.numel() for p in child.parameters()) == sum(p.numel() for p in reference.parameters())


def check_bad_inputs(net: Supernet, archs: Tensor, x: Tensor) -> None:
    """A batch that does not split into G groups, and architectures of the wrong length, are ValueErrors."""
    with pytest.raises(ValueError, match="equal groups"):
        net(x[:-1], archs)
    with pytest.raises(ValueError, match=f"{net.space.length} tokens"):
        net(x, archs[:, :-1])
    with pytest.raises(ValueError, match=f"{net.space.length} tokens"):
        net.export_child(archs[0, :-1])


def print_speed_against_the_child(net: Supernet, arch: Tensor, x: Tensor, repeats: int = 2) -> None:
    """Prints the time of a G = 1 train-mode forward + backward of the supernet and of the exported
    child on x (routing overhead and the reference segmented batch norm show as the difference); no
    assertion. CPU time of this process, less disturbed than wall time on a shared machine."""
    child = net.export_child(arch).train()

    def best_time(step: Callable[[], Tensor]) -> float:
        step().sum().backward()  # warm-up (allocations, kernel selection)
        times = []
        for _ in range(repeats):
            start = time.process_time()
            step().sum().backward()
            times.append(time.process_time() - start)
        return min(times)

    supernet_s = best_time(lambda: net.train()(x, arch[None]))
    child_s = best_time(lambda: child(x))
    print(
        f"\n{type(net).__name__}: forward+backward, batch {x.shape[0]}, {x.shape[-1]} px, {x.dtype}, CPU time: "
        f"supernet (G=1) {supernet_s * 1e3:.1f} ms, exported child {child_s * 1e3:.1f} ms, "
        f"ratio {supernet_s / child_s:.2f}"
    )

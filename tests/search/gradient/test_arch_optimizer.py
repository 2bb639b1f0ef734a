"""PositionAdam is ProxylessNAS's architecture optimiser: torch.optim.Adam over one parameter per
position (edge), where a position whose gradient is None is skipped."""

from __future__ import annotations

import copy

import pytest
import torch

from vaenas.search.gradient.arch_optimizer import PositionAdam


def test_position_adam_is_torch_adam_on_one_parameter_per_row_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(5, 4, generator=generator)
    ours = start.clone().requires_grad_(True)
    rows = [start[r].clone().requires_grad_(True) for r in range(5)]
    mine = PositionAdam([ours], lr=0.05, betas=(0.0, 0.999), eps=1e-8)
    theirs = torch.optim.Adam(rows, lr=0.05, betas=(0.0, 0.999), eps=1e-8, foreach=False)
    for _ in range(12):
        grad = torch.randn(5, 4, generator=generator)
        updated = torch.rand(5, generator=generator) < 0.6  # the rest: active op `none`, grad None
        ours.grad = grad.clone()
        for r, row in enumerate(rows):
            row.grad = grad[r].clone() if updated[r] else None
        mine.step(updated)
        theirs.step()
        assert torch.equal(ours.detach(), torch.stack([row.detach() for row in rows]))
    state = mine.state_dict()["state"][0]
    assert torch.equal(state["step"], torch.tensor([float(theirs.state[row]["step"]) if row in theirs.state else 0.0
                                                    for row in rows]))


def test_position_adam_resumes_from_its_state_dict():
    generator = torch.Generator().manual_seed(1)
    a = torch.zeros(3, 2, requires_grad=True)
    first = PositionAdam([a], lr=0.1)
    grads = [torch.randn(3, 2, generator=generator) for _ in range(4)]
    masks = [torch.tensor([True, False, True]), torch.tensor([True, True, False])] * 2
    for grad, mask in zip(grads[:2], masks[:2]):
        a.grad = grad.clone()
        first.step(mask)
    b = a.detach().clone().requires_grad_(True)
    second = PositionAdam([b], lr=0.1)
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # as a checkpoint file holds it
    for grad, mask in zip(grads[2:], masks[2:]):
        a.grad, b.grad = grad.clone(), grad.clone()
        first.step(mask)
        second.step(mask)
    assert torch.equal(a, b)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="betas"):
        PositionAdam([torch.zeros(2, 2, requires_grad=True)], betas=(1.0, 0.9))

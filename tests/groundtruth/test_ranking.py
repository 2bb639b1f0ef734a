"""Rank correlations of scores against ground truth."""

import math

import pytest
import torch

from vaenas.groundtruth import kendall_tau


def test_kendall_tau_b_by_hand():
    # 5 concordant pairs, 1 discordant: (5 - 1) / 6
    assert kendall_tau(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 3, 2, 4])) == pytest.approx(4 / 6)
    # one pair tied in each vector: S = 4 over sqrt((6 - 1) * (6 - 1))
    assert kendall_tau(torch.tensor([1.0, 1, 2, 3]), torch.tensor([1.0, 2, 2, 3])) == pytest.approx(0.8)
    assert kendall_tau(torch.tensor([3.0, 2, 1]), torch.tensor([1.0, 2, 3])) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau(torch.ones(4), torch.arange(4.0)))
    assert math.isnan(kendall_tau(torch.ones(1), torch.ones(1)))

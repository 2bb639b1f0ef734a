"""How well scores rank architectures against their ground truth: rank correlations."""

from __future__ import annotations

import torch
from torch import Tensor


def kendall_tau(scores: Tensor, truth: Tensor) -> float:
    """Kendall τ-b between two vectors [N] (ties counted as scipy.stats.kendalltau does; nan with
    fewer than 2 rows or a constant vector). O(N^2) memory: N is hundreds or a few thousand at most."""
    if len(scores) < 2:
        return float("nan")
    x, y = scores.double().flatten(), truth.double().flatten()
    sign_x = torch.sign(x[:, None] - x[None, :])  # [N, N]: +1, 0 (tie or diagonal), -1
    sign_y = torch.sign(y[:, None] - y[None, :])
    pairs = len(x) * (len(x) - 1) / 2
    tied_x = (float((sign_x == 0).sum()) - len(x)) / 2  # pairs tied in x, the diagonal removed
    tied_y = (float((sign_y == 0).sum()) - len(y)) / 2
    denominator = ((pairs - tied_x) * (pairs - tied_y)) ** 0.5
    if denominator == 0:
        return float("nan")
    return float((sign_x * sign_y).sum()) / 2 / denominator

"""How well scores rank architectures against their ground truth.

Every function takes `scores` (e.g. supernet accuracies) and `truth` (e.g. standalone accuracies)
as vectors [N] of the same architectures, in the same order, and returns a float:

- kendall_tau, spearman: rank correlations over all N;
- top_kendall_tau: τ among the architectures whose TRUE accuracy is in the top fraction (the
  "is the predictor right about the good ones" question; the paper's claim for VAE sampling);
- precision_at_k: the share of the k best by score that are among the k truly best;
- true_percentile: where one accuracy falls in a ground-truth distribution.

`ranking_summary` collects them for one set of scores, `rank_against` for a scoring function over a
table's architectures (what the one-shot report and scripts/ranking_check.sh show).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def _pair(scores: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    x, y = torch.as_tensor(scores).double().flatten(), torch.as_tensor(truth).double().flatten()
    if x.shape != y.shape:
        raise ValueError(f"scores and truth must have the same length, got {len(x)} and {len(y)}")
    return x, y


def kendall_tau(scores: Tensor, truth: Tensor) -> float:
    """Kendall τ-b between two vectors [N] (ties counted as scipy.stats.kendalltau does; nan with
    fewer than 2 rows or a constant vector). O(N^2) memory: N is hundreds or a few thousand at most."""
    x, y = _pair(scores, truth)
    if len(x) < 2:
        return float("nan")
    sign_x = torch.sign(x[:, None] - x[None, :])  # [N, N]: +1, 0 (tie or diagonal), -1
    sign_y = torch.sign(y[:, None] - y[None, :])
    pairs = len(x) * (len(x) - 1) / 2
    tied_x = (float((sign_x == 0).sum()) - len(x)) / 2  # pairs tied in x, the diagonal removed
    tied_y = (float((sign_y == 0).sum()) - len(y)) / 2
    denominator = ((pairs - tied_x) * (pairs - tied_y)) ** 0.5
    if denominator == 0:
        return float("nan")
    return float((sign_x * sign_y).sum()) / 2 / denominator


def average_ranks(values: Tensor) -> Tensor:
    """float64 [N]: the 1-based rank of each value, ties sharing the mean of their ranks
    (scipy.stats.rankdata's default)."""
    values = torch.as_tensor(values).double().flatten()
    order = values.argsort(stable=True)
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64)
    _, inverse = torch.unique(values, return_inverse=True)
    group_sum = torch.zeros(int(inverse.max()) + 1 if len(values) else 0, dtype=torch.float64)
    group_size = torch.zeros_like(group_sum)
    group_sum.index_add_(0, inverse, ranks)
    group_size.index_add_(0, inverse, torch.ones_like(ranks))
    return (group_sum / group_size)[inverse]


def spearman(scores: Tensor, truth: Tensor) -> float:
    """Spearman's ρ between two vectors [N]: Pearson correlation of their average ranks (as
    scipy.stats.spearmanr); nan with fewer than 2 rows or a constant vector."""
    x, y = _pair(scores, truth)
    if len(x) < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float((rx.square().sum() * ry.square().sum()).sqrt())
    return float((rx * ry).sum()) / denominator if denominator > 0 else float("nan")


def _top_rows(values: Tensor, count: int) -> Tensor:
    """Indices of the `count` largest values; ties broken by position (the earlier row first)."""
    return (-values).argsort(stable=True)[:count]


def top_kendall_tau(scores: Tensor, truth: Tensor, fraction: float = 0.5) -> float:
    """Kendall τ-b among the architectures whose true value is in the top `fraction`: the
    ceil(fraction * N) rows of largest truth, plus any row tied with the last of them."""
    x, y = _pair(scores, truth)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if len(y) == 0:
        return float("nan")
    count = math.ceil(fraction * len(y))
    threshold = y[_top_rows(y, count)[-1]]
    keep = y >= threshold
    return kendall_tau(x[keep], y[keep])


def precision_at_k(scores: Tensor, truth: Tensor, k: int = 10) -> float:
    """|top k by score ∩ top k by truth| / k (ties broken by position); k at most N."""
    x, y = _pair(scores, truth)
    if not 1 <= k <= len(x):
        raise ValueError(f"k must lie in 1..{len(x)} (the number of architectures), got {k}")
    chosen = set(_top_rows(x, k).tolist())
    best = set(_top_rows(y, k).tolist())
    return len(chosen & best) / k


def true_percentile(accuracy: float, truth: Tensor) -> float:
    """Percentage of the ground-truth values [N] that are at most `accuracy` (100: as good as the
    best; scipy.stats.percentileofscore(kind='weak'))."""
    truth = torch.as_tensor(truth).double().flatten()
    if len(truth) == 0:
        raise ValueError("the ground truth is empty")
    if math.isnan(accuracy):
        return float("nan")
    return 100.0 * float((truth <= accuracy).sum()) / len(truth)


def ranking_summary(scores: Tensor, truth: Tensor, k: int = 10) -> dict[str, float]:
    """{kendall_tau, spearman, top_half_kendall_tau, precision_at_k} of scores against truth [N]
    (precision at min(k, N))."""
    return {
        "kendall_tau": kendall_tau(scores, truth),
        "spearman": spearman(scores, truth),
        "top_half_kendall_tau": top_kendall_tau(scores, truth, 0.5),
        "precision_at_k": precision_at_k(scores, truth, min(k, len(torch.as_tensor(truth).flatten()))),
    }


def mean_and_standard_error(values: list[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) of values, nan entries left out; the error is nan with
    fewer than 2 values (sample standard deviation / sqrt(n))."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    if not kept:
        return float("nan"), float("nan")
    mean = sum(kept) / len(kept)
    if len(kept) < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)
    return mean, math.sqrt(variance / len(kept))


def rank_against(score: Callable[[Tensor], Tensor], archs: Tensor, truth: Tensor, k: int = 10) -> dict[str, float]:
    """ranking_summary of score(archs [N, T]) -> [N] (e.g. OneShotSearch.score: supernet accuracy)
    against truth [N]: how a predictor ranks the architectures of a ground-truth table
    (`rank_against(search.score, table.universe, table.accuracies)`)."""
    return ranking_summary(score(archs), truth, k)

"""Rank correlations and ranking metrics of scores against ground truth, checked by hand."""

import math

import pytest
import torch

from vaenas.groundtruth import kendall_tau
from vaenas.groundtruth.ranking import (
    average_ranks,
    mean_and_standard_error,
    precision_at_k,
    ranking_summary,
    spearman,
    top_kendall_tau,
    true_percentile,
)


def test_kendall_tau_b_by_hand():
    # 5 concordant pairs, 1 discordant: (5 - 1) / 6
    assert kendall_tau(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 3, 2, 4])) == pytest.approx(4 / 6)
    # one pair tied in each vector: S = 4 over sqrt((6 - 1) * (6 - 1))
    assert kendall_tau(torch.tensor([1.0, 1, 2, 3]), torch.tensor([1.0, 2, 2, 3])) == pytest.approx(0.8)
    assert kendall_tau(torch.tensor([3.0, 2, 1]), torch.tensor([1.0, 2, 3])) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau(torch.ones(4), torch.arange(4.0)))
    assert math.isnan(kendall_tau(torch.ones(1), torch.ones(1)))


def test_lengths_must_match():
    with pytest.raises(ValueError, match="same length"):
        spearman(torch.arange(3.0), torch.arange(4.0))


def test_average_ranks_share_ties():
    assert average_ranks(torch.tensor([10.0, 30, 20, 10])).tolist() == [1.5, 4.0, 3.0, 1.5]


def test_spearman_by_hand():
    # no ties: 1 - 6 * sum(d^2) / (n (n^2 - 1)) with d = (0, 1, 1, 0): 1 - 12 / 60
    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 3, 2, 4])) == pytest.approx(0.8)
    # ties: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4): centred products sum 4.5, squares 4.5 and 5
    assert spearman(torch.tensor([1.0, 1, 2, 3]), torch.tensor([1.0, 2, 3, 4])) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman(torch.tensor([3.0, 2, 1]), torch.tensor([1.0, 2, 3])) == pytest.approx(-1.0)
    assert math.isnan(spearman(torch.ones(3), torch.arange(3.0)))


def test_top_kendall_tau_looks_only_at_the_truly_good():
    truth = torch.tensor([10.0, 9, 8, 7, 1, 2])
    scores = torch.tensor([1.0, 2, 3, 4, 100, 100])
    # the top half by truth (10, 9, 8) is scored in exactly the reverse order
    assert top_kendall_tau(scores, truth) == pytest.approx(-1.0)
    # over all six: 14 discordant pairs, one pair tied in scores: -14 / sqrt(14 * 15)
    assert kendall_tau(scores, truth) == pytest.approx(-14 / math.sqrt(14 * 15))
    # the whole set with fraction 1
    assert top_kendall_tau(scores, truth, 1.0) == pytest.approx(kendall_tau(scores, truth))
    with pytest.raises(ValueError, match="fraction"):
        top_kendall_tau(scores, truth, 0.0)


def test_top_kendall_tau_keeps_ties_at_the_boundary():
    # top half of 4 = 2 rows; truth (5, 5, 5, 1): all three 5s kept, scores (1, 2, 3) -> τ undefined (truth constant)
    assert math.isnan(top_kendall_tau(torch.tensor([1.0, 2, 3, 0]), torch.tensor([5.0, 5, 5, 1])))
    # truth (6, 5, 5, 1): 6 and both 5s kept; scores (3, 1, 2): pairs (6,5a) +, (6,5b) +, (5a,5b) tied in truth
    # τ-b = 2 / sqrt(3 * 2)
    got = top_kendall_tau(torch.tensor([3.0, 1, 2, 0]), torch.tensor([6.0, 5, 5, 1]))
    assert got == pytest.approx(2 / math.sqrt(6))


def test_precision_at_k_by_hand():
    scores = torch.tensor([0.9, 0.8, 0.1, 0.7])
    truth = torch.tensor([1.0, 0, 3, 2])
    assert precision_at_k(scores, truth, 2) == 0.0  # {0, 1} against {2, 3}
    assert precision_at_k(scores, truth, 3) == pytest.approx(2 / 3)  # {0, 1, 3} against {2, 3, 0}
    assert precision_at_k(scores, truth, 4) == 1.0
    with pytest.raises(ValueError, match="k must lie"):
        precision_at_k(scores, truth, 5)


def test_true_percentile_by_hand():
    truth = torch.tensor([1.0, 2, 3, 4])
    assert true_percentile(3.0, truth) == 75.0
    assert true_percentile(4.5, truth) == 100.0
    assert true_percentile(2.5, truth) == 50.0
    assert true_percentile(0.5, truth) == 0.0
    assert math.isnan(true_percentile(float("nan"), truth))
    with pytest.raises(ValueError, match="empty"):
        true_percentile(1.0, torch.empty(0))


def test_ranking_summary_names_every_metric():
    scores = torch.tensor([1.0, 2, 3, 4])
    summary = ranking_summary(scores, scores, k=10)  # k larger than N: precision at N
    assert summary == {"kendall_tau": 1.0, "spearman": pytest.approx(1.0), "top_half_kendall_tau": 1.0,
                       "precision_at_k": 1.0}


def test_mean_and_standard_error_by_hand():
    # mean 2, sample variance ((1)^2 + 0 + 1^2) / 2 = 1, error 1 / sqrt(3)
    mean, error = mean_and_standard_error([1.0, 2.0, 3.0, float("nan")])
    assert mean == 2.0 and error == pytest.approx(1 / math.sqrt(3))
    mean, error = mean_and_standard_error([5.0])
    assert mean == 5.0 and math.isnan(error)
    assert all(math.isnan(v) for v in mean_and_standard_error([]))

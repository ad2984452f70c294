"""Ranking-quality measures: both weighted-tau conventions, correlations, top-k regret."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from hf_spider.errors import InvalidInputError
from hf_spider.evaluation import pearson, spearman, top_k_regret, weighted_tau

GT = np.array([2.0, 4.0, 3.0, 0.0, 1.0])
PRED = np.array([4.0, 1.0, 2.0, 0.0, 3.0])


def test_weighted_tau_conventions_are_scipy_calls():
    assert weighted_tau(GT, PRED) == stats.weightedtau(GT, PRED, rank=True).statistic
    assert weighted_tau(GT, PRED, "spider") == stats.weightedtau(GT, PRED, rank=None).statistic
    # the conventions differ on this example, and only "sfda" is symmetric
    assert weighted_tau(GT, PRED) == pytest.approx(-0.14051094890510937, rel=1e-12)
    assert weighted_tau(GT, PRED, "spider") == pytest.approx(-0.24087591240875905, rel=1e-12)
    assert weighted_tau(PRED, GT, "sfda") == pytest.approx(weighted_tau(GT, PRED, "sfda"), rel=1e-12)
    assert weighted_tau(PRED, GT, "spider") == pytest.approx(-0.04014598540145971, rel=1e-12)


def test_spider_weights_follow_the_ground_truth_order():
    position_in_gt_order = np.argsort(np.argsort(-GT))  # best model has rank 0
    explicit = stats.weightedtau(GT, PRED, rank=position_in_gt_order).statistic
    assert weighted_tau(GT, PRED, "spider") == pytest.approx(explicit, rel=1e-12)


def test_weighted_tau_extremes():
    assert weighted_tau(GT, 10 * GT + 1) == pytest.approx(1.0)
    assert weighted_tau(GT, -GT, "spider") == pytest.approx(-1.0)


def test_correlations_are_scipy():
    assert pearson(GT, PRED) == pytest.approx(stats.pearsonr(GT, PRED).statistic, rel=1e-12)
    assert spearman(GT, PRED) == pytest.approx(stats.spearmanr(GT, PRED).statistic, rel=1e-12)
    assert spearman(GT, GT**3) == pytest.approx(1.0)
    assert pearson(torch.tensor(GT), torch.tensor(2 * GT)) == pytest.approx(1.0)


def test_top_k_regret():
    gt = [0.90, 0.80, 0.95, 0.70]
    pred = [0.5, 0.9, 0.1, 0.3]  # predicted order: 1, 0, 3, 2
    assert top_k_regret(gt, pred, 1) == pytest.approx(0.15)  # picked model 1 (0.80), best is 0.95
    assert top_k_regret(gt, pred, 2) == pytest.approx(0.05)  # best of models 1, 0 is 0.90
    assert top_k_regret(gt, pred, 3) == pytest.approx(0.05)
    assert top_k_regret(gt, pred, 4) == 0.0
    assert top_k_regret(gt, [0.2, 0.2, 0.1, 0.0], 1) == pytest.approx(0.05)  # tie in pred: lower index


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: weighted_tau([1, 2], [1, 2, 3]), "must match"),
        (lambda: weighted_tau([[1, 2]], [[1, 2]]), "must be 1-D"),
        (lambda: pearson([1, np.nan], [1, 2]), "NaN"),
        (lambda: spearman([1], [1]), "at least 2 models"),
        (lambda: weighted_tau([1, 2], [2, 1], convention="both"), "convention"),
        (lambda: top_k_regret([1, 2], [2, 1], 3), "k must be"),
        (lambda: top_k_regret([1, 2], [2, 1], 0), "k must be"),
    ],
)
def test_invalid_inputs(call, message):
    with pytest.raises(InvalidInputError, match=message):
        call()

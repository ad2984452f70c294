"""How well a predicted ranking of models matches the ground truth (fine-tuned accuracies) of one task.

``ground_truth`` and ``predicted`` are 1-D arrays over the same M models (higher = better for both).
Correlations come from scipy; nothing is re-implemented.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_spider._arrays import as_float_array
from hf_spider.errors import InvalidInputError

__all__ = ["pearson", "spearman", "top_k_regret", "weighted_tau"]


def _check_pair(ground_truth: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, value in (("ground_truth", ground_truth), ("predicted", predicted)):
        arrays.append(as_float_array(value, name, ndim=1))
    gt, pred = arrays
    if gt.shape != pred.shape:
        raise InvalidInputError(f"ground_truth has {gt.size} models but predicted has {pred.size}; they must match")
    if gt.size < 2:
        raise InvalidInputError(f"need at least 2 models to compare rankings, got {gt.size}")
    return gt, pred


def weighted_tau(ground_truth: Any, predicted: Any, convention: str = "sfda") -> float:
    """Weighted Kendall τ (hyperbolic weights 1/(r+1)) between ground truth and prediction.

    Both conventions call ``scipy.stats.weightedtau(ground_truth, predicted, rank=...)``:

    - ``"sfda"``: ``rank=True`` (the SFDA / LogME papers and scipy's default). The weights come from
      the decreasing lexicographic rank by (gt, pred) and by (pred, gt), and the two τ are averaged:
      symmetric in its arguments.
    - ``"spider"``: ``rank=None`` (the Model Spider code). The weights come from the decreasing
      lexicographic rank by (gt, pred) only, i.e. from the ground-truth order: with r the 0-based
      position of a model in that order, a discordant pair (r, s) weighs 1/(r+1) + 1/(s+1), so
      errors among the truly best models cost most. Not symmetric: the ground truth must come first.

    Returns:
        τ_w in [−1, 1].
    """
    gt, pred = _check_pair(ground_truth, predicted)
    if convention == "sfda":
        rank = True
    elif convention == "spider":
        rank = None
    else:
        raise InvalidInputError(f"convention must be 'sfda' or 'spider', got {convention!r}")
    from scipy import stats  # here, not at import: scipy.stats costs a second at every CLI start

    return float(stats.weightedtau(gt, pred, rank=rank).statistic)


def pearson(ground_truth: Any, predicted: Any) -> float:
    """Pearson correlation (``scipy.stats.pearsonr``)."""
    gt, pred = _check_pair(ground_truth, predicted)
    from scipy import stats

    return float(stats.pearsonr(gt, pred).statistic)


def spearman(ground_truth: Any, predicted: Any) -> float:
    """Spearman rank correlation (``scipy.stats.spearmanr``)."""
    gt, pred = _check_pair(ground_truth, predicted)
    from scipy import stats

    return float(stats.spearmanr(gt, pred).statistic)


def top_k_regret(ground_truth: Any, predicted: Any, k: int = 1) -> float:
    """Best ground-truth value minus the best ground-truth value among the k models ranked highest by
    ``predicted`` (0 = the best model was among the k picked). Ties in ``predicted`` are broken by model
    index (a stable sort), so the result is deterministic.
    """
    gt, pred = _check_pair(ground_truth, predicted)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= gt.size:
        raise InvalidInputError(f"k must be an integer in [1, {gt.size}], got {k!r}")
    picked = np.argsort(-pred, kind="stable")[:k]
    return float(gt.max() - gt[picked].max())

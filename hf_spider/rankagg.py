"""Rank aggregation of several scores' rankings of the same models (SPEC §2; Model Spider §4.3, App. A.4).

Input everywhere: ``scores`` [K methods, M models], one row per method (e.g. NCE, LEEP, LogME, H-score
of every model on one task). Ties inside a row get average ranks (``scipy.stats.rankdata``), so every
result is deterministic.

    agg, order = copeland(scores)      # agg[m]: Copeland score of model m; order: models, best first
    agg, order = borda(scores)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_spider._arrays import as_float_array
from hf_spider.errors import InvalidInputError

__all__ = ["borda", "copeland", "method_ranks"]


def _check_scores(scores: Any, higher_is_better: bool | Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores [K, M] and the per-method direction [K] (True = higher is better)."""
    arr = as_float_array(scores, "scores", finite=False)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InvalidInputError(f"scores must be 2-D [K methods, M models] with K, M >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        rows = sorted({int(r) for r in np.nonzero(~np.isfinite(arr))[0]})
        raise InvalidInputError(f"scores contain NaN or infinite values (method rows {rows}); drop or fix them")
    direction = np.asarray(higher_is_better, dtype=bool)
    if direction.ndim == 0:
        direction = np.full(arr.shape[0], bool(direction))
    elif direction.shape != (arr.shape[0],):
        raise InvalidInputError(
            f"higher_is_better must be a bool or one bool per method ({arr.shape[0]}), got {higher_is_better!r}"
        )
    return arr, direction


def method_ranks(scores: Any, higher_is_better: bool | Sequence[bool] = True) -> np.ndarray:
    """Rank of each model under each method [K, M]: 1 = best, ties get their average rank."""
    arr, direction = _check_scores(scores, higher_is_better)
    from scipy.stats import rankdata  # here, not at import: scipy.stats costs a second at every CLI start

    return rankdata(np.where(direction[:, None], -arr, arr), method="average", axis=1)


def _order(primary: np.ndarray, mean_rank: np.ndarray) -> np.ndarray:
    """Models sorted by primary score (descending), then mean rank (ascending), then index."""
    return np.lexsort((np.arange(len(primary)), mean_rank, -primary))


def copeland(scores: Any, higher_is_better: bool | Sequence[bool] = True) -> tuple[np.ndarray, np.ndarray]:
    """Copeland aggregation: model i beats j if more than half of the K rankings put i above j, ties
    at exactly half; score_i = #wins + ½ #ties.

    A tie inside one method's row counts as half a ranking for each side. The order sorts models by
    Copeland score, ties broken by mean rank over methods, then by model index.

    Args:
        scores: [K methods, M models] array (numpy, torch or nested lists), no NaN.
        higher_is_better: direction of the scores, one bool or one per method.
    Returns:
        (copeland scores [M], order [M] of model indices, best first).
    """
    ranks = method_ranks(scores, higher_is_better)
    k, m = ranks.shape
    r_i, r_j = ranks[:, :, None], ranks[:, None, :]
    above = (r_i < r_j).sum(0) + 0.5 * (r_i == r_j).sum(0)  # [M, M]: rankings placing i above j (ties ½)
    others = ~np.eye(m, dtype=bool)
    # Copeland (Model Spider App. A.4): majority wins, ties at exactly half
    agg = ((above > k / 2) & others).sum(1) + 0.5 * ((above == k / 2) & others).sum(1)
    return agg, _order(agg, ranks.mean(0))


def borda(scores: Any, higher_is_better: bool | Sequence[bool] = True) -> tuple[np.ndarray, np.ndarray]:
    """Borda aggregation (mean rank).

    Returns the Borda score M − mean rank (higher = better, i.e. the average number of models ranked
    below, ties counting ½), so both aggregators share a direction; the mean rank is M − score.

    Args:
        scores: [K methods, M models] array, no NaN.
        higher_is_better: direction of the scores, one bool or one per method.
    Returns:
        (Borda scores [M], order [M] of model indices, best first; ties by index).
    """
    ranks = method_ranks(scores, higher_is_better)
    mean_rank = ranks.mean(0)
    return ranks.shape[1] - mean_rank, _order(-mean_rank, mean_rank)

"""Ground-truth transfer performance of a model on a task: what every ranking is judged against.

Linear probe, as in both papers' protocol: a logistic regression (ridge regression for real
targets) on frozen features, its regularisation tuned on a validation split held out from the
training split, then refit on the whole training split and scored on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .errors import InvalidInputError

__all__ = ["ProbeResult", "linear_probe"]

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0)
DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class ProbeResult:
    """Test score of the refit probe (accuracy, or R² for regression) and the chosen regularisation."""

    score: float
    metric: str
    regularisation: float
    validation_scores: dict[float, float]


def _probe(regression: bool, strength: float, seed: int):
    if regression:
        return make_pipeline(StandardScaler(), Ridge(alpha=strength))
    return make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=2000, random_state=seed))


def _score(model, x: np.ndarray, y: np.ndarray, regression: bool) -> float:
    return float(r2_score(y, model.predict(x)) if regression else (model.predict(x) == y).mean())


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    regression: bool = False,
    grid: tuple[float, ...] | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> ProbeResult:
    """Linear-probe transfer score of frozen features.

    Args:
        train_features, test_features: ``[n, d]`` features of the task's train / test images.
        train_labels, test_labels: class ids ``[n]``, or real targets ``[n]`` / ``[n, k]`` with
            ``regression=True``.
        grid: inverse regularisation ``C`` values (classification) or ridge ``alpha`` values.
        validation_fraction: share of the training split held out to choose from ``grid``
            (stratified for classification).
    """
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise InvalidInputError("linear_probe: features and labels must have the same number of rows")
    grid = grid or (DEFAULT_ALPHAS if regression else DEFAULT_CS)
    x_fit, x_val, y_fit, y_val = train_test_split(
        train_features, train_labels, test_size=validation_fraction, random_state=seed,
        stratify=None if regression else train_labels,
    )
    validation = {g: _score(_probe(regression, g, seed).fit(x_fit, y_fit), x_val, y_val, regression) for g in grid}
    best = max(grid, key=validation.__getitem__)  # ties: the first value of the grid
    final = _probe(regression, best, seed).fit(train_features, train_labels)
    return ProbeResult(
        score=_score(final, test_features, test_labels, regression),
        metric="r2" if regression else "accuracy",
        regularisation=best,
        validation_scores=validation,
    )

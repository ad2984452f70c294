"""Linear-probe ground truth against a direct scikit-learn computation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from hf_spider.errors import InvalidInputError
from hf_spider.groundtruth import linear_probe


def _gaussian_task(rng, n, separation, d=8, classes=3):
    y = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, d)) * separation
    return centers[y] + rng.normal(size=(n, d)), y


def test_linear_probe_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    x, y = _gaussian_task(rng, 300, 1.0)
    xt, yt = _gaussian_task(np.random.default_rng(0), 300, 1.0)  # same centres: a real test split
    xt, yt = xt[:100] + rng.normal(size=(100, 8)) * 0.1, yt[:100]
    result = linear_probe(x, y, xt, yt, grid=(0.01, 1.0), seed=0)

    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    val = {}
    for c in (0.01, 1.0):
        scaler = StandardScaler().fit(x_fit)
        clf = LogisticRegression(C=c, max_iter=2000, random_state=0).fit(scaler.transform(x_fit), y_fit)
        val[c] = (clf.predict(scaler.transform(x_val)) == y_val).mean()
    best = max((0.01, 1.0), key=val.__getitem__)
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=best, max_iter=2000, random_state=0).fit(scaler.transform(x), y)
    expected = (clf.predict(scaler.transform(xt)) == yt).mean()

    assert result.regularisation == best
    assert result.validation_scores == pytest.approx(val)
    assert result.score == pytest.approx(expected)
    assert result.metric == "accuracy"


def test_better_separated_features_probe_better():
    low = linear_probe(*_gaussian_task(np.random.default_rng(1), 300, 0.2),
                       *_gaussian_task(np.random.default_rng(1), 300, 0.2))
    high = linear_probe(*_gaussian_task(np.random.default_rng(1), 300, 3.0),
                        *_gaussian_task(np.random.default_rng(1), 300, 3.0))
    assert high.score > low.score + 0.2


def test_regression_probe_is_ridge_r2():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5))
    y = x @ rng.normal(size=5) + 0.1 * rng.normal(size=200)
    result = linear_probe(x[:150], y[:150], x[150:], y[150:], regression=True, grid=(1.0,))
    scaler = StandardScaler().fit(x[:150])
    ridge = Ridge(alpha=1.0).fit(scaler.transform(x[:150]), y[:150])
    assert result.metric == "r2"
    assert result.score == pytest.approx(r2_score(y[150:], ridge.predict(scaler.transform(x[150:]))))
    assert result.score > 0.95


def test_mismatched_rows_are_refused():
    with pytest.raises(InvalidInputError, match="same number of rows"):
        linear_probe(np.zeros((10, 2)), np.zeros(9), np.zeros((4, 2)), np.zeros(4))

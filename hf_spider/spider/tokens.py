"""Tokens of Model Spider (SPEC §4.1): what a task and a model look like to the ranker.

A task is a set of class prototypes: the mean feature of each class. *General* task tokens use one
frozen encoder for every model (zero forward passes of candidates); a *PTM-specific* task token
uses the candidate's own features (one forward pass of that candidate). Regression targets have no
classes, so they are cut into quantile bins that play the classes' part.
"""

from __future__ import annotations

import numpy as np
import torch

from .._arrays import as_float_array
from ..errors import InvalidInputError

__all__ = ["class_means", "regression_bins"]

REGRESSION_BINS = 10


def regression_bins(targets: np.ndarray, bins: int = REGRESSION_BINS) -> np.ndarray:
    """Quantile bin ids ``0..B-1`` of real targets (``[n]``, or ``[n, k]`` by the first column)."""
    t = as_float_array(targets, "targets").reshape(len(targets), -1)[:, 0]
    edges = np.quantile(t, np.linspace(0, 1, bins + 1)[1:-1])
    _, ids = np.unique(np.searchsorted(edges, t, side="right"), return_inverse=True)
    return ids.astype(np.int64)


def class_means(features: np.ndarray | torch.Tensor, labels: np.ndarray, *, regression: bool = False) -> torch.Tensor:
    """Class prototypes ``[C, d]``: the mean of ``features`` over each class (μ_c of SPEC §4.1).

    Classes are the sorted distinct labels (quantile bins for ``regression``), so the token order
    does not depend on how the labels are numbered.
    """
    f = as_float_array(features, "features", ndim=2).astype(np.float32)
    if len(f) != len(labels) or len(f) == 0:
        raise InvalidInputError(f"features must be [n, d] with one row per label, got {f.shape} "
                                f"for {len(labels)} labels")
    ids = regression_bins(labels) if regression else np.unique(np.asarray(labels), return_inverse=True)[1]
    ids = ids.reshape(-1)
    order = np.argsort(ids, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(ids[order]) != 0])  # first row of each class, sorted
    sums = np.add.reduceat(f[order], starts, axis=0)
    return torch.from_numpy((sums / np.diff(np.r_[starts, len(ids)])[:, None]).astype(np.float32))

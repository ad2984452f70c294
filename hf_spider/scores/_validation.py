"""Input validation at the public boundary of every score (scikit-learn ``check_X_y`` spirit).

Each public score calls these once; the numerical code behind them trusts its inputs.
Arrays may be numpy arrays, torch tensors (CPU or CUDA, any float dtype) or nested lists;
they come back as float64 / int64 torch tensors on the device of the first tensor given
(CPU for numpy input), so the same numerical code runs on CPU and GPU.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from hf_spider._arrays import as_tensor
from hf_spider.errors import InvalidInputError

__all__ = ["ClassLabels", "check_features", "check_int", "check_labels", "check_probs"]

_PROB_ATOL = 1e-3  # rows of probabilities must sum to 1 within this (float16/float32 softmax outputs)


class ClassLabels(NamedTuple):
    """Classification labels remapped to ``0..C-1``.

    Attributes:
        codes: int64 tensor [n], class index of each sample.
        counts: int64 tensor [C], samples per class.
        classes: numpy array [C], the original label of each class index (sorted).
    """

    codes: torch.Tensor
    counts: torch.Tensor
    classes: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])


def _check_finite(t: torch.Tensor, name: str) -> None:
    if not t.is_floating_point() or bool(torch.isfinite(t.sum())):
        return  # NaN / inf propagate into the sum: one cheap pass over clean data (overflow: exact check)
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        n_nan = torch.isnan(t).sum().item()
        raise InvalidInputError(
            f"{name} contain {bad} non-finite value(s) ({n_nan} NaN, {bad - n_nan} infinite); "
            "remove or impute them before scoring"
        )


def check_features(features: Any, *, name: str = "features", device: torch.device | None = None) -> torch.Tensor:
    """Features [n_samples, n_features] as a finite float64 tensor (n_samples >= 2)."""
    if features is None:
        raise InvalidInputError(f"{name} are required")
    t = as_tensor(features, name, device=device)
    if t.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D [n_samples, n_features], got shape {tuple(t.shape)}")
    if t.shape[0] < 2 or t.shape[1] < 1:
        raise InvalidInputError(f"{name} need at least 2 samples and 1 feature, got shape {tuple(t.shape)}")
    _check_finite(t, name)
    return _float64(t)


def _float64(t: torch.Tensor) -> torch.Tensor:
    """t as float64 (numpy's conversion on CPU: several times faster than torch's single-threaded one)."""
    if t.dtype == torch.float64:
        return t
    if t.device.type == "cpu" and t.dtype != torch.bfloat16:
        return torch.from_numpy(t.numpy().astype(np.float64))
    return t.to(torch.float64)


def check_probs(probs: Any, *, name: str = "source_probs", device: torch.device | None = None) -> torch.Tensor:
    """Probabilities [n_samples, n_source_classes]: finite, >= 0, rows summing to 1 (renormalised exactly)."""
    t = check_features(probs, name=name, device=device)
    if (t < 0).any():
        row = int(torch.nonzero((t < 0).any(dim=1))[0, 0])
        raise InvalidInputError(f"{name} must be probabilities >= 0; row {row} has a negative entry")
    sums = t.sum(dim=1)
    off = (sums - 1.0).abs() > _PROB_ATOL
    if off.any():
        row = int(torch.nonzero(off)[0, 0])
        raise InvalidInputError(
            f"{name} rows must sum to 1 (row {row} sums to {sums[row].item():.6g}); "
            "pass softmax probabilities, not logits"
        )
    return t / sums[:, None]


def check_labels(
    labels: Any,
    n_rows: int,
    *,
    score: str,
    device: torch.device,
    regression: bool = False,
    supports_regression: bool = False,
    min_per_class: int = 1,
) -> ClassLabels | torch.Tensor:
    """Labels for ``n_rows`` samples.

    Classification (``regression=False``): integer class ids (any ints; floats only if integral),
    1-D, at least 2 classes and ``min_per_class`` samples in each; returns :class:`ClassLabels`.
    Regression (``regression=True``, only where ``supports_regression``): finite real targets
    [n] or [n, k]; returns a float64 tensor [n, k].
    """
    if labels is None:
        raise InvalidInputError("labels are required")
    if regression and not supports_regression:
        raise InvalidInputError(
            f"regression targets given (regression=True) but {score!r} supports classification only; "
            "use logme for regression targets"
        )
    t = as_tensor(labels, "labels", device=device)
    if t.ndim == 0 or t.shape[0] != n_rows:
        got = len(t) if t.ndim else "a scalar"
        raise InvalidInputError(f"labels have {got} entries but the inputs have {n_rows} rows; they must match")
    if regression:
        if t.ndim not in (1, 2) or t.numel() == 0:
            raise InvalidInputError(f"regression targets must be [n] or [n, k], got shape {tuple(t.shape)}")
        _check_finite(t, "regression targets")
        return _float64(t).reshape(n_rows, -1)
    if t.ndim != 1:
        raise InvalidInputError(
            f"labels must be 1-D integer class ids, got shape {tuple(t.shape)}"
            + ("; for real-valued targets pass regression=True" if supports_regression else "")
        )
    if t.is_floating_point():
        _check_finite(t, "labels")
        if (t != torch.round(t)).any():
            raise InvalidInputError(
                "labels must be integer class ids but contain non-integer values; "
                "real-valued targets need regression=True (supported by logme)"
            )
        t = t.to(torch.int64)
    classes, codes, counts = torch.unique(t.to(torch.int64), return_inverse=True, return_counts=True)
    classes_np = classes.cpu().numpy()
    if len(classes_np) < 2:
        raise InvalidInputError(
            f"labels contain only one class ({classes_np[0]}); transferability scores need at least 2 classes"
        )
    small = torch.nonzero(counts < min_per_class)
    if len(small):
        i = int(small[0, 0])
        raise InvalidInputError(
            f"class {classes_np[i]} has {int(counts[i])} sample(s); {score} needs at least "
            f"{min_per_class} samples per class"
        )
    return ClassLabels(codes, counts, classes_np)


def check_int(value: Any, name: str, *, low: int, high: int | None = None) -> int:
    """An integer option within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInputError(f"{name} must be {bound}, got {value}")
    return int(value)

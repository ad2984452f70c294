"""Array coercion shared by the public entry points (validate once at the boundary, then trust)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidInputError


def as_float_array(x: Any, name: str, *, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    """``x`` (numpy array, torch tensor on any device, nested list) as a float64 numpy array.

    Raises:
        InvalidInputError: not numeric, not ``ndim``-dimensional, or (``finite=True``) NaN/inf values.
    """
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a numeric array: {exc}") from exc
    if ndim is not None and arr.ndim != ndim:
        raise InvalidInputError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if finite and not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return arr

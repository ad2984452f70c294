"""Array coercion shared by the public entry points (validate once at the boundary, then trust)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:
    import torch


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


def as_tensor(x: Any, name: str, *, device: torch.device | None = None) -> torch.Tensor:
    """``x`` (numpy array, torch tensor, list) as a detached torch tensor, dtype unchanged.

    Raises:
        InvalidInputError: a ragged list, or values that are not real numbers.
    """
    import torch  # the numpy-only callers of this module do not pay for it

    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and other non-arrays
            raise InvalidInputError(f"{name} must be an array or tensor, got {type(x).__name__}") from exc
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise InvalidInputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise InvalidInputError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t if device is None else t.to(device)

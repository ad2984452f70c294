"""What a weights file says about itself, read from its header alone (no tensor is loaded)."""

from __future__ import annotations

import math
import os

__all__ = ["count_parameters"]


def count_parameters(path: os.PathLike[str]) -> dict[str, int] | None:
    """Parameters per dtype (``"F32"``...) from a safetensors file's header; None if it is not one."""
    from safetensors import SafetensorError, safe_open

    counts: dict[str, int] = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                tensor = f.get_slice(name)
                counts[tensor.get_dtype()] = counts.get(tensor.get_dtype(), 0) + math.prod(tensor.get_shape())
    except (SafetensorError, OSError):
        return None
    return counts

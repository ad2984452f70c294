"""Embeddings kept on disk under the digest of what they were computed from: one safetensors file each, written
atomically, ignored (and recomputed by the caller) when missing or unreadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._files import atomic_path
from ..constants import cache_root


def cache_file(kind: str, digest: str) -> Path:
    """``<cache root>/<kind>/<digest>.safetensors``."""
    return cache_root() / kind / f"{digest}.safetensors"


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """The file's tensors and metadata in one read; ``None`` when it is missing or unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return {name: f.get_tensor(name) for name in f.keys()}, f.metadata() or {}  # noqa: SIM118 (not iterable)
    except (OSError, ValueError, SafetensorError):
        return None


def write(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` and ``metadata`` to ``path`` atomically."""
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=metadata)

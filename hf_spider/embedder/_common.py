"""The parts of the embedder a selection needs when its task embedding is cached: no torch is imported."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from . import _cache

__all__ = ["V_INIT_LOGIT", "TaskEmbedding", "embed_task_cached"]

V_INIT_LOGIT = 6.0  # v' starts at 6τ (v = σ(6) ≈ 0.998), the upper end of its bound [-6τ, 6τ] (model_embedding)


@dataclass(frozen=True, eq=False)
class TaskEmbedding:
    """Result of :func:`embed_task`.

    Attributes:
        vector: [N] float32 in [0, 1], the task embedding v.
        gamma: the sparsity level γ used for ``vector``.
        accuracy: its held-out accuracy in [0, 1] (R² for regression; training metric if ``holdout=0``).
        sweep: (γ, accuracy, ‖v‖₁) of every γ trained, γ ascending (γ = 0 first for ``gamma="auto"``).
        regression: whether the targets were real-valued.
    """

    vector: np.ndarray
    gamma: float
    accuracy: float
    sweep: list[tuple[float, float, float]]
    regression: bool


_CACHE_FORMAT = "1"


def embed_task_cached(baseline_features: Any, labels: Any, *, regression: bool = False,
                      gamma: float | Literal["auto"] = "auto", seed: int = 0, progress: bool = True) -> TaskEmbedding:
    """:func:`embed_task` with the default optimisation, cached on disk by the digest of the features, the
    labels and these settings: selecting again for the same task and baseline recomputes nothing."""
    features = np.ascontiguousarray(np.asarray(baseline_features, dtype=np.float32))
    targets = np.ascontiguousarray(np.asarray(labels))
    digest = hashlib.sha256(json.dumps([_CACHE_FORMAT, regression, gamma, seed, features.shape,
                                        str(targets.dtype), targets.shape]).encode())
    digest.update(features.tobytes())
    digest.update(targets.tobytes())
    path = _cache.cache_file("task_embeddings", digest.hexdigest())
    if (cached := _cache.read(path)) is not None:
        try:
            meta = json.loads(cached[1]["task_embedding"])
            return TaskEmbedding(cached[0]["vector"], meta["gamma"], meta["accuracy"],
                                 [tuple(row) for row in meta["sweep"]], meta["regression"])
        except (KeyError, ValueError):  # another layout: compute it again
            pass
    from .task_embedding import embed_task  # torch: only when the cache has no answer

    result = embed_task(features, targets, regression=regression, gamma=gamma, seed=seed, progress=progress)
    meta = {"gamma": result.gamma, "accuracy": result.accuracy, "sweep": [list(row) for row in result.sweep],
            "regression": result.regression}
    _cache.write(path, {"vector": result.vector.astype(np.float32)}, {"task_embedding": json.dumps(meta)})
    return result

"""Embeddings of a whole zoo of local or Hub models, as their owners would publish them.

Benchmarks and ranker training need every zoo model's embedding over one baseline; this computes
them from cached features (two forward passes over the reference set per model, once) without
publishing anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..features import extract_features
from ..tasks import load_task
from . import _cache
from .model_embedding import embed_model

__all__ = ["EmbedderSetup", "embed_zoo"]


@dataclass(frozen=True)
class EmbedderSetup:
    """The baseline model, the reference set and the optimisation budget of the model embeddings."""

    baseline: str
    reference: str
    reference_split: str | None = None
    max_per_class: int | None = 200
    steps: int = 1000


def embed_zoo(models: Sequence[str], setup: EmbedderSetup, *, seed: int = 0,
              progress: bool = True) -> dict[str, np.ndarray]:
    """Each model's embedding vector over ``setup.baseline`` on the reference set, keyed by model id.

    An embedding is a pure function of the two cached feature arrays, the steps and the seed, so it
    is cached under a digest of them: re-running a benchmark or a ranker training recomputes nothing.
    """
    reference = load_task(setup.reference, split=setup.reference_split, max_per_class=setup.max_per_class,
                          seed=seed)
    baseline = extract_features(setup.baseline, reference, progress=progress).features
    return {m: _cached_embedding(extract_features(m, reference, progress=progress).features, baseline,
                                 steps=setup.steps, seed=seed)
            for m in models}


def _cached_embedding(features: np.ndarray, baseline: np.ndarray, *, steps: int, seed: int) -> np.ndarray:
    digest = hashlib.sha256(f"{steps}:{seed}:{features.shape}:{baseline.shape}".encode())
    digest.update(np.ascontiguousarray(features).tobytes())
    digest.update(np.ascontiguousarray(baseline).tobytes())
    path = _cache.cache_file("model_embeddings", digest.hexdigest())
    if (cached := _cache.read(path)) is not None and "embedding" in cached[0]:
        return cached[0]["embedding"]
    vector = np.ascontiguousarray(embed_model(features, baseline, steps=steps, seed=seed, progress=False).vector,
                                  dtype=np.float32)
    _cache.write(path, {"embedding": vector})
    return vector

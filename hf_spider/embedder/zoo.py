"""Embeddings of a whole zoo of local or Hub models, as their owners would publish them.

Benchmarks and ranker training need every zoo model's embedding over one baseline; this computes
them from cached features (two forward passes over the reference set per model, once) without
publishing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..features import extract_features
from ..tasks import load_task
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
    """Each model's embedding vector over ``setup.baseline`` on the reference set, keyed by model id."""
    reference = load_task(setup.reference, split=setup.reference_split, max_per_class=setup.max_per_class,
                          seed=seed)
    baseline = extract_features(setup.baseline, reference, progress=progress).features
    return {m: embed_model(extract_features(m, reference, progress=progress).features, baseline,
                           steps=setup.steps, seed=seed, progress=False).vector
            for m in models}

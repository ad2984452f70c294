"""Leave-one-out k-nearest-neighbour accuracy on L2-normalised features."""

from __future__ import annotations

from typing import Any

import torch

from hf_spider.scores._registry import register_score
from hf_spider.scores._validation import check_features, check_int, check_labels

__all__ = ["knn"]

_BLOCK = 1 << 24  # elements of one [rows, n] similarity block
_SPARE = 8  # extra float32 candidates re-ranked in float64


@register_score("knn")
def knn(features: Any, labels: Any, *, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy (k = 5) with cosine similarity (L2-normalised features).

    Each sample is classified by a majority vote of its k most similar other samples; a tie between
    classes with equally many votes goes to the class holding the nearest neighbour (vote weights
    1 + 2^-(r+1) for the neighbour of rank r = 0..k-1 keep the counts dominant and make the tie-break
    lexicographic by neighbour rank). Zero feature vectors have similarity 0 to everything.
    Speed: the k + 8 most similar candidates come from a float32 similarity matrix (computed in
    blocks of rows), and are re-ranked by their exact float64 similarity.

    Args:
        features: [n, d] features.
        labels: [n] integer class ids.
        k: neighbours, 1 <= k <= n - 1.
    Returns:
        The accuracy in [0, 1] (higher = better transfer).
    """
    f = check_features(features)
    lab = check_labels(labels, f.shape[0], score="knn", device=f.device)
    n, d = f.shape
    k = check_int(k, "k", low=1, high=n - 1)
    spare = min(k + _SPARE, n - 1)
    unit = f / torch.linalg.vector_norm(f, dim=1, keepdim=True).clamp_min(1e-300)
    unit32 = unit.to(torch.float32)
    weights = 1 + 2.0 ** -torch.arange(1, k + 1, dtype=f.dtype, device=f.device)
    correct = 0
    rows = max(1, min(_BLOCK // n, _BLOCK // (spare * d)))
    for start in range(0, n, rows):  # similarity blocks [rows, n]: memory O(rows · n), not O(n²)
        sim = unit32[start : start + rows] @ unit32.mT
        own = torch.arange(start, start + sim.shape[0], device=f.device)
        sim[own - start, own] = -torch.inf  # leave one out
        candidates = torch.topk(sim, spare, dim=1).indices  # [rows, k + 8]
        exact = (unit[candidates] @ unit[own, :, None])[..., 0]  # float64 cosine similarities
        neighbours = candidates.gather(1, torch.topk(exact, k, dim=1).indices)  # by decreasing similarity
        votes = torch.zeros(sim.shape[0], lab.num_classes, dtype=f.dtype, device=f.device)
        votes.scatter_add_(1, lab.codes[neighbours], weights.expand(sim.shape[0], k))
        correct += int((votes.argmax(1) == lab.codes[own]).sum())
    return correct / n

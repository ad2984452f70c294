"""TransRate: coding-rate mutual information between features and labels (Huang et al., ICML 2022)."""

from __future__ import annotations

from typing import Any

import torch

from hf_spider.errors import InvalidInputError
from hf_spider.scores._ops import gram
from hf_spider.scores._registry import register_score
from hf_spider.scores._validation import check_features, check_labels

__all__ = ["transrate"]

_BLOCK = 1 << 25  # elements of one padded [classes, rows, d] block


def _logdet_pd(m: torch.Tensor) -> torch.Tensor:
    """log det of (a batch of) symmetric positive-definite matrices, Cholesky with an eigvalsh fallback."""
    chol, info = torch.linalg.cholesky_ex(m)
    out = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    bad = info != 0
    if bad.any():
        out = torch.where(bad, torch.log(torch.linalg.eigvalsh(m).clamp_min(1e-300)).sum(-1), out)
    return out


def _rate(z: torch.Tensor, scale: float) -> torch.Tensor:
    """½ log det(I + scale zᵀz) for z [m, d], through the smaller of zᵀz and z zᵀ."""
    g = gram(z) if z.shape[0] >= z.shape[1] else gram(z.mT)
    return 0.5 * _logdet_pd(torch.eye(g.shape[0], dtype=g.dtype, device=g.device) + scale * g)


def _class_rates(z: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor, eps: float) -> torch.Tensor:
    """R(z_c) for every class c [C], batched: classes zero-padded to a common size (adds log 1 = 0)."""
    n, d = z.shape
    num_classes = counts.shape[0]
    by_size = torch.argsort(counts)  # classes of similar size share a block: little padding
    rank = torch.empty_like(by_size)
    rank[by_size] = torch.arange(num_classes, device=z.device)
    order = torch.argsort(rank[codes], stable=True)  # samples grouped by class, classes by size
    sample_rank = rank[codes][order]
    start = torch.cumsum(counts[by_size], 0) - counts[by_size]
    position = torch.arange(n, device=z.device) - start[sample_rank]
    sizes = counts[by_size].tolist()
    rates = torch.empty(num_classes, dtype=z.dtype, device=z.device)
    first = 0
    while first < num_classes:
        last = first + 1
        while last < num_classes and (last + 1 - first) * sizes[last] * d <= _BLOCK:
            last += 1
        rows = sizes[last - 1]
        members = (sample_rank >= first) & (sample_rank < last)
        padded = torch.zeros(last - first, rows, d, dtype=z.dtype, device=z.device)
        padded[sample_rank[members] - first, position[members]] = z[order[members]]
        g = padded @ padded.mT if rows <= d else padded.mT @ padded
        scale = d / (counts[by_size[first:last]].to(z.dtype) * eps**2)
        eye = torch.eye(g.shape[-1], dtype=z.dtype, device=z.device)
        rates[by_size[first:last]] = 0.5 * _logdet_pd(eye + scale[:, None, None] * g)
        first = last
    return rates


@register_score("transrate")
def transrate(features: Any, labels: Any, *, eps: float = 1e-4) -> float:
    """TransRate (Huang et al., ICML 2022): R(F) − Σ_c (n_c / n) R(F_c).

    Coding rate R(Z) = ½ log det(I + d / (m ε²) ZᵀZ) for Z with m rows and d columns, on features
    centred by their global mean (classes are subsets of the centred features, not re-centred).
    Decision (SPEC §1): this is the paper's definition with ε = 1e-4; the SFDA code uses
    1 / (n ε) as the factor and an unweighted class average instead.

    Args:
        features: [n, d] features.
        labels: [n] integer class ids.
        eps: distortion ε.
    Returns:
        The score (higher = better transfer).
    """
    if not eps > 0:
        raise InvalidInputError(f"eps must be > 0, got {eps}")
    f = check_features(features)
    lab = check_labels(labels, f.shape[0], score="transrate", device=f.device)
    n, d = f.shape
    z = f - f.mean(0)
    # TransRate (Huang et al. 2022) = R(Z, ε) − R(Z, ε | Y)
    rate_y = (lab.counts.to(z.dtype) / n * _class_rates(z, lab.codes, lab.counts, eps)).sum()
    return float(_rate(z, d / (n * eps**2)) - rate_y)

"""GBC: Gaussian Bhattacharyya Coefficient (Pándy et al., CVPR 2022)."""

from __future__ import annotations

from typing import Any

import torch

from hf_spider.errors import InvalidInputError
from hf_spider.scores._ops import class_sums, pca
from hf_spider.scores._registry import register_score
from hf_spider.scores._validation import check_features, check_int, check_labels

__all__ = ["gbc"]

_CHUNK = 1 << 24  # elements of the [rows, C, k] pairwise block


@register_score("gbc")
def gbc(
    features: Any, labels: Any, *, n_components: int = 64, gaussian_type: str = "diagonal", min_variance: float = 1e-4
) -> float:
    """GBC (Pándy et al., CVPR 2022): −Σ_{i≠j} BC(N_i, N_j) over class-conditional Gaussians.

    Features are reduced by scikit-learn PCA to ``n_components`` (64) dimensions; each class is a
    Gaussian with its mean and (population) variance per dimension, floored at ``min_variance``
    (1e-4, as in the authors' code). ``gaussian_type="spherical"`` averages the variance over
    dimensions. BC = exp(−D_B) with the Bhattacharyya distance
    D_B = ⅛ Σ (μ_i − μ_j)² / σ̄ + ½ Σ [log σ̄ − ½ (log σ_i + log σ_j)],
    σ̄ = (σ_i + σ_j) / 2.

    Args:
        features: [n, d] features.
        labels: [n] integer class ids (>= 2 samples per class).
    Returns:
        The score (<= 0, higher = better transfer).
    """
    if gaussian_type not in ("diagonal", "spherical"):
        raise InvalidInputError(f"gaussian_type must be 'diagonal' or 'spherical', got {gaussian_type!r}")
    f = check_features(features)
    lab = check_labels(labels, f.shape[0], score="gbc", device=f.device, min_per_class=2)
    z = pca(f, check_int(n_components, "n_components", low=1))
    counts = lab.counts.to(z.dtype)[:, None]
    mean = class_sums(z, lab.codes, lab.num_classes) / counts  # [C, k]
    var = class_sums((z - mean[lab.codes]).square(), lab.codes, lab.num_classes) / counts
    var = var.clamp_min(min_variance)
    if gaussian_type == "spherical":
        var = var.mean(1, keepdim=True).expand_as(var)
    half_logdet = 0.5 * torch.log(var).sum(1)  # ½ Σ log σ_c  [C]
    c, k = mean.shape
    rows = max(1, _CHUNK // (c * k))
    total = torch.zeros((), dtype=z.dtype, device=z.device)
    for start in range(0, c, rows):  # pairwise distances in blocks of rows, all classes per block
        i = slice(start, start + rows)
        avg = (var[i, None] + var[None]) / 2  # σ̄  [r, C, k]
        # Bhattacharyya distance D_B(N_i, N_j) of diagonal Gaussians (Pándy et al. 2022)
        dist = ((mean[i, None] - mean[None]).square() / avg).sum(-1) / 8 + 0.5 * (
            torch.log(avg).sum(-1) - half_logdet[i, None] - half_logdet[None]
        )
        bc = torch.exp(-dist)
        own = torch.arange(start, min(start + rows, c), device=z.device)
        bc[own - start, own] = 0.0  # i ≠ j
        total = total + bc.sum()
    return float(-total)  # GBC = −Σ_{i≠j} exp(−D_B)

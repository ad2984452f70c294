"""LFC: Label-Feature Correlation (Deshpande et al., "A linearized framework and a new benchmark
for model selection for fine-tuning", 2021)."""

from __future__ import annotations

from typing import Any

import torch

from hf_spider.scores._ops import class_sums, gram
from hf_spider.scores._registry import register_score
from hf_spider.scores._validation import check_features, check_labels

__all__ = ["lfc"]


@register_score("lfc")
def lfc(features: Any, labels: Any) -> float:
    """LFC: Pearson correlation between the entries of the feature kernel K = F Fᵀ and of the label
    kernel Y (Y_ij = +1 if y_i = y_j else −1), over all n² pairs (diagonal included).

    Computed from O(d²) sums without forming either n×n matrix:
    Σ K = ‖Σ_i f_i‖², Σ K² = ‖FᵀF‖²_F, Σ K∘Y = 2 Σ_c ‖Σ_{i∈c} f_i‖² − Σ K,
    Σ Y = 2 Σ_c n_c² − n².
    Features are used as given (no centring or normalisation).

    Args:
        features: [n, d] features.
        labels: [n] integer class ids.
    Returns:
        The correlation in [−1, 1] (higher = better transfer).
    """
    f = check_features(features)
    lab = check_labels(labels, f.shape[0], score="lfc", device=f.device)
    n, d = f.shape
    pairs = float(n) ** 2
    sum_k = f.sum(0).square().sum()
    sum_kk = (gram(f) if n >= d else gram(f.mT)).square().sum()
    sum_ky = 2 * class_sums(f, lab.codes, lab.num_classes).square().sum() - sum_k
    sum_y = 2 * lab.counts.to(f.dtype).square().sum() - pairs
    # LFC = ρ(K, Y) = ⟨K − K̄, Y − Ȳ⟩ / (‖K − K̄‖ ‖Y − Ȳ‖); Y_ij = ±1, so Σ Y² = n²
    cov = sum_ky / pairs - (sum_k / pairs) * (sum_y / pairs)
    var_k = sum_kk / pairs - (sum_k / pairs) ** 2
    var_y = 1 - (sum_y / pairs) ** 2
    return float(cov / torch.sqrt(var_k * var_y))

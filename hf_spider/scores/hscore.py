"""H-score (Bao et al., ICIP 2019) and its Ledoit–Wolf-shrunk variant (Ibrahim et al., 2021)."""

from __future__ import annotations

from typing import Any

import torch

from hf_spider.scores._ops import class_sums, eigh_project, gram
from hf_spider.scores._registry import register_score
from hf_spider.scores._validation import check_features, check_labels

__all__ = ["h_score", "h_score_shrink"]


def _centred_and_between(features: Any, labels: Any, *, score: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred features [n, d] and B [d, C] with B Bᵀ = Cov(E[F | y]) (np.cov normalisation, n - 1)."""
    f = check_features(features)
    n = f.shape[0]
    lab = check_labels(labels, n, score=score, device=f.device)
    fc = f - f.mean(0)
    counts = lab.counts.to(f.dtype)
    class_means = class_sums(fc, lab.codes, lab.num_classes) / counts[:, None]  # μ_c − μ  [C, d]
    return fc, (class_means * torch.sqrt(counts / (n - 1))[:, None]).mT


@register_score("h_score")
def h_score(features: Any, labels: Any, *, rcond: float = 1e-15) -> float:
    """H-score (Bao et al., ICIP 2019): tr(pinv(Cov(F)) · Cov(E[F | y])).

    Both covariances with the n − 1 normalisation; the pseudo-inverse drops eigenvalues with
    |λ| <= ``rcond`` · max|λ| (numpy's ``pinv`` rule). With n <= d the covariance is singular and the
    score unstable: prefer ``h_score_shrink`` there.

    Args:
        features: [n, d] features.
        labels: [n] integer class ids.
    Returns:
        The score (>= 0, higher = better transfer).
    """
    fc, between = _centred_and_between(features, labels, score="h_score")
    lam, proj = eigh_project(gram(fc) / (fc.shape[0] - 1), between)  # Cov(F) = V diag(λ) Vᵀ, proj = Vᵀ B
    keep = lam.abs() > rcond * lam.abs().max()
    # H-score (Bao et al. 2019): tr(Cov(F)⁺ Cov(E[F|y])) = tr(Cov(F)⁺ B Bᵀ)
    #                                                  = Σ_i ‖(Vᵀ B)_i‖² / λ_i
    return float((proj[keep].square().sum(1) / lam[keep]).sum())


@register_score("h_score_shrink")
def h_score_shrink(features: Any, labels: Any) -> float:
    """Shrinkage H-score (Ibrahim et al., "Newer is not always better", 2021).

    Cov(F) estimated by scikit-learn's ``LedoitWolf`` (shrinkage α, 1/n normalisation), between-class
    covariance as in :func:`h_score`: tr(Cov_α(F)⁻¹ · (1 − α) Cov(E[F | y])), following the authors'
    code. Arguments and result as :func:`h_score`'s.
    """
    from sklearn.covariance import LedoitWolf

    fc, between = _centred_and_between(features, labels, score="h_score_shrink")
    # one block for d <= 4096: sklearn's default 1000-column blocks are several times slower at d = 2048
    lw = LedoitWolf(store_precision=False, block_size=min(max(fc.shape[1], 1000), 4096)).fit(fc.cpu().numpy())
    chol = torch.linalg.cholesky(torch.from_numpy(lw.covariance_).to(fc.device))  # positive definite
    solved = torch.cholesky_solve(between, chol)  # Cov_α⁻¹ B
    return float((1.0 - lw.shrinkage_) * (between * solved).sum())

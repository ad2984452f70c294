"""SFDA: Self-challenging Fisher Discriminant Analysis (Shao et al., ECCV 2022)."""

from __future__ import annotations

import math
from typing import Any

import torch

from hf_spider.scores._ops import class_sums, gram
from hf_spider.scores._registry import register_score
from hf_spider.scores._validation import check_features, check_labels

__all__ = ["sfda"]


def _power_top_eigenvalue(a: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """The SFDA code's estimate of the largest eigenvalue of a (3 power iterations from a·1)."""
    x = a.sum(1)
    for _ in range(iterations):
        y = a @ x
        y = y / torch.linalg.vector_norm(y)
        x = a @ y
        x = x / torch.linalg.vector_norm(x)
    return x @ a @ y


def _fda_posterior(
    x: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor, shrinkage: float | None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Posterior [n, C] of the regularised Fisher (LDA) classifier, class means [C, d], the shrinkage used.

    Within-class scatter S_w = Σ_c p_c Cov_c (1/n_c), shrunk towards (tr S_w / d) I; the Fisher-space
    classifier of the SFDA code, coef = means · V Vᵀ with V the S_w-orthonormal generalised
    eigenvectors of (S_b, S_w), equals means · S_w⁻¹ because V is square: solved here by Cholesky.
    """
    n, d = x.shape
    num_classes = counts.shape[0]
    prior = counts.to(x.dtype) / n
    means = class_sums(x, codes, num_classes) / counts.to(x.dtype)[:, None]
    within = gram(x - means[codes]) / n  # Σ_c p_c Cov_c
    if shrinkage is None:  # SFDA (Shao et al. 2022): adaptive regularisation strength
        shrinkage = max(math.exp(-5 * float(_power_top_eigenvalue(within))), 1e-10)
    shrunk = (1 - shrinkage) * within
    shrunk.diagonal().add_(shrinkage * torch.trace(within) / d)
    chol, info = torch.linalg.cholesky_ex(shrunk)
    if info == 0:
        coef = torch.cholesky_solve(means.mT, chol).mT  # means · S_w⁻¹  [C, d]
    else:
        coef = (torch.linalg.pinv(shrunk, hermitian=True) @ means.mT).mT
    logits = x @ coef.mT - 0.5 * (means * coef).sum(1) + torch.log(prior)
    return torch.softmax(logits, dim=1), means, shrinkage


@register_score("sfda")
def sfda(features: Any, labels: Any) -> float:
    """SFDA (Shao et al., ECCV 2022): accuracy-like score of a Fisher classifier after ConfMix.

    1. Regularised Fisher discriminant: shrinkage λ = max(exp(−5 λ_max(S_w)), 1e-10), posterior p(y | x).
    2. ConfMix ("self-challenging"): soften p with a second softmax, then move each sample towards the
       mean of the other classes' means: x ← p_y x + (1 − p_y) μ̄_{−y}.
    3. Refit with the same λ; score = mean posterior of the true class (no log, as in the authors' code).

    Args:
        features: [n, d] features.
        labels: [n] integer class ids.
    Returns:
        The score in (0, 1] (higher = better transfer).
    """
    f = check_features(features)
    lab = check_labels(labels, f.shape[0], score="sfda", device=f.device)
    codes, counts = lab.codes, lab.counts
    rows = torch.arange(f.shape[0], device=f.device)
    prob, means, shrinkage = _fda_posterior(f, codes, counts, None)
    p_true = torch.softmax(prob, dim=1)[rows, codes][:, None]  # softened confidence of the true class
    others = (means.sum(0) - means) / (lab.num_classes - 1)  # mean of the other classes' means [C, d]
    mixed = p_true * f + (1 - p_true) * others[codes]  # ConfMix (Shao et al. 2022)
    prob, _, _ = _fda_posterior(mixed, codes, counts, shrinkage)
    return float(prob[rows, codes].mean())

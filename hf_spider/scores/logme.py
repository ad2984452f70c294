"""LogME: maximum log evidence of Bayesian linear regression (You et al., ICML 2021; JMLR 2022)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from hf_spider.scores._ops import class_sums, eigh_project, gram, one_hot
from hf_spider.scores._registry import register_score
from hf_spider.scores._validation import ClassLabels, check_features, check_labels

__all__ = ["LogMEFit", "logme", "logme_fit"]

_TINY = 1e-300
_RESIDUAL_FLOOR = 1e-12


class LogMEFit(NamedTuple):
    """Per-target result of the LogME fixed point (numpy arrays of length K = classes or targets).

    Attributes:
        evidence: maximised log evidence divided by n, log p(y | F, alpha, beta) / n.
        alpha: prior precision of the weights at the fixed point.
        beta: noise precision at the fixed point.
        iterations: fixed-point iterations until every target converged.
    """

    evidence: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    iterations: int


def _logme_fixed_point(f: torch.Tensor, y: torch.Tensor, fty: torch.Tensor, tol: float, max_iter: int):
    """Evidence maximisation for all K targets at once after ONE eigendecomposition.

    f [n, d], y [n, K], fty = Fᵀy [d, K] (float64).
    Returns (evidence / n [K], alpha [K], beta [K], iterations).
    """
    n, d = f.shape
    if n >= d:  # FᵀF = V diag(sigma) Vᵀ, z = Vᵀ Fᵀ y
        sigma, z = eigh_project(gram(f), fty)
        z2 = z.square()
    else:  # F Fᵀ = U diag(sigma) Uᵀ, z = sqrt(sigma) Uᵀ y: same nonzero spectrum, n×n work only
        sigma, uy = eigh_project(gram(f.mT), y)
        z2 = sigma.clamp_min(0)[:, None] * uy.square()
    sigma = sigma.clamp_min(0)[:, None]  # [k, 1], k = min(n, d); the other d - k eigenvalues are 0
    y2 = y.square().sum(0)

    def moments(alpha, beta, z2, y2):  # gamma, |m|², |Fm − y|², m = (t I + FᵀF)⁻¹ Fᵀ y, t = alpha/beta
        t = alpha / beta
        den = (sigma + t).clamp_min(_TINY)
        gamma = (sigma / den).sum(0)
        m2 = (z2 / den.square()).sum(0).clamp_min(_TINY)
        # With n <= d the features can interpolate a target (residual -> 0, beta -> inf): bound the
        # residual at a 1e-12 fraction of the target's energy so the fixed point stays finite.
        res2 = (y2 - (z2 * (sigma + 2 * t) / den.square()).sum(0)).clamp_min(_RESIDUAL_FLOOR * y2)
        return gamma, m2, res2

    alpha, beta = torch.ones_like(y2), torch.ones_like(y2)
    active = torch.arange(y2.shape[0], device=y2.device)  # targets still iterating (stragglers are cheap)
    iterations = 0
    # LogME (You et al. 2021), evidence maximisation by MacKay's fixed point, all targets as vectors
    while active.numel() and iterations < max_iter:
        iterations += 1
        a, b = alpha[active], beta[active]
        gamma, m2, res2 = moments(a, b, z2[:, active], y2[active])
        alpha[active], beta[active] = gamma / m2, (n - gamma) / res2
        # converged: alpha/beta settled, or gamma (well-determined parameters) ~ 0, i.e. the maximum is
        # at alpha = inf (y unexplained by F); the evidence is then within O(tol) of its limit
        settled = (alpha[active] / beta[active] - a / b).abs() <= tol * (a / b)
        active = active[~(settled | (gamma <= tol))]
    gamma, m2, res2 = moments(alpha, beta, z2, y2)
    # closed-form log evidence L(alpha, beta) (You et al. 2021);
    # det(alpha I + beta FᵀF) has d - k factors alpha
    evidence = (
        d / 2 * torch.log(alpha)
        + n / 2 * torch.log(beta)
        - 0.5 * torch.log(alpha + beta * sigma).sum(0)
        - 0.5 * (d - sigma.shape[0]) * torch.log(alpha)
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * math.log(2 * math.pi)
    ) / n
    return evidence, alpha, beta, iterations


def logme_fit(
    features: Any, labels: Any, *, regression: bool = False, tol: float = 1e-6, max_iter: int = 1000
) -> LogMEFit:
    """LogME fixed point per class (one-hot target) or per regression target, exposing alpha and beta.

    Args:
        features: [n, d] features.
        labels: [n] integer class ids, or real targets [n] / [n, k] with ``regression=True``.
        regression: treat ``labels`` as real-valued targets.
        tol: a target stops when alpha/beta changes by <= tol (relative) or gamma <= tol.
        max_iter: iteration cap.
    """
    f = check_features(features)
    lab = check_labels(
        labels, f.shape[0], score="logme", device=f.device, regression=regression, supports_regression=True
    )
    if isinstance(lab, ClassLabels):  # Fᵀy of one-hot targets = per-class feature sums
        y, fty = one_hot(lab.codes, lab.num_classes), class_sums(f, lab.codes, lab.num_classes).mT
    else:
        y, fty = lab, f.mT @ lab
    evidence, alpha, beta, iterations = _logme_fixed_point(f, y, fty, tol, max_iter)
    return LogMEFit(evidence.cpu().numpy(), alpha.cpu().numpy(), beta.cpu().numpy(), iterations)


@register_score("logme", regression=True)
def logme(features: Any, labels: Any, *, regression: bool = False, tol: float = 1e-6, max_iter: int = 1000) -> float:
    """LogME (You et al., ICML 2021 / JMLR 2022): mean over targets of the maximised log evidence / n.

    Bayesian linear regression y = F w + noise, w ~ N(0, alpha⁻¹ I), noise ~ N(0, beta⁻¹); alpha and
    beta maximise the evidence by MacKay's fixed point, run for all classes (one-hot columns) or
    regression targets simultaneously after one eigendecomposition of FᵀF (or F Fᵀ when n < d), in
    float64. Decision: no 1e-5 added to the update denominators (the public code adds one, and stops
    after 11 iterations), so the returned alpha, beta satisfy the fixed-point equations; a target stops
    when alpha/beta changes by <= ``tol`` (relative) or when gamma <= ``tol`` (the optimum is at
    alpha = inf: the target is not explained by the features; its evidence is the limit, to O(tol)).

    Args:
        features: [n, d] features (numpy or torch, any float dtype, CPU or CUDA).
        labels: [n] integer class ids, or real targets [n] / [n, k] with ``regression=True``.
    Returns:
        The score (higher = better transfer).
    """
    fit = logme_fit(features, labels, regression=regression, tol=tol, max_iter=max_iter)
    return float(fit.evidence.mean())

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

_ITERATIONS = 11  # the official fixed point's cap ("should converge after at most 10 steps")
_RTOL = 1e-3  # ... and its stopping rule on alpha / beta
_GUARD = 1e-5  # ... and the constant it adds to both update denominators
_RANK_TOL = 1e-10  # singular values kept when n > d (the official truncated SVD)


class LogMEFit(NamedTuple):
    """Per-target result of the LogME fixed point (numpy arrays of length K = classes or targets).

    Attributes:
        evidence: maximised log evidence divided by n, log p(y | F, alpha, beta) / n.
        alpha: prior precision of the weights at the fixed point.
        beta: noise precision at the fixed point.
        iterations: fixed-point iterations of the slowest target.
    """

    evidence: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    iterations: int


def _logme_fixed_point(f: torch.Tensor, y: torch.Tensor, fty: torch.Tensor):
    """The official ``LogME._fit_fixed_point`` (You et al., arXiv 2110.10545) for all K targets at once
    after ONE eigendecomposition, guards and stopping rule included.

    f [n, d], y [n, K], fty = Fᵀy [d, K] (float64). Returns (evidence / n [K], alpha [K], beta [K], iterations).
    """
    n, d = f.shape
    if n > d:  # FᵀF = V diag(sigma) Vᵀ; x = Uᵀy = Vᵀ Fᵀ y / s, rank-truncated as the official SVD
        sigma, z = eigh_project(gram(f), fty)
        keep = sigma.clamp_min(0).sqrt() > _RANK_TOL
        sigma, x2 = sigma[keep], z[keep].square() / sigma[keep, None]
    else:  # F Fᵀ = U diag(sigma) Uᵀ, x = Uᵀ y: all n singular values, as the official thin SVD
        sigma, x = eigh_project(gram(f.mT), y)
        x2 = x.square()
    sigma = sigma.clamp_min(0)[:, None]  # [k, 1]
    res_x2 = y.square().sum(0) - x2.sum(0)  # the part of y outside the span of U

    def moments(t):  # gamma, |m|², |Fm − y|² at t = alpha / beta, m = (t I + FᵀF)⁻¹ Fᵀ y
        gamma = (sigma / (sigma + t)).sum(0)
        m2 = (sigma * x2 / (t + sigma).square()).sum(0)
        res2 = (x2 / (1 + sigma / t).square()).sum(0) + res_x2
        return gamma, m2, res2

    alpha, beta = torch.ones_like(res_x2), torch.ones_like(res_x2)
    m2, res2 = torch.zeros_like(res_x2), torch.zeros_like(res_x2)
    active = torch.ones_like(res_x2, dtype=torch.bool)  # targets still iterating
    iterations = 0
    while active.any() and iterations < _ITERATIONS:  # MacKay's fixed point, each target as the official loop
        iterations += 1
        t = alpha / beta
        gamma, m2_t, res2_t = moments(t)
        m2, res2 = torch.where(active, m2_t, m2), torch.where(active, res2_t, res2)
        alpha = torch.where(active, gamma / (m2_t + _GUARD), alpha)
        beta = torch.where(active, (n - gamma) / (res2_t + _GUARD), beta)
        active &= (alpha / beta - t).abs() / t > _RTOL
    # log evidence at the last (alpha, beta), with |m|² and the residual of the step before, as the official
    # code (which also leaves out the (d - k) log(alpha) of the zero eigenvalues)
    evidence = (
        d / 2 * torch.log(alpha)
        + n / 2 * torch.log(beta)
        - 0.5 * torch.log(alpha + beta * sigma).sum(0)
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * math.log(2 * math.pi)
    ) / n
    return evidence, alpha, beta, iterations


def logme_fit(features: Any, labels: Any, *, regression: bool = False) -> LogMEFit:
    """LogME fixed point per class (one-hot target) or per regression target, exposing alpha and beta.

    Args:
        features: [n, d] features.
        labels: [n] integer class ids, or real targets [n] / [n, k] with ``regression=True``.
        regression: treat ``labels`` as real-valued targets.
    """
    f = check_features(features)
    lab = check_labels(
        labels, f.shape[0], score="logme", device=f.device, regression=regression, supports_regression=True
    )
    if isinstance(lab, ClassLabels):  # Fᵀy of one-hot targets = per-class feature sums
        y, fty = one_hot(lab.codes, lab.num_classes), class_sums(f, lab.codes, lab.num_classes).mT
    else:
        y, fty = lab, f.mT @ lab
    evidence, alpha, beta, iterations = _logme_fixed_point(f, y, fty)
    return LogMEFit(evidence.cpu().numpy(), alpha.cpu().numpy(), beta.cpu().numpy(), iterations)


@register_score("logme", regression=True)
def logme(features: Any, labels: Any, *, regression: bool = False) -> float:
    """LogME (You et al., ICML 2021 / JMLR 2022): mean over targets of the maximised log evidence / n.

    Bayesian linear regression y = F w + noise, w ~ N(0, alpha⁻¹ I), noise ~ N(0, beta⁻¹); alpha and
    beta maximise the evidence by MacKay's fixed point, run for all classes (one-hot columns) or
    regression targets simultaneously after one eigendecomposition of FᵀF (or F Fᵀ when n <= d), in
    float64. It equals thuml's ``LogME.fit`` (the arXiv 2110.10545 fixed point): at most 11 iterations, a
    target stops when alpha/beta changes by at most 0.1%, 1e-5 added to both update denominators (so a
    target the features interpolate, or cannot explain, keeps a finite evidence).

    Args:
        features: [n, d] features (numpy or torch, any float dtype, CPU or CUDA).
        labels: [n] integer class ids, or real targets [n] / [n, k] with ``regression=True``.
    Returns:
        The score (higher = better transfer).
    """
    fit = logme_fit(features, labels, regression=regression)
    return float(fit.evidence.mean())

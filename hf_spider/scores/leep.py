"""Scores from source-class probabilities: LEEP, NCE, and N-LEEP (LEEP on a Gaussian mixture's posterior)."""

from __future__ import annotations

from typing import Any

import torch

from hf_spider.scores._ops import class_sums, gmm_posterior
from hf_spider.scores._registry import register_score
from hf_spider.scores._validation import check_features, check_int, check_labels, check_probs

__all__ = ["leep", "nce", "nleep"]

_TINY = 1e-300


def _leep(theta: torch.Tensor, codes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """LEEP of dummy-label distributions theta [n, Z] (rows sum to 1) for labels codes [n] in 0..C-1."""
    n = theta.shape[0]
    joint = class_sums(theta, codes, num_classes) / n  # P̂(y, z) from soft counts [C, Z]
    cond = joint / joint.sum(0).clamp_min(_TINY)  # P̂(y | z) = P̂(y, z) / P̂(z)
    eep = (theta * cond[codes]).sum(1)  # Σ_z P̂(y_i | z) θ(x_i)_z  [n]
    return torch.log(eep).mean()  # LEEP (Nguyen et al. 2020): mean log expected empirical prediction


@register_score("leep", needs=("source_probs",))
def leep(source_probs: Any, labels: Any) -> float:
    """LEEP (Nguyen et al., ICML 2020): (1/n) Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z.

    Args:
        source_probs: [n, C_s] source-head probabilities θ(x) (rows sum to 1).
        labels: [n] integer class ids.
    Returns:
        The score (<= 0, higher = better transfer).
    """
    theta = check_probs(source_probs)
    lab = check_labels(labels, theta.shape[0], score="leep", device=theta.device)
    return float(_leep(theta, lab.codes, lab.num_classes))


@register_score("nce", needs=("source_probs",))
def nce(source_probs: Any, labels: Any) -> float:
    """NCE (Tran et al., ICCV 2019): −H(Y | Z) with Z = argmax of the source probabilities.

    Empirical joint P̂(y, z) of target labels and hard source labels; ties in the argmax go to the
    first source class.

    Args:
        source_probs: [n, C_s] source-head probabilities (rows sum to 1).
        labels: [n] integer class ids.
    Returns:
        The score (<= 0, higher = better transfer).
    """
    theta = check_probs(source_probs)
    lab = check_labels(labels, theta.shape[0], score="nce", device=theta.device)
    n, n_source = theta.shape
    z = theta.argmax(1)
    counts = torch.bincount(lab.codes * n_source + z, minlength=lab.num_classes * n_source)
    joint = counts.reshape(lab.num_classes, n_source).to(torch.float64) / n  # P̂(y, z)
    cond = joint / joint.sum(0).clamp_min(_TINY)  # P̂(y | z)
    # NCE (Tran et al. 2019) = −H(Y|Z) = Σ_{y,z} P̂(y, z) log P̂(y | z), empty cells contribute 0
    return float(torch.where(joint > 0, joint * torch.log(cond.clamp_min(_TINY)), 0.0).sum())


@register_score("nleep")
def nleep(
    features: Any,
    labels: Any,
    *,
    components_per_class: int = 5,
    variance: float = 0.8,
    tol: float = 1e-2,
    random_state: int = 0,
) -> float:
    """N-LEEP (Li et al., CVPR 2021): LEEP with θ = posterior of a Gaussian mixture on PCA(features).

    PCA keeps ``variance`` (80%) of the variance; the mixture has ``components_per_class`` × C
    components (5·C, as in the SFDA code; capped at n). Decisions, for speed (n = 10⁴, C = 100 in
    seconds): diagonal covariances (a full-covariance fit with 5·C components takes minutes), k-means
    initialisation from random rows, EM tolerance ``tol`` = 1e-2 (see
    :func:`hf_spider.scores._ops.gmm_posterior`). The fit is seeded, so the score is deterministic.

    Args:
        features: [n, d] features.
        labels: [n] integer class ids.
    Returns:
        The score (<= 0, higher = better transfer).
    """
    f = check_features(features)
    lab = check_labels(labels, f.shape[0], score="nleep", device=f.device)
    k = check_int(components_per_class, "components_per_class", low=1) * lab.num_classes
    theta = gmm_posterior(f, k, variance=variance, tol=tol, random_state=random_state)
    return float(_leep(theta, lab.codes, lab.num_classes))

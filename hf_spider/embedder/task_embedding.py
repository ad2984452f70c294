"""Task embedding of the Standardized Embedder by feature sifting (SPEC §3.2; Wang, Zhuang & Lyu 2024, §4.3).

The task embedding u ∈ [0,1]^N marks the baseline features a downstream task needs. It is learned
from the task's baseline features B [n, N] and labels alone (one linear head, no candidate model):

    emb = embed_task(B, labels)                         # classification, γ by the paper's rule of thumb
    emb = embed_task(B, targets, regression=True)       # real targets [n] or [n, k]
    emb.vector, emb.gamma, emb.accuracy, emb.sweep

Feature sifting (paper §4.3), with v = sigmoid(v'/τ), w [N, C], b [C]:

    min_{v', w, b}  E L( wᵀ(v ⊙ B(x)) + b, y ) + γ ‖v‖₁   s.t.  ‖wᵀ‖₁ = max_i Σ_j |w_ij| = 1

L is cross-entropy over class ids, or the squared error Σ_k (ŷ_k − y_k)² on targets standardised per
output (train-split mean and std; R² is unchanged by that, and the γ grid then means the same for any
target unit). ‖wᵀ‖₁ is the matrix norm induced by the vector ℓ1 norm: the largest ℓ1 norm of a row
of w [N, C], i.e. over the C outputs of one baseline feature i, maximised over the N features.
**decision:** the constraint is relaxed to the ball ‖wᵀ‖₁ ≤ 1 and enforced after every SGD step by
the direction-preserving rescale w ← w / max(1, ‖wᵀ‖₁). For γ > 0 it is active at the optimum (else
shrinking v and growing w would lower γ‖v‖₁ at equal loss); unlike renormalising to exactly 1 it
accepts a zero head at the start (clipping each row separately fails: ``docs/embedder.md``).

Optimisation (paper §5.1): SGD, batch 128, lr 0.1, momentum 0.9, weight decay 5e-4 on w and b but
not on v', 60 epochs, lr ÷10 every 15. **decisions:** lr 0.01 for regression (``docs/embedder.md``);
initialisation v' = 6τ (v ≈ 0.998, all features in, as for model embeddings) and a zero head
w = 0, b = 0, so v receives no gradient from a random head before the head has learned; a seeded
``torch.Generator`` draws the split and the batches.

γ rule of thumb (paper §5.4, Fig. 3d, 8): γ is the smallest value of a geometric grid whose accuracy
is at least 3 points below the converged accuracy, the accuracy as γ → 0 (γ = 0 is trained too).
**decisions:** (1) "accuracy" is measured on a held-out fraction of the task data (``holdout=0.2``,
stratified by class), as the paper's curves show downstream (test) accuracy; ``holdout=0`` uses
training accuracy. (2) The converged accuracy is the running maximum over smaller γ (see
:func:`choose_gamma`): identical to the paper's rule when accuracy does not rise with γ, robust when
sparsity first helps held-out accuracy, which happens with a few thousand samples and N = 512.
(3) Regression uses R² (uniform average over outputs) with the same 0.03 drop. (4) Grid:
:data:`DEFAULT_GAMMA_GRID`. All γ of the sweep are trained at once as one batch of independent
parameter sets [G, ...] on the same batches; the returned vector is the chosen γ's run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as nnf

from hf_spider.embedder._common import V_INIT_LOGIT, TaskEmbedding
from hf_spider.embedder.model_embedding import (
    _as_matrix,
    _batch_order,
    _check_positive,
    _mask,
    _resolve_device,
    _sgd_step,
    _step_lr,
)
from hf_spider.errors import InvalidInputError

__all__ = ["DEFAULT_GAMMA_GRID", "choose_gamma", "embed_task"]

#: γ candidates of ``gamma="auto"``: 10^-5 … 10^0, four per decade (21 values); γ = 0 is added.
DEFAULT_GAMMA_GRID: tuple[float, ...] = tuple(float(g) for g in np.logspace(-5, 0, 21))
_EVAL_CHUNK = 4096


def choose_gamma(sweep: Sequence[tuple[float, float, float]], *, drop: float = 0.03) -> float:
    """The paper's rule of thumb (§5.4): the smallest γ whose accuracy is ≥ ``drop`` below the
    converged accuracy, where "converged" is the best accuracy of all smaller γ (running maximum).

    ``sweep`` holds (γ, accuracy, ‖v‖₁), γ = 0 included. Where accuracy never rises with γ (the paper's
    curves) the running maximum is the accuracy at γ → 0 and this is the paper's rule verbatim; where
    sparsity first *improves* held-out accuracy (few samples, many features) it stops at the drop
    after that peak instead of far past it. If no γ drops that far, the largest γ is returned.
    """
    rows = sorted(sweep)
    acc = np.array([r[1] for r in rows], dtype=np.float64)
    converged = np.maximum.accumulate(acc)[:-1]  # best accuracy of every smaller γ
    hit = np.nonzero(acc[1:] <= converged - drop + 1e-9)[0]
    return float(rows[hit[0] + 1][0] if len(hit) else rows[-1][0])


# ---------------------------------------------------------------- validation and data split


def _check_targets(labels: Any, n: int, regression: bool) -> tuple[torch.Tensor, int]:
    """Class codes int64 [n] (any hashable labels, remapped to 0..C-1) and C, or float32 targets [n, k] and k."""
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim == 0 or arr.shape[0] != n:
        raise InvalidInputError(
            f"labels have {arr.shape[0] if arr.ndim else 0} entries but baseline_features "
            f"have {n} rows; they must match"
        )
    if regression:
        if arr.ndim > 2:
            raise InvalidInputError(f"regression targets must be [n] or [n, k], got shape {arr.shape}")
        y = _as_matrix(arr.reshape(n, -1), "regression targets")
        return y, y.shape[1]
    if (
        arr.ndim != 1
        or arr.dtype.kind == "c"
        or (arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()))
    ):
        raise InvalidInputError(
            f"labels must be 1-D class ids (got shape {arr.shape}, dtype {arr.dtype}); "
            "for real-valued targets pass regression=True"
        )
    classes, codes = np.unique(arr, return_inverse=True)
    if len(classes) < 2:
        raise InvalidInputError(f"labels contain a single class ({classes[0]!r}); a task embedding needs at least 2")
    return torch.from_numpy(codes.reshape(n).astype(np.int64)), len(classes)


def _gammas(gamma: float | str, gamma_grid: Sequence[float] | None) -> list[float]:
    """γ values to train, ascending: [0, *grid] for ``"auto"``, else [γ]."""
    if gamma == "auto":
        grid = DEFAULT_GAMMA_GRID if gamma_grid is None else gamma_grid
        try:
            values = sorted({float(g) for g in grid})
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"gamma_grid must be a sequence of numbers, got {gamma_grid!r}") from exc
        if not values or not all(math.isfinite(g) and g > 0 for g in values):
            raise InvalidInputError(f"gamma_grid must hold finite values > 0, got {gamma_grid!r}")
        return [0.0, *values]
    if gamma_grid is not None:
        raise InvalidInputError("gamma_grid is only used with gamma='auto'")
    if isinstance(gamma, str):
        raise InvalidInputError(f"gamma must be 'auto' or a number >= 0, got {gamma!r}")
    return [_check_positive(gamma, "gamma", allow_zero=True)]


def _check_sgd(*, lr: Any, momentum: Any, weight_decay: Any, **counts: Any) -> dict[str, Any]:
    """SGD options checked: ``counts`` (epochs, batch size...) integers ≥ 1, lr > 0, the rest ≥ 0."""
    out = {k: _check_positive(value, k, integer=True) for k, value in counts.items()}
    out["lr"] = _check_positive(lr, "lr")
    out["momentum"] = _check_positive(momentum, "momentum", allow_zero=True)
    out["weight_decay"] = _check_positive(weight_decay, "weight_decay", allow_zero=True)
    return out


def _standardise(y: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Targets [n, k] standardised per output with the training rows' mean and std."""
    mean, std = y[train].mean(0), y[train].std(0)
    if bool((std == 0).any()):
        raise InvalidInputError("a regression target is constant on the training rows; nothing to predict")
    return (y - mean) / std


def _split(strata: torch.Tensor, holdout: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train rows, held-out rows): round(holdout · count) random rows of each stratum held out."""
    n = strata.shape[0]
    if holdout == 0:
        return torch.arange(n), torch.arange(n)
    key = torch.rand(n, generator=gen, dtype=torch.float64)
    order = np.lexsort((key.numpy(), strata.numpy()))  # by stratum, random inside
    _, first, counts = np.unique(strata.numpy()[order], return_index=True, return_counts=True)
    rank = np.arange(n) - np.repeat(first, counts)  # position inside the stratum
    held = np.zeros(n, dtype=bool)
    held[order] = rank < np.floor(holdout * np.repeat(counts, counts) + 0.5)
    if held.all() or not held.any() or (~held).sum() < 2:
        raise InvalidInputError(f"holdout={holdout} leaves {int(held.sum())} of {n} rows held out; need 1 ≤ held < n-1")
    return torch.from_numpy(np.nonzero(~held)[0]), torch.from_numpy(np.nonzero(held)[0])


# ---------------------------------------------------------------- the objective, batched over γ


def _forward(x: torch.Tensor, v: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Predictions wᵀ(v ⊙ B(x)) + b for every γ: x [m, N], v [G, N], w [G, N, C], b [G, C] → [G, m, C].

    Computed as B(x)ᵀ(v ⊙ w): one [m, N] × [N, G·C] product, no [G, m, N] intermediate.
    """
    g, n_base, c = w.shape
    vw = (v[:, :, None] * w).permute(1, 0, 2).reshape(n_base, g * c)
    return (x @ vw).view(-1, g, c).permute(1, 0, 2) + b[:, None, :]


def _task_loss(out: torch.Tensor, y: torch.Tensor, regression: bool) -> torch.Tensor:
    """Mean task loss L per γ [G]: cross-entropy on codes y [m], or Σ_k squared error on y [m, k]."""
    if regression:
        return (out - y[None]).square().sum(2).mean(1)
    g, m, c = out.shape
    return nnf.cross_entropy(out.reshape(g * m, c), y.repeat(g), reduction="none").view(g, m).mean(1)


def _project(w: torch.Tensor) -> None:
    """w ← w / max(1, ‖wᵀ‖₁) per γ, ‖wᵀ‖₁ = max_i Σ_j |w_ij| (paper §4.3: ‖wᵀ‖₁ = 1), in place."""
    w.div_(w.abs().sum(2).amax(1).clamp_min(1.0)[:, None, None])


@torch.no_grad()
def _evaluate(x: torch.Tensor, y: torch.Tensor, v, w, b, regression: bool) -> torch.Tensor:
    """Accuracy [G] (classification) or R² [G] averaged over outputs (regression) on rows x, y."""
    hits = torch.zeros(v.shape[0], device=x.device)
    sse = torch.zeros(v.shape[0], y.shape[1] if regression else 1, device=x.device)
    for start in range(0, x.shape[0], _EVAL_CHUNK):
        out = _forward(x[start : start + _EVAL_CHUNK], v, w, b)
        yc = y[start : start + _EVAL_CHUNK]
        if regression:
            sse += (out - yc[None]).square().sum(1)
        else:
            hits += (out.argmax(2) == yc[None]).sum(1)
    if regression:
        sst = (y - y.mean(0)).square().sum(0).clamp_min(1e-12)
        return (1 - sse / sst).mean(1)
    return hits / x.shape[0]


# ---------------------------------------------------------------- training


def _train_sweep(
    x,
    y,
    gammas: torch.Tensor,
    out_dim: int,
    *,
    regression: bool,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    lr_step_epochs: int,
    tau: float,
    gen: torch.Generator,
    progress: bool,
):
    """Feature sifting (paper §4.3) for G γ values at once; returns v [G, N], w [G, N, C], b [G, C]."""
    (n, n_base), g, dev = x.shape, gammas.shape[0], x.device
    per_epoch = -(-n // batch_size)
    v_prime = torch.full((g, n_base), V_INIT_LOGIT * tau, device=dev).requires_grad_()
    w = torch.zeros(g, n_base, out_dim, device=dev, requires_grad=True)  # zero head (decision)
    b = torch.zeros(g, out_dim, device=dev, requires_grad=True)
    order = _batch_order(n, epochs * per_epoch, batch_size, gen).to(dev)
    groups, bufs = [([v_prime], 0.0), ([w, b], weight_decay)], {}  # no weight decay on v' (paper §5.1)

    from tqdm.auto import tqdm

    for step in tqdm(range(order.shape[0]), desc=f"embed task ({g} γ)", disable=not progress):
        idx = order[step]
        v = _mask(v_prime, tau)
        loss = _task_loss(_forward(x[idx], v, w, b), y[idx], regression) + gammas * v.sum(1)  # + γ‖v‖₁
        loss.sum().backward()  # the G problems share no parameter: summing keeps them independent
        _sgd_step(groups, bufs, _step_lr(lr, step, lr_step_epochs * per_epoch), momentum)
        with torch.no_grad():
            _project(w)
    return _mask(v_prime.detach(), tau), w.detach(), b.detach()


def embed_task(
    baseline_features: Any,
    labels: Any,
    *,
    regression: bool = False,
    gamma: float | Literal["auto"] = "auto",
    epochs: int = 60,
    batch_size: int = 128,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_step_epochs: int = 15,
    tau: float = 0.01,
    seed: int = 0,
    gamma_grid: Sequence[float] | None = None,
    holdout: float = 0.2,
    drop: float = 0.03,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> TaskEmbedding:
    """Embed a task: the baseline features its labels need, by feature sifting (paper §4.3, §5.4).

    Args:
        baseline_features: B [n, N], the baseline's features of the task's samples.
        labels: class ids [n] (any labels; remapped), or real targets [n] / [n, k] with ``regression=True``.
        gamma: sparsity level γ ≥ 0, or ``"auto"``: sweep ``gamma_grid`` (default
            :data:`DEFAULT_GAMMA_GRID`) plus γ = 0 and apply the rule of thumb (:func:`choose_gamma`).
        epochs, batch_size, lr, momentum, weight_decay, lr_step_epochs: SGD settings (paper §5.1);
            weight decay applies to w and b, never to v'. ``lr=None``: 0.1 (paper) for classification,
            0.01 for regression (squared error is 4× as curved as cross-entropy; at 0.1 it is unstable).
        tau: sigmoid temperature τ of v = sigmoid(v'/τ).
        seed: seeds the split, the initialisation and the batch order.
        holdout: fraction of rows (per class) held out to measure accuracy; 0 → training accuracy.
        drop: accuracy (or R²) drop from the converged one that the rule of thumb looks for.
        device: torch device; ``None`` → CUDA when available, else CPU.
        progress: show a progress bar over steps.
    Returns:
        :class:`TaskEmbedding`: vector [N] of the chosen γ, γ, its held-out accuracy (R²), the sweep.
    """
    x = _as_matrix(baseline_features, "baseline_features")
    y, out_dim = _check_targets(labels, x.shape[0], regression)
    gammas = _gammas(gamma, gamma_grid)
    sgd = _check_sgd(
        epochs=epochs, batch_size=batch_size, lr_step_epochs=lr_step_epochs, momentum=momentum,
        lr=(0.01 if regression else 0.1) if lr is None else lr, weight_decay=weight_decay,
    )  # fmt: skip
    tau, drop = _check_positive(tau, "tau"), _check_positive(drop, "drop", allow_zero=True)
    if not (isinstance(holdout, (int, float)) and 0 <= holdout < 1):
        raise InvalidInputError(f"holdout must be a fraction in [0, 1), got {holdout!r}")

    gen = torch.Generator().manual_seed(int(seed))
    train, held = _split(torch.zeros(len(y), dtype=torch.int64) if regression else y, float(holdout), gen)
    dev = _resolve_device(device)
    x, y = x.to(dev), (_standardise(y, train) if regression else y).to(dev)
    v, w, b = _train_sweep(
        x[train], y[train], torch.tensor(gammas, device=dev), out_dim,
        regression=regression, tau=tau, gen=gen, progress=progress, **sgd,
    )  # fmt: skip
    scores = _evaluate(x[held], y[held], v, w, b, regression).tolist()
    sweep = [(g, float(s), float(l1)) for g, s, l1 in zip(gammas, scores, v.sum(1).tolist(), strict=True)]
    k = gammas.index(choose_gamma(sweep, drop=drop)) if gamma == "auto" else 0
    return TaskEmbedding(
        vector=v[k].cpu().numpy().astype(np.float32),
        gamma=gammas[k],
        accuracy=sweep[k][1],
        sweep=sweep,
        regression=bool(regression),
    )



"""Model embedding of the Standardized Embedder (SPEC §3.1; Wang, Zhuang & Lyu 2024, §4.2).

A model's embedding is a relaxed mask v ∈ [0,1]^N over the N features of a public baseline model:
the subset of baseline features that is (approximately) functionally equivalent to the model's
features on a fixed reference set D (paper Def. 4.1, 4.2). It is learned from cached features only:

    emb = embed_model(F, B)      # F [n, d_m]: the model's features on D; B [n, N]: baseline features on D
    emb.vector                   # [N] float32 in [0, 1], what is published on the Hub (SPEC §5)
    emb.fidelity_to, emb.fidelity_from   # final L_to, L_from on the whole reference set

Objective (paper §4.2, the max-min problem under Def. 4.2), with v = sigmoid(v' / τ):

    L_to   = E_x cos( wᵀ F(x) + b,  v ⊙ B(x) )          w [d_m, N], b [N]
    L_from = E_x cos( F(x),  ŵᵀ (v ⊙ B(x)) + b̂ )         ŵ [N, d_m], b̂ [d_m]
    maximise min(L_to, L_from) over v', w, b, ŵ, b̂

Optimisation (paper §5.1): SGD, batch 128, lr 0.1, momentum 0.9, weight decay 5e-4 on every
parameter (the paper disables weight decay only for the *task* embedding), lr ÷10 every 1k of 4k steps.
Two decisions where the paper is silent (the evidence: ``docs/embedder.md``): v' starts at 6τ (v = σ(6) ≈ 0.998,
the full baseline set, from which the objective removes features), and after every step v' is projected onto
[−6τ, 6τ], so the published values are within 0.0025 of a binary mask and no coordinate's gradient vanishes.
w, b, ŵ, b̂ are initialised as ``torch.nn.Linear`` from a seeded ``torch.Generator`` that also draws the
batches (one shuffled pass over D per epoch): a CPU run is bit-reproducible for given inputs and seed. The
optimisation stops after ``steps``; the recorded fidelity is evaluated afterwards on every row of the
reference set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf

from hf_spider._arrays import as_tensor
from hf_spider.embedder._common import V_INIT_LOGIT
from hf_spider.errors import InvalidInputError

__all__ = ["AffineMaps", "ModelEmbedding", "embed_model", "fidelity"]

_EVAL_CHUNK = 8192  # rows per chunk when evaluating on the whole reference set


@dataclass(frozen=True, eq=False)
class AffineMaps:
    """The affine maps learned with a model embedding (float32 numpy arrays).

    Attributes:
        w: [d_m, N] and b: [N]: model features → baseline features (F ↦ Fw + b).
        w_hat: [N, d_m] and b_hat: [d_m]: masked baseline features → model features.
    """

    w: np.ndarray
    b: np.ndarray
    w_hat: np.ndarray
    b_hat: np.ndarray


@dataclass(frozen=True, eq=False)
class ModelEmbedding:
    """Result of :func:`embed_model`.

    Attributes:
        vector: [N] float32 in [0, 1], the embedding v = sigmoid(v'/τ).
        fidelity_to: L_to on the whole reference set (mean cosine, in [-1, 1]).
        fidelity_from: L_from on the whole reference set.
        steps: optimisation steps run.
        seed: seed of the initialisation and batch order.
        tau: sigmoid temperature τ.
        maps: the learned affine maps (not published; kept to recompute the fidelity).
    """

    vector: np.ndarray
    fidelity_to: float
    fidelity_from: float
    steps: int
    seed: int
    tau: float
    maps: AffineMaps | None = None


# ---------------------------------------------------------------- validation (public boundary)


def _as_matrix(x: Any, name: str, *, min_rows: int = 2) -> torch.Tensor:
    """``x`` (numpy array, torch tensor, nested list) as a finite float32 tensor [n, d] (numpy → CPU)."""
    t = as_tensor(x, name)
    if t.dtype == torch.bool:
        raise InvalidInputError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if t.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D [n_samples, n_features], got shape {tuple(t.shape)}")
    if t.shape[0] < min_rows or t.shape[1] < 1:
        raise InvalidInputError(f"{name} need at least {min_rows} samples and 1 feature, got shape {tuple(t.shape)}")
    t = t.to(torch.float32)
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise InvalidInputError(f"{name} contain {bad} NaN or infinite value(s) (as float32); remove or impute them")
    return t


def _check_pair(model_features: Any, baseline_features: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """F [n, d_m] and B [n, N] validated, with the same number of rows (the same images)."""
    f = _as_matrix(model_features, "model_features")
    b = _as_matrix(baseline_features, "baseline_features")
    if f.shape[0] != b.shape[0]:
        raise InvalidInputError(
            f"model_features have {f.shape[0]} rows but baseline_features have {b.shape[0]}; "
            "both must be extracted from the same reference images, in the same order"
        )
    return f, b


def _check_positive(value: Any, name: str, *, integer: bool = False, allow_zero: bool = False) -> Any:
    """A positive (or non-negative) number option."""
    ok_type = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite {'integer' if integer else 'number'}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return int(value) if integer else float(value)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---------------------------------------------------------------- shared optimisation pieces


def _batch_order(n: int, steps: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """Row indices [steps, batch_size]: consecutive shuffled passes over the n rows (CPU generator)."""
    epochs = -(-steps * batch_size // n)  # ceil
    perms = torch.rand(epochs, n, generator=gen, dtype=torch.float64).argsort(dim=1, stable=True)
    return perms.reshape(-1)[: steps * batch_size].reshape(steps, batch_size)


def _linear_init(fan_in: int, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """U(-1/√fan_in, 1/√fan_in), the ``torch.nn.Linear`` default, from ``gen`` (CPU)."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def _step_lr(lr: float, step: int, every: int) -> float:
    """Step schedule: lr · 0.1^⌊step / every⌋ (paper §5.1)."""
    return lr * 0.1 ** (step // every)


@torch.no_grad()
def _sgd_step(
    groups: list[tuple[list[torch.Tensor], float]], bufs: dict[int, torch.Tensor], lr: float, momentum: float
) -> None:
    """One SGD step with momentum and weight decay, as ``torch.optim.SGD`` (no dampening, no Nesterov):
    d = ∇ + λ·p;  buf ← μ·buf + d (buf = d at the first step);  p ← p − lr·buf.

    ``groups`` pairs parameters with their weight decay λ. Written out because the first
    ``torch.optim`` step imports ``torch._dynamo`` (seconds of start-up for a few lines of arithmetic).
    """
    for params, decay in groups:
        for p in params:
            d = p.grad if decay == 0 else p.grad.add(p, alpha=decay)
            buf = bufs.get(id(p))
            bufs[id(p)] = d.clone() if buf is None else buf.mul_(momentum).add_(d)
            p.sub_(bufs[id(p)], alpha=lr)
            p.grad = None


# ---------------------------------------------------------------- the objective


def _mask(v_prime: torch.Tensor, tau: float) -> torch.Tensor:
    """v = sigmoid(v'/τ) ∈ [0,1]^N (paper §4.2, the reparametrisation of v ∈ [0,1]^N)."""
    return torch.sigmoid(v_prime / tau)


def _objectives(f: torch.Tensor, b: torch.Tensor, v: torch.Tensor, p: dict[str, torch.Tensor]):
    """(L_to, L_from) on a batch (paper §4.2): mean cosines, F [m, d_m], B [m, N], v [N]."""
    vb = b * v
    l_to = nnf.cosine_similarity(torch.addmm(p["b"], f, p["w"]), vb, dim=1).mean()
    l_from = nnf.cosine_similarity(f, torch.addmm(p["b_hat"], vb, p["w_hat"]), dim=1).mean()
    return l_to, l_from


@torch.no_grad()
def _full_fidelity(f: torch.Tensor, b: torch.Tensor, v: torch.Tensor, p: dict[str, torch.Tensor]):
    """(L_to, L_from) on every row of F, B, chunked: exact means over the reference set."""
    total_to = total_from = 0.0
    for start in range(0, f.shape[0], _EVAL_CHUNK):
        fc, bc = f[start : start + _EVAL_CHUNK], b[start : start + _EVAL_CHUNK]
        l_to, l_from = _objectives(fc, bc, v, p)
        total_to += float(l_to) * fc.shape[0]
        total_from += float(l_from) * fc.shape[0]
    return total_to / f.shape[0], total_from / f.shape[0]


def fidelity(model_features: Any, baseline_features: Any, vector: Any, maps: AffineMaps) -> tuple[float, float]:
    """(L_to, L_from) of an embedding and its maps on reference features (paper §4.2, Def. 4.1).

    Args:
        model_features: F [n, d_m]; baseline_features: B [n, N] on the same n images.
        vector: v [N] in [0, 1]; maps: the :class:`AffineMaps` learned with it (``ModelEmbedding.maps``).
    Returns:
        (mean cos(Fw + b, v⊙B), mean cos(F, (v⊙B)ŵ + b̂)) over the n rows.
    """
    f, b = _check_pair(model_features, baseline_features)
    b = b.to(f.device)
    v = torch.as_tensor(vector.detach() if isinstance(vector, torch.Tensor) else np.asarray(vector))
    v = _as_matrix(v.reshape(1, -1), "vector", min_rows=1)[0].to(f.device)
    p = {
        k: torch.as_tensor(getattr(maps, k), dtype=torch.float32, device=f.device) for k in ("w", "b", "w_hat", "b_hat")
    }
    d_m, n_base = f.shape[1], b.shape[1]
    expected = {"w": (d_m, n_base), "b": (n_base,), "w_hat": (n_base, d_m), "b_hat": (d_m,)}
    if v.shape != (n_base,) or any(tuple(p[k].shape) != s for k, s in expected.items()):
        raise InvalidInputError(
            f"vector/maps do not fit features with d_m={d_m}, N={n_base}: vector {tuple(v.shape)}, "
            + ", ".join(f"{k} {tuple(p[k].shape)}" for k in expected)
        )
    return _full_fidelity(f, b, v, p)


# ---------------------------------------------------------------- training


def embed_model(
    model_features: Any,
    baseline_features: Any,
    *,
    steps: int = 4000,
    batch_size: int = 128,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_step: int = 1000,
    tau: float = 0.01,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> ModelEmbedding:
    """Embed one model against the baseline: maximise min(L_to, L_from) (paper §4.2) with SGD.

    Args:
        model_features: F [n, d_m], the model's features on the reference set (numpy or torch, float).
        baseline_features: B [n, N], the baseline's features on the same images, same order.
        steps, batch_size, lr, momentum, weight_decay: SGD settings (paper §5.1); weight decay also
            applies to v' (the paper turns it off only for task embeddings). v' is kept in [−6τ, 6τ].
        lr_step: lr ÷10 every ``lr_step`` steps (paper: 1000 of 4000, or 3000 of 10000).
        tau: sigmoid temperature τ of v = sigmoid(v'/τ).
        seed: seeds the initialisation and the batch order (bit-reproducible on CPU).
        device: torch device; ``None`` → CUDA when available, else CPU.
        progress: show a progress bar over steps.
    Returns:
        :class:`ModelEmbedding` with the vector [N], the final L_to and L_from on all n rows, the maps.
    """
    f, b = _check_pair(model_features, baseline_features)
    steps, batch_size, lr_step = (
        _check_positive(x, k, integer=True)
        for x, k in ((steps, "steps"), (batch_size, "batch_size"), (lr_step, "lr_step"))
    )
    lr, tau = _check_positive(lr, "lr"), _check_positive(tau, "tau")
    momentum = _check_positive(momentum, "momentum", allow_zero=True)
    weight_decay = _check_positive(weight_decay, "weight_decay", allow_zero=True)
    dev = _resolve_device(device)
    f, b = f.to(dev), b.to(dev)
    (n, d_m), n_base = f.shape, b.shape[1]

    gen = torch.Generator().manual_seed(int(seed))
    init = {
        "v_prime": torch.full((n_base,), V_INIT_LOGIT * tau),
        "w": _linear_init(d_m, (d_m, n_base), gen),
        "b": _linear_init(d_m, (n_base,), gen),
        "w_hat": _linear_init(n_base, (n_base, d_m), gen),
        "b_hat": _linear_init(n_base, (d_m,), gen),
    }
    p = {k: t.to(dev).requires_grad_() for k, t in init.items()}
    order = _batch_order(n, steps, batch_size, gen).to(dev)
    groups, bufs = [(list(p.values()), weight_decay)], {}  # weight decay on v' too (paper §5.1)

    from tqdm.auto import tqdm

    for step in tqdm(range(steps), desc="embed model", disable=not progress):
        idx = order[step]
        l_to, l_from = _objectives(f[idx], b[idx], _mask(p["v_prime"], tau), p)
        (-torch.minimum(l_to, l_from)).backward()  # maximise min(L_to, L_from)
        _sgd_step(groups, bufs, _step_lr(lr, step, lr_step), momentum)
        with torch.no_grad():  # projection: no coordinate of v saturates beyond recovery (module docstring)
            p["v_prime"].clamp_(-V_INIT_LOGIT * tau, V_INIT_LOGIT * tau)

    v = _mask(p["v_prime"].detach(), tau)
    fid_to, fid_from = _full_fidelity(f, b, v, {k: t.detach() for k, t in p.items()})
    maps = AffineMaps(**{k: p[k].detach().cpu().numpy().astype(np.float32) for k in ("w", "b", "w_hat", "b_hat")})
    return ModelEmbedding(
        vector=v.cpu().numpy().astype(np.float32),
        fidelity_to=fid_to,
        fidelity_from=fid_from,
        steps=steps,
        seed=int(seed),
        tau=tau,
        maps=maps,
    )

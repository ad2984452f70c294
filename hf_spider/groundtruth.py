"""Ground-truth transfer performance of a model on a task: what every ranking is judged against.

Two protocols, as in the papers, both tuned on a validation split held out from the training split
and scored on the test split:

* :func:`linear_probe` — a logistic regression (ridge regression for real targets) on frozen
  features, its regularisation chosen on validation, then refit on the whole training split.
* :func:`fine_tune` — the whole backbone plus a new linear head trained end to end (cross-entropy,
  or squared error on standardised targets), the head starting as the linear probe of the
  pre-trained features (LP-FT), one run per learning rate of a small grid; the checkpoint
  (learning rate and epoch) with the best validation score is scored on test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .errors import InvalidInputError
from .tasks import Task, sample_per_class

__all__ = ["LINEAR_PROBE_PROTOCOL", "FineTuneResult", "GroundTruthProtocol", "ProbeResult", "fine_tune",
           "fine_tune_protocol", "linear_probe"]

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0)
DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class GroundTruthProtocol:
    """How a ground-truth score is computed: a name, a version bumped whenever the computation changes, the settings
    it runs with, and a sentence for people. Stored scores are identified by :attr:`identity`, never by the
    sentence, so rewording it changes nothing and changing the computation cannot go unnoticed."""

    name: str
    version: int
    settings: tuple[tuple[str, Any], ...]
    description: str

    @property
    def identity(self) -> dict[str, Any]:
        return {"version": self.version, "settings": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in self.settings}}


LINEAR_PROBE_PROTOCOL = GroundTruthProtocol(
    "linear-probe", 1, (("cs", DEFAULT_CS), ("alphas", DEFAULT_ALPHAS), ("validation_fraction", 0.2), ("seed", 0)),
    "linear probe: standardised frozen features, logistic regression (ridge for real targets), C (alpha) chosen on a "
    "stratified 20% validation split of train, refit on train, scored on test")


@dataclass(frozen=True)
class ProbeResult:
    """Test score of the refit probe (accuracy, or R² for regression) and the chosen regularisation."""

    score: float
    metric: str
    regularisation: float
    validation_scores: dict[float, float]


def _probe(regression: bool, strength: float, seed: int):
    if regression:
        return make_pipeline(StandardScaler(), Ridge(alpha=strength))
    return make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=2000, random_state=seed))


def _score(model, x: np.ndarray, y: np.ndarray, regression: bool) -> float:
    return float(r2_score(y, model.predict(x)) if regression else (model.predict(x) == y).mean())


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    regression: bool = False,
    grid: tuple[float, ...] | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> ProbeResult:
    """Linear-probe transfer score of frozen features.

    Args:
        train_features, test_features: ``[n, d]`` features of the task's train / test images.
        train_labels, test_labels: class ids ``[n]``, or real targets ``[n]`` / ``[n, k]`` with
            ``regression=True``.
        grid: inverse regularisation ``C`` values (classification) or ridge ``alpha`` values.
        validation_fraction: share of the training split held out to choose from ``grid``
            (stratified for classification).
    """
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise InvalidInputError("linear_probe: features and labels must have the same number of rows")
    grid = grid or (DEFAULT_ALPHAS if regression else DEFAULT_CS)
    validation = {}
    if len(grid) > 1:  # one value needs no choosing (and tiny tasks have no room for a validation split)
        x_fit, x_val, y_fit, y_val = train_test_split(
            train_features, train_labels, test_size=validation_fraction, random_state=seed,
            stratify=None if regression else train_labels,
        )
        validation = {g: _score(_probe(regression, g, seed).fit(x_fit, y_fit), x_val, y_val, regression)
                      for g in grid}
    best = max(grid, key=lambda g: validation.get(g, 0.0))  # ties: the first value of the grid
    final = _probe(regression, best, seed).fit(train_features, train_labels)
    return ProbeResult(
        score=_score(final, test_features, test_labels, regression),
        metric="r2" if regression else "accuracy",
        regularisation=best,
        validation_scores=validation,
    )


# ------------------------------------------------------------------------------------------ fine-tuning

FINE_TUNE_LRS = (1e-4, 1e-3, 1e-2)
FINE_TUNE_EPOCHS = 4
FINE_TUNE_BATCH_SIZE = 32
FINE_TUNE_WEIGHT_DECAY = 0.05
FINE_TUNE_MAX_PER_CLASS = 100
_EVAL_BATCH = 256


@dataclass(frozen=True)
class FineTuneResult:
    """Test score (accuracy, or R² for regression) of the best-validation checkpoint.

    Attributes:
        lr, epoch: the learning rate and epoch (1-based) of that checkpoint.
        validation_scores: the best validation score reached with each learning rate.
    """

    score: float
    metric: str
    lr: float
    epoch: int
    validation_scores: dict[float, float]


def fine_tune_protocol(
    lrs: Sequence[float] = FINE_TUNE_LRS,
    epochs: int = FINE_TUNE_EPOCHS,
    batch_size: int = FINE_TUNE_BATCH_SIZE,
    max_train_per_class: int | None = FINE_TUNE_MAX_PER_CLASS,
) -> GroundTruthProtocol:
    """The protocol of :func:`fine_tune` with these settings."""
    cap = f"at most {max_train_per_class} training images per class (seeded), " if max_train_per_class else ""
    settings = (("lrs", tuple(lrs)), ("epochs", epochs), ("batch_size", batch_size),
                ("max_train_per_class", max_train_per_class), ("weight_decay", FINE_TUNE_WEIGHT_DECAY),
                ("validation_fraction", 0.2), ("seed", 0))
    return GroundTruthProtocol("fine-tune", 1, settings, (
        f"fine-tuning: {cap}a stratified 20% validation split of train; the whole backbone + a new linear head "
        "that starts as the linear probe of the pre-trained features on the fitting rows (LP-FT: standardised "
        "features, logistic regression C=1 / ridge alpha=1), the model's own eval preprocessing, no "
        f"augmentation, BatchNorm statistics re-estimated on the fitting rows first (AdaBN); AdamW (weight decay "
        f"{FINE_TUNE_WEIGHT_DECAY}), batch {batch_size}, {epochs} epochs, cosine schedule, for each lr in "
        f"{tuple(lrs)}; cross-entropy (squared error on standardised targets for real targets); the checkpoint "
        "(lr, epoch) with the best validation accuracy (R²) is scored on test"))


def fine_tune(
    model_id: str,
    train_task: Task,
    test_task: Task,
    *,
    lrs: Sequence[float] = FINE_TUNE_LRS,
    epochs: int = FINE_TUNE_EPOCHS,
    batch_size: int = FINE_TUNE_BATCH_SIZE,
    max_train_per_class: int | None = FINE_TUNE_MAX_PER_CLASS,
    validation_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> FineTuneResult:
    """Fine-tuning transfer score of a model: backbone and a new linear head trained end to end.

    The BatchNorm statistics are first re-estimated on the fitting rows (AdaBN) and the head starts as
    the linear probe of the resulting features (LP-FT), so every run starts where a linear probe ends;
    each learning rate then trains from the same weights, and the best validation checkpoint is tested.

    Args:
        model_id: a timm or transformers model :func:`hf_spider.backbones.load_backbone` loads (ONNX
            models cannot be trained).
        train_task, test_task: the target's splits; both classification or both regression.
        lrs: learning rates tried (one training run each, from the same pre-trained weights).
        epochs, batch_size: per run; the learning rate follows a cosine from ``lr`` to 0.
        max_train_per_class: cap the training split per class (seeded) to bound the cost; ``None``
            keeps it whole (regression targets are never capped).
        validation_fraction: share of the training split held out to choose the checkpoint
            (stratified for classification, as in :func:`linear_probe`).
        device: ``None`` → CUDA when available, else CPU.
    """
    from .backbones import TorchBackbone, load_backbone

    if train_task.regression != test_task.regression:
        raise InvalidInputError("fine_tune: train and test tasks must both be classification or both regression")
    if not lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in lrs) or epochs < 1 or batch_size < 2:
        raise InvalidInputError(f"fine_tune: need positive lrs, epochs >= 1 and batch_size >= 2; got "
                                f"lrs={tuple(lrs)}, epochs={epochs}, batch_size={batch_size}")
    regression = train_task.regression
    if max_train_per_class is not None and not regression:
        train_task = train_task.select(sample_per_class(train_task.labels, max_per_class=max_train_per_class,
                                                        seed=seed))
    backbone = load_backbone(model_id, device=device)
    if not isinstance(backbone, TorchBackbone):
        raise InvalidInputError(f"fine_tune: {model_id} is an {backbone.library} model, which cannot be trained; "
                                "rank it against the linear-probe ground truth")
    x, x_test = _Pixels(backbone.transform, train_task), _Pixels(backbone.transform, test_task)
    y, y_test = _targets(train_task.labels, regression), _targets(test_task.labels, regression)
    fit, val = train_test_split(np.arange(len(y)), test_size=validation_fraction, random_state=seed,
                                stratify=None if regression else train_task.labels)
    fit, val = torch.from_numpy(fit), torch.from_numpy(val)
    if regression:  # standardise with the fitting rows' statistics (R² does not change)
        mean, std = y[fit].mean(0), y[fit].std(0).clamp_min(1e-12)
        y, y_test = (y - mean) / std, (y_test - mean) / std
    outputs = (1 if y.ndim == 1 else y.shape[1]) if regression else train_task.num_classes

    _adapt_batchnorm(backbone, x.subset(fit))
    pretrained = _state(backbone.model)
    probe = _probe(regression, 1.0, seed).fit(_features(backbone, x.subset(fit)).cpu().numpy(), y[fit].numpy())
    validation = dict.fromkeys(lrs, -math.inf)
    best_score, best = -math.inf, None  # best: (lr, epoch, backbone state, head state)
    for lr in lrs:
        backbone.model.load_state_dict(pretrained)
        head = _Head(probe, outputs).to(backbone.device)
        gen = torch.Generator().manual_seed(seed)
        for epoch in _train(backbone, head, x.subset(fit), y[fit], lr=lr, epochs=epochs, batch_size=batch_size,
                            regression=regression, gen=gen):
            score = _evaluate(backbone, head, x.subset(val), y[val], regression)
            validation[lr] = max(validation[lr], score)
            if score > best_score:  # ties: the earlier learning rate and epoch
                best_score, best = score, (lr, epoch, _state(backbone.model), _state(head))
    if best is None:
        raise InvalidInputError(f"fine_tune: {model_id} diverged (non-finite outputs) at every lr in {tuple(lrs)}")
    lr, epoch, backbone_state, head_state = best
    backbone.model.load_state_dict(backbone_state)
    head.load_state_dict(head_state)
    return FineTuneResult(score=_evaluate(backbone, head, x_test, y_test, regression),
                          metric="r2" if regression else "accuracy", lr=lr, epoch=epoch,
                          validation_scores=validation)


class _Pixels(torch.utils.data.Dataset):
    """The images of ``task`` (its ``rows``) through the model's own (eval) preprocessing, decoded a batch at a time:
    fine-tuning holds one batch of pixels, not the split (6 GB for 100 classes at 224 px)."""

    def __init__(self, transform, task: Task, rows: torch.Tensor | None = None) -> None:
        self.transform, self.task = transform, task
        self.rows = rows if rows is not None else torch.arange(len(task))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:  # [3, H, W]
        return self.transform(self.task.image(int(self.rows[i])))

    def subset(self, rows: torch.Tensor) -> _Pixels:
        return _Pixels(self.transform, self.task, self.rows[rows])

    def batches(self, order: Sequence[torch.Tensor]) -> torch.utils.data.DataLoader:
        """``[b, 3, H, W]`` batches of the rows of ``order``, one batch per entry, in order."""
        return torch.utils.data.DataLoader(self, batch_sampler=[b.tolist() for b in order], num_workers=0)

    def in_order(self, size: int) -> torch.utils.data.DataLoader:
        return self.batches(torch.arange(len(self)).split(size))


def _targets(labels: np.ndarray, regression: bool) -> torch.Tensor:
    return torch.as_tensor(labels, dtype=torch.float32 if regression else torch.int64)


class _Head(torch.nn.Module):
    """The new head, starting as the linear probe of the pre-trained features (LP-FT, Kumar et al. 2022):
    the probe's standardisation (fixed buffers) and its linear map (trained from there on).

    From a random head, the few steps of our budget mostly train the head: the fine-tuned ViTs of the zoo
    ended far below their own linear probe (digits: 0.15-0.58 against 0.63-0.85). From the probe, every run
    starts where the linear probe ends and the grid decides how far the backbone should move.
    """

    def __init__(self, probe, outputs: int) -> None:
        super().__init__()
        scaler, linear = probe[0], probe[-1]
        self.register_buffer("mean", torch.as_tensor(scaler.mean_, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scaler.scale_, dtype=torch.float32))
        self.linear = torch.nn.Linear(len(scaler.mean_), outputs)
        weight, bias = np.atleast_2d(linear.coef_), np.atleast_1d(linear.intercept_)
        if hasattr(linear, "classes_"):  # rows of the classes seen by the probe; binary: one row, class 1
            rows = linear.classes_ if len(weight) > 1 else linear.classes_[1:]
            weight, bias = _scatter_rows(weight, rows, outputs), _scatter_rows(bias[:, None], rows, outputs)[:, 0]
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.scale)


def _scatter_rows(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``values`` placed at ``rows`` of an ``[n, ...]`` array of zeros (classes the probe never saw stay 0)."""
    out = np.zeros((n, *values.shape[1:]), dtype=np.float64)
    out[np.asarray(rows, dtype=np.int64)] = values
    return out


def _loss(out: torch.Tensor, y: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return torch.nn.functional.mse_loss(out, y.reshape(out.shape))
    return torch.nn.functional.cross_entropy(out, y)


@torch.no_grad()
def _adapt_batchnorm(backbone, x: _Pixels) -> None:
    """Re-estimate the BatchNorm statistics on ``x`` (AdaBN, Li et al. 2016): one pass in train mode with
    cumulative averages. Fine-tuning in train mode moves them to the target data anyway, within a few steps
    and whatever the learning rate; the probe head must be fitted on features with the statistics it will
    see (from the source statistics, zoo ResNets on digits fell from their probe's accuracy to chance within
    an epoch at lr 1e-4)."""
    norms = [m for m in backbone.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the pass
    backbone.model.train()
    for chunk in x.in_order(_EVAL_BATCH):
        backbone.forward(chunk.to(backbone.device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def _train(backbone, head: _Head, x: _Pixels, y: torch.Tensor, *, lr: float, epochs: int,
           batch_size: int, regression: bool, gen: torch.Generator):
    """AdamW with a cosine schedule over shuffled mini-batches; yields the epoch number after each epoch.

    The last incomplete batch of an epoch is dropped (a batch of one breaks BatchNorm); the shuffle
    differs every epoch, so every row is used.
    """
    usable = len(y) - len(y) % batch_size if len(y) >= batch_size else len(y)
    params = [*backbone.model.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=FINE_TUNE_WEIGHT_DECAY)
    total = epochs * math.ceil(usable / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    for epoch in range(1, epochs + 1):
        backbone.model.train()
        order = torch.randperm(len(y), generator=gen)[:usable].split(batch_size)
        for rows, pixels in zip(order, x.batches(order), strict=True):
            out = head(backbone.forward(pixels.to(backbone.device))[0])
            loss = _loss(out, y[rows].to(backbone.device), regression)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        yield epoch


@torch.inference_mode()
def _features(backbone, x: _Pixels) -> torch.Tensor:
    """The backbone's features of ``x`` (eval mode), on its device."""
    backbone.model.eval()
    return torch.cat([backbone.forward(chunk.to(backbone.device))[0].float() for chunk in x.in_order(_EVAL_BATCH)])


@torch.inference_mode()
def _evaluate(backbone, head: _Head, x: _Pixels, y: torch.Tensor, regression: bool) -> float:
    """Accuracy, or R² (averaged over targets), of backbone + head on ``x``; -inf when outputs are not finite."""
    out = head(_features(backbone, x)).cpu()
    if not torch.isfinite(out).all():  # a diverged run never wins
        return -math.inf
    if regression:
        return float(r2_score(y.numpy(), out.reshape(y.shape).numpy()))
    return float((out.argmax(1) == y).float().mean())


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}

"""Training Model Spider (SPEC §4.3): sampled tasks, Copeland labels, ListMLE, validation-chosen k.

The data flow is feature-only. A *pool* holds every zoo model's features (and source-head
probabilities) and the general encoder's features on a set of labelled images, each extracted once
(and cached by :func:`~hf_spider.features.extract_features`). A sampled task is a set of pool rows
with its own labels, so scoring every zoo model on it, building its tokens and training on it never
run a network again.

The pool's images are split per class into a training part and a validation part: training tasks
are labelled with the Copeland aggregate of forward-based scores (cheap, approximate), validation
tasks with the real objective, each model's linear-probe accuracy, which picks the supervision
scores and the default re-ranking budget k — never the test targets.

The pool's datasets are classification data; **decision:** regression tasks are made from them by
regressing an image statistic (:data:`IMAGE_ATTRIBUTES`: luminance, contrast, saturation and two
colour-opponent means), so that the ranker also learns what real targets ask of a model. They are
labelled by every score that handles real targets and validated by a ridge probe's R².
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import evaluation, scores
from ..backbones import load_backbone
from ..constants import cache_root
from ..errors import InvalidInputError
from ..features import Features, extract_features
from ..rankagg import copeland
from ..tasks import Task
from .model import SpiderRanker, listmle_loss
from .predict import one_thread, order_to_scores, rank_models
from .tokens import REGRESSION_BINS, class_means, regression_bins

__all__ = ["IMAGE_ATTRIBUTES", "Pool", "SampledTask", "TrainConfig", "build_pool", "choose_label_scores",
           "image_attributes", "label_tasks", "probe_ground_truth", "sample_tasks", "train", "validate"]

# Scores whose Copeland aggregates are candidate supervisions (cheap on tasks of a few thousand rows).
CANDIDATE_LABEL_SCORES = ("logme", "knn", "h_score_shrink", "leep", "nce", "pactran", "lfc", "sfda", "gbc")
MAX_DRAWS_PER_TASK = 100  # sample_tasks gives up (with a reason) on a pool that yields almost no tasks
IMAGE_ATTRIBUTES = ("luminance", "contrast", "saturation", "red_green", "blue_yellow")


def image_attributes(task: Task) -> np.ndarray:
    """``[n, 5]`` per-image statistics (:data:`IMAGE_ATTRIBUTES`) of RGB in [0, 1], Y = 0.299R + 0.587G + 0.114B:
    mean Y, std of Y, mean of max(RGB) − min(RGB), mean of R − G, mean of B − (R + G) / 2."""
    out = np.empty((len(task), len(IMAGE_ATTRIBUTES)), dtype=np.float32)
    for i in range(len(task)):
        rgb = np.asarray(task.image(i), dtype=np.float32).reshape(-1, 3) / 255.0
        y = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        r, g, b = rgb.T
        out[i] = (y.mean(), y.std(), (rgb.max(1) - rgb.min(1)).mean(), (r - g).mean(), (b - (r + g) / 2).mean())
    return out


@dataclass
class Pool:
    """Features of every zoo model and of the general encoder on the same labelled images.

    ``labels`` are pool-wide class ids (dataset-qualified), ``dataset`` the source dataset of each row,
    ``validation`` marks the rows kept for validation tasks.
    """

    models: list[str]
    features: list[np.ndarray]  # per model [n, d_m]
    source_probs: list[np.ndarray | None]  # per model [n, C_s] or None
    encoder_features: np.ndarray  # [n, e]
    labels: np.ndarray  # [n]
    dataset: np.ndarray  # [n]
    validation: np.ndarray  # [n] bool
    attributes: np.ndarray | None = None  # [n, len(IMAGE_ATTRIBUTES)]: regression targets

    @property
    def widths(self) -> list[int]:
        return sorted({f.shape[1] for f in self.features})


@dataclass
class SampledTask:
    """Pool rows and their labels (``0..C-1``, or real targets with ``regression``); ``scores`` [K, M] of the
    supervision scores once labelled."""

    rows: np.ndarray
    labels: np.ndarray
    regression: bool = False
    scores: np.ndarray | None = None
    ground_truth: np.ndarray | None = None  # [M] linear-probe accuracy (validation tasks)


def build_pool(zoo: Sequence[str], names: Sequence[str], datasets: Sequence[Task], encoder: str, *,
               validation_fraction: float = 0.3, seed: int = 0, progress: bool = True) -> Pool:
    """Extract (or read from the cache) every model's and the encoder's features on ``datasets``."""
    if len(zoo) != len(names):
        raise InvalidInputError("zoo and names must have the same length")
    if any(task.regression for task in datasets):
        raise InvalidInputError("the training pool needs classification datasets")
    rng = np.random.default_rng(seed)

    def features_of(model_id: str, *, source_probs: bool) -> list[Features]:
        backbone = load_backbone(model_id)  # once per model; 32x32 images decode faster than workers start
        source_probs = source_probs and backbone.num_source_classes is not None
        return [extract_features(backbone, task, with_source_probs=source_probs, num_workers=0, progress=progress)
                for task in datasets]

    per_model = [features_of(m, source_probs=True) for m in _progress(zoo, "zoo features on the pool", progress)]
    offsets = np.cumsum([0] + [task.num_classes for task in datasets[:-1]])
    return Pool(
        models=list(names),
        features=[np.concatenate([f.features for f in fs]) for fs in per_model],
        source_probs=[None if any(f.source_probs is None for f in fs) else np.concatenate([f.source_probs for f in fs])
                      for fs in per_model],
        encoder_features=np.concatenate([f.features for f in features_of(encoder, source_probs=False)]),
        labels=np.concatenate([task.labels + off for task, off in zip(datasets, offsets, strict=True)]),
        dataset=np.concatenate([np.full(len(task), j) for j, task in enumerate(datasets)]),
        validation=np.concatenate([_stratified_mask(task.labels, validation_fraction, rng) for task in datasets]),
        attributes=np.concatenate([image_attributes(task) for task in datasets]),
    )


def _stratified_mask(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        mask[rng.choice(rows, size=round(fraction * len(rows)), replace=False)] = True
    return mask


def sample_tasks(pool: Pool, count: int, *, validation: bool, datasets_per_task: tuple[int, int] = (1, 4),
                 max_classes: int = 100, max_per_class: int = 50, min_per_class: int = 4,
                 regression_fraction: float = 0.0, seed: int = 0) -> list[SampledTask]:
    """``count`` tasks: a mix of 1–4 pool datasets, ≤ ``max_classes`` classes, ≤ ``max_per_class`` each.

    The paper mixes 2–4 datasets; single-dataset tasks are added (**decision**) because the tasks a
    user brings are usually one dataset. A ``regression_fraction`` of the tasks regress one of the
    pool's image attributes instead, on at most ``max_classes * max_per_class`` rows of the mix and
    at least ``min_per_class`` per quantile bin.
    """
    if regression_fraction > 0 and pool.attributes is None:
        raise InvalidInputError("regression tasks need the pool's image attributes (build_pool computes them)")
    rng = np.random.default_rng(seed)
    allowed = pool.validation if validation else ~pool.validation
    n_datasets = int(pool.dataset.max()) + 1
    tasks: list[SampledTask] = []
    draws = 0
    while len(tasks) < count:
        draws += 1
        if draws > MAX_DRAWS_PER_TASK * count:
            part = "validation" if validation else "training"
            raise InvalidInputError(
                f"only {len(tasks)} of {count} {part} tasks in {draws - 1} draws: few mixes of the pool's {part} "
                f"part have 2 classes with {min_per_class}+ images each"
                + (f" or {min_per_class * REGRESSION_BINS}+ images with a varying attribute"
                   if regression_fraction > 0 else ""))
        k = rng.integers(datasets_per_task[0], min(datasets_per_task[1], n_datasets) + 1)
        chosen = rng.choice(n_datasets, size=k, replace=False)
        if rng.random() < regression_fraction:
            members = np.flatnonzero(allowed & np.isin(pool.dataset, chosen))
            rows = np.sort(rng.choice(members, size=min(len(members), max_classes * max_per_class), replace=False))
            varying = np.flatnonzero(pool.attributes[rows].std(axis=0) > 1e-3)  # grey images have no colour
            if len(varying) and len(rows) >= min_per_class * REGRESSION_BINS:  # bins play the classes' part
                tasks.append(SampledTask(rows, pool.attributes[rows, rng.choice(varying)], regression=True))
            continue
        classes = np.unique(pool.labels[allowed & np.isin(pool.dataset, chosen)])
        classes = rng.choice(classes, size=min(len(classes), max_classes), replace=False)
        rows, labels = [], []
        for c in np.sort(classes):
            members = np.flatnonzero(allowed & (pool.labels == c))
            if len(members) < min_per_class:
                continue
            take = rng.choice(members, size=min(len(members), max_per_class), replace=False)
            rows.append(take)
            labels.append(np.full(len(take), len(rows) - 1))
        if len(rows) >= 2:
            tasks.append(SampledTask(np.concatenate(rows), np.concatenate(labels)))
    return tasks


_MEMO_VERSION = 2  # bumped when a memoised score changes definition (2: LogME with the official guards)


class ScoreMemo:
    """Scores memoised by a digest of (what was computed, the labels, the features on a task's rows), so re-training
    on the same pool (another recipe, a model left out) recomputes nothing.

    In memory, or backed by the JSON-lines file ``path``: :meth:`flush` appends the values computed since the last
    flush, so an interrupted run keeps what it computed; a line cut short by an interruption is ignored when read.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.values: dict[str, float] = {}
        self._new: dict[str, float] = {}
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    key, value = json.loads(line)
                    self.values[str(key)] = float(value)
                except (ValueError, TypeError):
                    continue

    @classmethod
    def in_cache(cls) -> ScoreMemo:
        """The memo in hf_spider's cache (``$HF_SPIDER_CACHE/spider/``)."""
        return cls(cache_root() / "spider" / f"memo-{_MEMO_VERSION}.jsonl")

    def get(self, what: str, features: np.ndarray, labels: np.ndarray, compute: Callable[[], float]) -> float:
        digest = hashlib.sha256(labels.tobytes())
        digest.update(np.ascontiguousarray(features).tobytes())
        key = f"{what}:{digest.hexdigest()}"
        if key not in self.values:
            self.values[key] = self._new[key] = float(compute())
        return self.values[key]

    def flush(self) -> None:
        if self.path is None or not self._new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:
            torn = f.tell() > 0 and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n"  # an interrupted append
            f.write(("\n" if torn else "").encode() + "".join(
                json.dumps([key, value]) + "\n" for key, value in self._new.items()).encode())
            f.flush()
            os.fsync(f.fileno())
        self._new.clear()


def label_tasks(pool: Pool, tasks: Sequence[SampledTask], score_names: Sequence[str], *,
                memo: ScoreMemo | None = None, progress: bool = True) -> None:
    """Fill each task's ``scores`` [K, M]: every supervision score of every zoo model (features only), through
    ``memo`` (default: one in memory), flushed after every task.

    Regression tasks get every score that handles real targets instead of ``score_names``.
    """
    memo = memo if memo is not None else ScoreMemo()
    for task in _progress(tasks, "scoring zoo on sampled tasks", progress):
        names = scores.available(regression=True) if task.regression else score_names
        task.scores = np.array([[
            memo.get(f"{name}:regression" if task.regression else name, pool.features[m][task.rows], task.labels,
                     lambda name=name, m=m, t=task: scores.score(
                         name, features=pool.features[m][t.rows], labels=t.labels, regression=t.regression,
                         source_probs=None if pool.source_probs[m] is None else pool.source_probs[m][t.rows]))
            for m in range(len(pool.models))] for name in names])
        memo.flush()  # after every task: an interrupted run keeps what it computed


def probe_ground_truth(pool: Pool, tasks: Sequence[SampledTask], *, seed: int = 0, memo: ScoreMemo | None = None,
                       progress: bool = True) -> None:
    """Fill each task's ``ground_truth``: every model's linear-probe accuracy (R² for regression) on a
    half/half split (stratified by class, or by quantile bin of the target), through ``memo`` as
    :func:`label_tasks`.

    The probe is a ridge classifier (ridge regression) on standardised features, in closed form: the
    logistic probe of the benchmark's ground truth costs minutes per task on a CPU, and validation
    needs hundreds.
    """
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def probe(f: np.ndarray, y: np.ndarray, test: np.ndarray, regression: bool) -> float:
        head = Ridge(alpha=1.0) if regression else RidgeClassifier(alpha=1.0)
        model = make_pipeline(StandardScaler(), head).fit(f[~test], y[~test])
        return float(model.score(f[test], y[test]))

    memo = memo if memo is not None else ScoreMemo()
    rng = np.random.default_rng(seed)
    for task in _progress(tasks, "linear probes on validation tasks", progress):
        test = _stratified_mask(regression_bins(task.labels) if task.regression else task.labels, 0.5, rng)
        split = hashlib.sha256(np.packbits(test).tobytes()).hexdigest()[:16]  # a task's split depends on its turn
        task.ground_truth = np.array([
            memo.get(f"ridge-probe{seed}-{split}", f[task.rows], task.labels,
                     lambda f=f, t=task, test=test: probe(f[t.rows], t.labels, test, t.regression))
            for f in pool.features])
        memo.flush()


def choose_label_scores(validation_tasks: Sequence[SampledTask], names: Sequence[str], *,
                        sizes: Sequence[int] = (2, 3, 4)) -> tuple[tuple[str, ...], dict[tuple[str, ...], float]]:
    """The subset of ``names`` whose Copeland aggregate best matches the validation tasks' ground truth.

    Each classification task's ``scores`` rows follow ``names`` (regression tasks, whose supervision
    is fixed, are left out). Returns the best subset and the mean weighted τ of every subset tried
    (singletons too, for reference); ties go to the smaller subset.
    """
    validation_tasks = [t for t in validation_tasks if not t.regression]
    if not validation_tasks:
        raise InvalidInputError("no classification validation task to choose the supervision on: the pool's "
                                "validation part needs classes with 4+ images (raise the images per class)")
    quality = {}
    for size in (1, *sizes):
        for subset in itertools.combinations(range(len(names)), size):
            taus = [evaluation.weighted_tau(t.ground_truth, copeland(t.scores[list(subset)])[0])
                    for t in validation_tasks]
            quality[tuple(names[i] for i in subset)] = float(np.mean(taus))
    best = max((s for s in quality if len(s) > 1), key=lambda s: (quality[s], -len(s)))
    return best, quality


@dataclass
class TrainConfig:
    """Optimisation of SPEC §4.3 (official: Adam 2.5e-4, cosine to 5e-6, 30 epochs, 16 tasks a batch)."""

    epochs: int = 30
    batch_tasks: int = 16
    lr: float = 2.5e-4
    min_lr: float = 5e-6
    max_specific: int = 10
    seed: int = 0


def _tokens(pool: Pool, task: SampledTask) -> torch.Tensor:
    return class_means(pool.encoder_features[task.rows], task.labels, regression=task.regression)


def _specific(pool: Pool, task: SampledTask, model: int) -> torch.Tensor:
    return class_means(pool.features[model][task.rows], task.labels, regression=task.regression)


@one_thread()
def train(ranker: SpiderRanker, pool: Pool, tasks: Sequence[SampledTask], *, embeddings: torch.Tensor | None = None,
          config: TrainConfig | None = None, progress: bool = True) -> list[float]:
    """Fit ``ranker`` to the Copeland order of each task's ``scores``; returns the mean loss per epoch.

    Each task draws k ∈ [0, ``max_specific``] random models whose PTM-specific tokens replace the
    general ones, so the same ranker scores with and without forward passes of candidates.
    """
    if any(t.scores is None for t in tasks):
        raise InvalidInputError("label the training tasks first (label_tasks)")
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    general = [_tokens(pool, t) for t in tasks]
    orders = [torch.as_tensor(copeland(t.scores)[1]) for t in tasks]
    optimiser = torch.optim.Adam(ranker.parameters(), lr=config.lr)
    steps = config.epochs * math.ceil(len(tasks) / config.batch_tasks)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps, eta_min=config.min_lr)
    history = []
    ranker.train()
    for _ in _progress(range(config.epochs), "training the ranker", progress):
        total = 0.0
        for batch in np.array_split(rng.permutation(len(tasks)), math.ceil(len(tasks) / config.batch_tasks)):
            theta = ranker.model_tokens(models=pool.models, embeddings=embeddings)
            loss = 0.0
            for i in batch:
                k = int(rng.integers(0, config.max_specific + 1))
                chosen = rng.choice(len(pool.models), size=min(k, len(pool.models)), replace=False)
                specific = {int(m): _specific(pool, tasks[i], int(m)) for m in chosen}
                loss = loss + listmle_loss(ranker(general[i], theta, specific, regression=tasks[i].regression),
                                           orders[i])
            loss = loss / len(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        history.append(total / len(tasks))
    ranker.eval()
    return history


@one_thread()
def validate(ranker: SpiderRanker, pool: Pool, tasks: Sequence[SampledTask], *, embeddings: torch.Tensor | None = None,
             ks: Sequence[int] = range(11)) -> dict[int, float]:
    """Mean weighted τ (SFDA convention) against each task's ``ground_truth`` for each re-ranking budget k."""
    if any(t.ground_truth is None for t in tasks):
        raise InvalidInputError("validation tasks need their linear-probe ground truth (probe_ground_truth)")
    taus: dict[int, list[float]] = {k: [] for k in ks}
    for task in tasks:
        for k in ks:
            ranking = rank_models(ranker, pool.encoder_features[task.rows], task.labels, models=pool.models,
                                  embeddings=embeddings, regression=task.regression, rerank=k,
                                  candidate_features=lambda i, rows=task.rows: pool.features[i][rows])
            taus[k].append(evaluation.weighted_tau(task.ground_truth, order_to_scores(ranking.order)))
    return {k: float(np.mean(v)) for k, v in taus.items()}


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description)


"""Train a Model Spider ranker on a zoo end to end, and publish it with its model card.

    ranker, report = train_ranker(zoo, pool_datasets, RankerRecipe(encoder=..., embedder=EmbedderSetup(...)))
    ranker.push_to_hub("my-org/spider-ranker", model_card_kwargs={"repo_id": "my-org/spider-ranker"})

Every step is features-only once the zoo's features on the pool are cached (SPEC §4.3): sample
training and validation tasks, label training tasks with the Copeland aggregate of forward-based
scores, give validation tasks linear-probe ground truth, pick the supervision scores and the
re-ranking budget k on validation, train with ListMLE.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import scores
from ..constants import MICRO_ZOO, MICRO_ZOO_BASELINE, MICRO_ZOO_ORG, OFFLINE_POOL
from ..embedder.zoo import EmbedderSetup, embed_zoo
from ..errors import InvalidInputError
from ..rankagg import copeland
from ..tasks import Task
from .model import TOKEN_SOURCES, SpiderRanker
from .training import (
    CANDIDATE_LABEL_SCORES,
    SampledTask,
    ScoreMemo,
    TrainConfig,
    build_pool,
    choose_label_scores,
    label_tasks,
    probe_ground_truth,
    sample_tasks,
    train,
    validate,
)

__all__ = ["RankerRecipe", "TrainingInputs", "TrainingReport", "train_ranker", "training_inputs"]

RERANK_TOLERANCE = 0.005  # a forward pass per candidate is not worth less τ than this


@dataclass
class TrainingInputs:
    """What ``train_ranker`` learns from: the zoo, the names the ranker records for it, the pool of labelled datasets,
    the general encoder and the embedder's setup for embedding tokens (None: no reference set)."""

    models: list[str]
    names: list[str]
    datasets: list[Task]
    encoder: str
    embedder: EmbedderSetup | None


def training_inputs(*, zoo: Sequence[str] | None = None, exclude: Sequence[str] = (), pool: Sequence[str] | None = None,
                    data_root: str | os.PathLike[str] | None = None, encoder: str | None = None,
                    reference: str | None = None, names_org: str = MICRO_ZOO_ORG) -> TrainingInputs:
    """The ranker's inputs with their defaults: the bundled micro zoo and its ``resnet18-all-mix`` encoder when no
    ``zoo`` / ``encoder`` is given; the offline data pack's splits (:data:`~hf_spider.constants.OFFLINE_POOL`) under
    ``data_root`` when no ``pool`` is (a pool name under ``data_root`` is that folder), and its ``reference-mix`` as
    the embedder's reference set. A model given as a folder is recorded as ``names_org/<folder name>``."""
    from ..backbones import expand_model_folders, model_key
    from ..tasks import load_task, parse_dataset_spec

    root = Path(data_root) if data_root is not None else None
    if root is None and not pool:
        raise InvalidInputError("train-ranker needs a pool of labelled datasets: --pool DATASET[:split] ... (Hub ids "
                                "or folders), or --data-root FOLDER (or HF_SPIDER_OFFLINE_DATA) holding the offline "
                                "src-* and aux-* folders")
    bundled = MICRO_ZOO / "models"
    models = [m for m in expand_model_folders(list(zoo or [str(bundled)])) if model_key(m) not in set(exclude)]
    encoder = encoder or str(MICRO_ZOO_BASELINE)
    if reference is None and root is not None:
        reference = str(root / "reference-mix")
    datasets = []
    for entry in pool or OFFLINE_POOL:
        name, split = parse_dataset_spec(entry)
        datasets.append(load_task(str(root / name) if root is not None and (root / name).is_dir() else name,
                                  split=split))
    embedder = None if reference is None else EmbedderSetup(encoder, *parse_dataset_spec(reference))
    names = [f"{names_org}/{model_key(m)}" if Path(m).is_dir() else m for m in models]
    return TrainingInputs(models, names, datasets, encoder, embedder)


@dataclass
class RankerRecipe:
    """What to train on and how. Task sizes are below the paper's (100 classes, 50 per class) by
    default so that labelling fits a CPU budget; pass the paper's values on a bigger machine."""

    encoder: str
    embedder: EmbedderSetup | None = None  # needed for embedding model tokens
    token_source: str = "embedding"
    train_tasks: int = 300
    validation_tasks: int = 30
    max_classes: int = 50
    max_per_class: int = 30
    regression_fraction: float = 0.2  # tasks regressing an image attribute (see training.IMAGE_ATTRIBUTES)
    label_candidates: tuple[str, ...] = CANDIDATE_LABEL_SCORES[:5]
    dim: int = 128
    training: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0


@dataclass
class TrainingReport:
    """What training measured: seconds per phase, the chosen supervision and budget, validation τ."""

    models: list[str]
    pool: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    label_scores: list[str] = field(default_factory=list)
    label_quality: dict[str, float] = field(default_factory=dict)  # "logme+knn" -> validation τ of the aggregate
    validation_tau: dict[int, float] = field(default_factory=dict)  # k -> mean τ of the trained ranker
    default_rerank: int = 0
    mean_rank: dict[str, float] = field(default_factory=dict)  # model -> mean position in the training labels (0 best)
    loss: list[float] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def _timed(report: TrainingReport, phase: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    report.seconds[phase] = round(time.perf_counter() - start, 2)


def train_ranker(zoo: Sequence[str], pool: Sequence[Task], recipe: RankerRecipe, *, names: Sequence[str] | None = None,
                 memo: ScoreMemo | None = None, progress: bool = True) -> tuple[SpiderRanker, TrainingReport]:
    """Train a ranker for ``zoo`` (model ids or folders) on tasks sampled from the ``pool`` datasets.

    ``names`` are the ids the ranker records for the zoo models (default: ``zoo``), e.g. the Hub ids
    of local folders once published. ``memo`` keeps the supervision scores and probes computed on the sampled
    tasks (default: :meth:`ScoreMemo.in_cache`, so a re-run recomputes none of them).
    """
    memo = memo if memo is not None else ScoreMemo.in_cache()
    names = list(names or zoo)
    if recipe.token_source not in TOKEN_SOURCES:  # before hours of features and labels, not after
        raise InvalidInputError(f"token_source must be one of {TOKEN_SOURCES}, got {recipe.token_source!r}")
    if recipe.token_source == "embedding" and recipe.embedder is None:
        raise InvalidInputError("embedding model tokens need the embedder setup (baseline and reference set)")
    report = TrainingReport(models=names, pool=[t.name for t in pool], recipe=_recipe_json(recipe))
    with _timed(report, "features"):
        data = build_pool(zoo, names, pool, recipe.encoder, seed=recipe.seed, progress=progress)
    embeddings = None
    if recipe.token_source == "embedding":
        with _timed(report, "model_embeddings"):
            vectors = embed_zoo(zoo, recipe.embedder, seed=recipe.seed, progress=progress)
            embeddings = torch.as_tensor(np.stack([vectors[m] for m in zoo]))
    sizes = {"max_classes": recipe.max_classes, "max_per_class": recipe.max_per_class,
             "regression_fraction": recipe.regression_fraction}
    candidates = _label_candidates(recipe.label_candidates, data.source_probs)
    validation = sample_tasks(data, recipe.validation_tasks, validation=True, seed=recipe.seed + 1, **sizes)
    training = sample_tasks(data, recipe.train_tasks, validation=False, seed=recipe.seed, **sizes)
    with _timed(report, "validation_labels"):
        label_tasks(data, validation, candidates, memo=memo, progress=progress)
        probe_ground_truth(data, validation, seed=recipe.seed, memo=memo, progress=progress)
    chosen, quality = choose_label_scores(validation, candidates)
    report.label_scores = list(chosen)
    report.label_quality = {"+".join(k): round(v, 4) for k, v in sorted(quality.items(), key=lambda kv: -kv[1])}
    with _timed(report, "training_labels"):
        label_tasks(data, training, chosen, memo=memo, progress=progress)
    report.mean_rank = _mean_rank(names, training)
    torch.manual_seed(recipe.seed)  # the initial weights: from the recipe, not from whatever ran before
    ranker = SpiderRanker(encoder=_recorded_id(recipe.encoder, zoo, names),
                          encoder_dim=data.encoder_features.shape[1], dim=recipe.dim,
                          token_source=recipe.token_source, models=names,
                          baseline=_recorded_id(recipe.embedder.baseline, zoo, names) if recipe.embedder else None,
                          embedding_dim=None if embeddings is None else embeddings.shape[1],
                          specific_widths=data.widths, label_scores=chosen)
    with _timed(report, "training"):
        report.loss = [round(v, 4) for v in train(ranker, data, training, embeddings=embeddings,
                                                  config=recipe.training, progress=progress)]
    with _timed(report, "validation"):
        report.validation_tau = {k: round(v, 4) for k, v in validate(ranker, data, validation,
                                                                     embeddings=embeddings).items()}
    best = max(report.validation_tau.values())  # the cheapest budget within 0.005 τ of the best
    report.default_rerank = min(k for k, v in report.validation_tau.items() if v >= best - RERANK_TOLERANCE)
    ranker.default_rerank = report.default_rerank
    ranker.training_report = report.to_json()
    return ranker, report


def _mean_rank(names: Sequence[str], tasks: Sequence[SampledTask]) -> dict[str, float]:
    """Each model's mean position (0 = best) in the Copeland orders the ranker is trained on: the
    task-agnostic ordering a ranker must beat to have learned anything about tasks."""
    positions = np.zeros(len(names))
    for task in tasks:
        positions[copeland(task.scores)[1]] += np.arange(len(names))
    return {name: round(float(p / len(tasks)), 3) for name, p in zip(names, positions, strict=True)}


def _label_candidates(names: Sequence[str], source_probs: Sequence[np.ndarray | None]) -> tuple[str, ...]:
    """The candidate supervision scores that can label every zoo model: scores of source-head probabilities
    (LEEP, NCE) drop out when a model has no classifier head."""
    if all(p is not None for p in source_probs):
        return tuple(names)
    usable = tuple(n for n in names if "source_probs" not in scores.info(n).needs)
    if not usable:
        raise InvalidInputError(f"every supervision candidate ({', '.join(names)}) needs source-head probabilities, "
                                "which some zoo models lack; add a features-only score such as logme")
    return usable


def _recorded_id(model: str, zoo: Sequence[str], names: Sequence[str]) -> str:
    return names[list(zoo).index(model)] if model in zoo else model


def _recipe_json(recipe: RankerRecipe) -> dict[str, Any]:
    out = asdict(recipe)
    out["label_candidates"] = list(recipe.label_candidates)
    return json.loads(json.dumps(out, default=str))

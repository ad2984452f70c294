"""How far can a zero-forward-pass ranker trained on the pool get on the development targets?

    uv run python benchmarks/spider_ceiling.py --offline-data ../shared/offline_data

Model Spider at k = 0 predicts a target's ranking from its general task tokens alone, having learned
from the rankings of tasks sampled from the training pool. This script measures, per development
target, weighted τ (SFDA convention) against the ground truth of ``benchmarks/zoo/ground_truth.json``
(linear probe, or fine-tuning with ``--protocol fine-tune``) for:

- ``knn``, ``logme``: the best single forward-based scores (27 forward passes each);
- ``spider``: the bundled ranker, k = 0;
- ``no-task prior``: the Borda aggregate (mean rank) of the training tasks' labels (the ranking a
  ranker outputs if it ignores the task);
- ``5 nearest training tasks``: the Borda aggregate of the labels of the five training tasks whose
  general encoder features are closest to the target's (cosine of the mean unit feature vector):
  task similarity as the ranker's encoder sees it, without learning;
- ``best training label (oracle)``: the label of the one training task whose ranking matches the
  target best — an oracle pick, an upper bound for "find the most similar training task";
- ``pool mix fitted on target (oracle)``: the convex combination of the pool datasets' own probe
  rankings that matches the target best (Dirichlet random search), fitted on the target itself.

The two oracle rows look at the target's ground truth: they bound what the pool's rankings contain,
they are not methods. Features, memoised labels and the embeddings come from the caches the ranker's
training filled (``benchmarks/spider_train.py``); a cold run extracts them first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from hf_spider import evaluation, scores
from hf_spider.backbones import load_backbone, model_key
from hf_spider.bench import GROUND_TRUTH_PROTOCOLS, LINEAR_PROBE, GroundTruthStore, model_id, target_id
from hf_spider.constants import MICRO_ZOO, OFFLINE_POOL
from hf_spider.embedder.zoo import EmbedderSetup, embed_zoo
from hf_spider.features import extract_features
from hf_spider.rankagg import borda, copeland, method_ranks
from hf_spider.spider import RankerRecipe
from hf_spider.spider.hub import load_ranker
from hf_spider.spider.predict import order_to_scores, rank_models
from hf_spider.spider.training import (
    SampledTask,
    ScoreMemo,
    build_pool,
    label_tasks,
    probe_ground_truth,
    sample_tasks,
)
from hf_spider.tasks import load_task, parse_dataset_spec

ZOO = MICRO_ZOO
GROUND_TRUTH = Path(__file__).resolve().parent / "zoo" / "ground_truth.json"
TARGETS = ("reg-emoji-skintone", "tgt-clipart-objects", "tgt-digits", "tgt-emoji-twitter", "tgt-icons-heldout")


def dataset_tasks(pool) -> list[SampledTask]:
    """Each pool dataset (all its rows) as one classification task."""
    tasks = []
    for j in range(int(pool.dataset.max()) + 1):
        rows = np.flatnonzero(pool.dataset == j)
        tasks.append(SampledTask(rows, np.unique(pool.labels[rows], return_inverse=True)[1]))
    return tasks


def best_mix(rankings: np.ndarray, ground_truth: np.ndarray, draws: int, seed: int) -> float:
    """max over convex weights w (``draws`` sparse Dirichlet samples) of τ(ground truth, w @ rankings)."""
    weights = np.random.default_rng(seed).dirichlet(np.full(len(rankings), 0.3), size=draws)
    return max(evaluation.weighted_tau(ground_truth, w @ rankings) for w in weights)


def task_vector(features: np.ndarray) -> np.ndarray:
    """A task's place in the encoder's feature space: the mean of its unit feature vectors, unit length."""
    mean = (features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)).mean(0)
    return mean / np.linalg.norm(mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline-data", type=Path, default=Path("../shared/offline_data"))
    parser.add_argument("--ranker", type=Path, default=ZOO / "ranker")
    parser.add_argument("--protocol", choices=list(GROUND_TRUTH_PROTOCOLS), default=LINEAR_PROBE)
    parser.add_argument("--draws", type=int, default=20000, help="Dirichlet samples of the oracle pool mix.")
    parser.add_argument("--json", type=Path, help="Also write the table here.")
    args = parser.parse_args()

    zoo = sorted(str(p.parent) for p in (ZOO / "models").glob("*/config.json"))
    keys = [model_key(m) for m in zoo]
    encoder = str(ZOO / "models" / "resnet18-all-mix")
    ranker = load_ranker(str(args.ranker))
    recipe = RankerRecipe(encoder=encoder)
    datasets = [load_task(str(args.offline_data / n), split=s) for n, s in map(parse_dataset_spec, OFFLINE_POOL)]
    pool = build_pool(zoo, keys, datasets, encoder, seed=recipe.seed)
    training = sample_tasks(pool, recipe.train_tasks, validation=False, seed=recipe.seed,
                            max_classes=recipe.max_classes, max_per_class=recipe.max_per_class,
                            regression_fraction=recipe.regression_fraction)
    memo = ScoreMemo.in_cache()
    label_tasks(pool, training, ranker.label_scores, memo=memo)
    per_dataset = dataset_tasks(pool)
    probe_ground_truth(pool, per_dataset, memo=memo)
    pool_rankings = -method_ranks([t.ground_truth for t in per_dataset])  # higher is better, ties averaged
    vectors = embed_zoo(zoo, EmbedderSetup(encoder, str(args.offline_data / "reference-mix")))
    embeddings = torch.as_tensor(np.stack([vectors[m] for m in zoo]))
    store = GroundTruthStore(GROUND_TRUTH)
    labels_of = {kind: np.stack([copeland(t.scores)[0] for t in training if t.regression == kind])
                 for kind in (False, True)}  # the training labels (Copeland scores), by task kind
    vectors_of = {kind: np.stack([task_vector(pool.encoder_features[t.rows]) for t in training
                                  if t.regression == kind]) for kind in (False, True)}

    rows: dict[str, dict[str, float]] = {}
    for target in TARGETS:
        task = load_task(str(args.offline_data / target), split="train")
        stored = target_id(target, task, load_task(str(args.offline_data / target), split="test"))
        gt = np.array([store.get(stored, model_id(load_backbone(m, device="cpu")), args.protocol) for m in zoo])
        feats = [extract_features(m, task, with_source_probs=True) for m in zoo]
        labels = labels_of[task.regression]
        result = {}
        for name in ("knn", "logme"):
            if task.regression and name not in scores.available(regression=True):
                continue
            result[name] = evaluation.weighted_tau(gt, np.array([scores.score(
                name, features=f.features, labels=task.labels, source_probs=f.source_probs,
                regression=task.regression) for f in feats]))
        encoder_features = extract_features(encoder, task).features
        ranking = rank_models(ranker, encoder_features, task.labels, embeddings=embeddings,
                              regression=task.regression)
        result["spider"] = evaluation.weighted_tau(gt, order_to_scores(ranking.order))
        result["no-task prior"] = evaluation.weighted_tau(gt, borda(labels)[0])
        nearest = np.argsort(-(vectors_of[task.regression] @ task_vector(encoder_features)))[:5]
        result["5 nearest training tasks"] = evaluation.weighted_tau(gt, borda(labels[nearest])[0])
        result["best training label (oracle)"] = max(evaluation.weighted_tau(gt, r) for r in labels)
        result["pool mix fitted on target (oracle)"] = best_mix(pool_rankings, gt, args.draws, recipe.seed)
        rows[target] = result

    methods = ("knn", "logme", "spider", "no-task prior", "5 nearest training tasks", "best training label (oracle)",
               "pool mix fitted on target (oracle)")
    table = Table(title=f"Zero-forward-pass ceiling on the development targets (weighted τ against {args.protocol}; "
                        f"{len(zoo)} models, "
                        f"{len(training)} training tasks labelled by {'+'.join(ranker.label_scores)})")
    for col in ("method", *TARGETS, "mean (all)", "mean (cls)"):
        table.add_column(col)
    for m in methods:
        values = [rows[t].get(m) for t in TARGETS]
        cls = [v for t, v in zip(TARGETS, values, strict=True) if v is not None and not t.startswith("reg-")]
        both = [v for v in values if v is not None]
        table.add_row(m, *("–" if v is None else f"{v:.2f}" for v in values),
                      f"{np.mean(both):.3f}" if len(both) == len(values) else "–", f"{np.mean(cls):.3f}")
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Benchmark ranking methods on a model zoo x target tasks against ground-truth transfer.

For every target: extract each zoo model's features on the train and test splits (cached),
obtain the ground truth (stored, or computed by a linear probe and stored), score every model
with every method, and compare each method's ranking with the ground truth: weighted Kendall τ
(both conventions), top-1/top-3 regret, Pearson, forward passes of candidates used, wall time.
Few-shot mode scores on K examples per class (``shots``), mean ± 95% CI over ``trials`` draws.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from . import evaluation, scores
from .embedder import embed_model, embed_task, rank_by_embedding
from .errors import InvalidInputError
from .features import Features, extract_features
from .groundtruth import linear_probe
from .tasks import Task, load_task

__all__ = ["BenchReport", "EmbedderSetup", "GroundTruthStore", "model_key", "run_bench"]

EMBEDDER = "embedder"

GROUND_TRUTH_PROTOCOL = (
    "linear probe: standardised frozen features, logistic regression (ridge for real targets), "
    "C (alpha) chosen on a stratified 20% validation split of train, refit on train, scored on test"
)


def model_key(model_id: str) -> str:
    """The zoo-wide name of a model: a Hub id's or folder's last component (revision dropped)."""
    return Path(model_id.removeprefix("hf-hub:").split("@", 1)[0].rstrip("/")).name


class GroundTruthStore:
    """Versioned JSON of ground-truth scores: ``targets -> {metric, protocol, models: {key: value}}``.

    Reads what is there; :meth:`put` writes new entries back atomically, so a target computed
    once is not recomputed. Without a path the store lives in memory only.
    """

    VERSION = 1

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.data: dict[str, Any] = {"version": self.VERSION, "protocol": GROUND_TRUTH_PROTOCOL, "targets": {}}
        if self.path is not None and self.path.exists():
            self.data = json.loads(self.path.read_text())
            if self.data.get("version") != self.VERSION:
                raise InvalidInputError(f"{self.path}: ground-truth format version {self.data.get('version')} "
                                        f"is not {self.VERSION}")

    def get(self, target: str, model: str) -> float | None:
        return self.data["targets"].get(target, {}).get("models", {}).get(model)

    def put(self, target: str, metric: str, values: dict[str, float]) -> None:
        entry = self.data["targets"].setdefault(target, {"metric": metric, "models": {}})
        entry["models"].update({k: round(float(v), 6) for k, v in values.items()})
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class EmbedderSetup:
    """How the Standardized Embedder row is computed: the baseline and the reference set.

    The zoo's model embeddings (the owners' side, once per model) are computed at the start of the
    run from cached features; each target then costs one baseline forward pass and a task embedding.
    """

    baseline: str
    reference: str
    reference_split: str | None = None
    max_per_class: int | None = 200
    steps: int = 1000


@dataclass
class BenchReport:
    """Per (method, target) metrics, plus the raw predictions and ground truth behind them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # target -> method -> model
    ground_truth: dict[str, dict[str, float]] = field(default_factory=dict)  # target -> model -> value
    shots: int | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)  # (method, target) pairs that could not run

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "predictions": self.predictions, "ground_truth": self.ground_truth,
                "shots": self.shots, "skipped": self.skipped, "ground_truth_protocol": GROUND_TRUTH_PROTOCOL}

    def save_json(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))


def _metrics(gt: dict[str, float], pred: dict[str, float]) -> dict[str, float]:
    models = sorted(gt)
    g = np.array([gt[m] for m in models])
    p = np.array([pred[m] for m in models])
    return {
        "tau_sfda": evaluation.weighted_tau(g, p, convention="sfda"),
        "tau_spider": evaluation.weighted_tau(g, p, convention="spider"),
        "regret_top1": evaluation.top_k_regret(g, p, k=1),
        "regret_top3": evaluation.top_k_regret(g, p, k=min(3, len(models))),
        "pearson": evaluation.pearson(g, p),
    }


def _mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (Student t)."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float(arr.mean()), 0.0
    return float(arr.mean()), float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr)))


def _score_all(method: str, feats: dict[str, Features], labels: np.ndarray, rows: np.ndarray | None,
               regression: bool) -> dict[str, float]:
    """``method``'s score of every zoo model, on all rows of the task or on ``rows``."""
    out = {}
    for model, f in feats.items():
        x = f.features if rows is None else f.features[rows]
        probs = None if f.source_probs is None else (f.source_probs if rows is None else f.source_probs[rows])
        y = labels if rows is None else labels[rows]
        out[model] = scores.score(method, features=x, labels=y, source_probs=probs, regression=regression)
    return out


def run_bench(
    zoo: Sequence[str],
    targets: Sequence[str],
    *,
    methods: Sequence[str] | None = None,
    ground_truth: GroundTruthStore | None = None,
    shots: int | None = None,
    trials: int = 10,
    max_per_class: int | None = None,
    embedder: EmbedderSetup | None = None,
    seed: int = 0,
    progress: bool = True,
) -> BenchReport:
    """Rank ``zoo`` on each of ``targets`` with each method and compare with the ground truth.

    Args:
        zoo: model ids (``org/name``, ``hf-hub:org/name``, local folders) loadable by
            :func:`hf_spider.backbones.load_backbone`.
        targets: dataset ids or folders with ``train`` and ``test`` splits.
        methods: score names (default: every registered score that fits each target).
        ground_truth: where stored ground truth is read and newly computed entries are kept
            (default: an in-memory store, nothing written).
        shots: few-shot mode: score on ``shots`` examples per class, ``trials`` random draws.
        max_per_class: cap the examples per class of each split (for quick runs).
        embedder: adds the Standardized Embedder's row (method ``"embedder"``) when given.
    """
    if len(zoo) < 2:
        raise InvalidInputError("bench needs at least 2 zoo models to rank")
    report = BenchReport(shots=shots)
    if methods is not None and EMBEDDER in methods and embedder is None:
        raise InvalidInputError("the embedder method needs a baseline and a reference set (--baseline, --reference)")
    use_embedder = embedder is not None and (methods is None or EMBEDDER in methods)
    vectors = _zoo_embeddings(zoo, embedder, seed, progress) if use_embedder else {}
    for target in targets:
        train = load_task(target, split="train", max_per_class=max_per_class, seed=seed)
        test = load_task(target, split="test", max_per_class=max_per_class, seed=seed)
        name = model_key(target)
        forward_start = time.perf_counter()
        train_feats = {model_key(m): extract_features(m, train, with_source_probs=True, progress=progress)
                       for m in zoo}
        forward_seconds = time.perf_counter() - forward_start
        gt = _ground_truth(name, zoo, train, test, train_feats, ground_truth, progress)
        report.ground_truth[name] = gt
        target_methods = [m for m in methods or scores.available(regression=True if train.regression else None)
                          if m != EMBEDDER]
        report.predictions[name] = {}
        if use_embedder:
            start = time.perf_counter()
            task_features = extract_features(embedder.baseline, train, progress=progress).features
            embed_forward_s = time.perf_counter() - start
            row, pred = _rank_quality(_embedder_ranking(vectors, task_features, train, seed), train, gt, shots=shots, trials=trials, seed=seed)
            report.rows.append({"method": EMBEDDER, **row, "target": name, "forward_passes": 0,
                                "forward_s": embed_forward_s, "wall_s": embed_forward_s + row["score_s"]})
            if pred is not None:
                report.predictions[name][EMBEDDER] = pred
        for method in target_methods:
            if train.regression and method not in scores.available(regression=True):
                continue
            rank = functools.partial(_score_all, method, train_feats, train.labels, regression=train.regression)
            try:
                row, pred = _rank_quality(rank, train, gt, shots=shots, trials=trials, seed=seed)
            except InvalidInputError as e:  # e.g. GBC with one example per class: reported, not fatal
                report.skipped.append({"method": method, "target": name, "reason": str(e)})
                continue
            report.rows.append({"method": method, **row, "target": name, "forward_passes": len(zoo),
                                "forward_s": forward_seconds, "wall_s": forward_seconds + row["score_s"]})
            if pred is not None:
                report.predictions[name][method] = pred
    return report


def _rank_quality(rank: Callable[[np.ndarray | None], dict[str, float]], train: Task, gt: dict[str, float], *,
                  shots: int | None, trials: int,
                  seed: int) -> tuple[dict[str, Any], dict[str, float] | None]:
    """Metrics of one ranking against ``gt`` and its seconds per ranking (``score_s``).

    ``rank(rows)`` scores the zoo from the task's ``rows`` (``None``: all). Full-data mode also
    returns the scores; few-shot mode reports mean and 95% CI over ``trials`` draws.
    """
    start = time.perf_counter()
    if shots is None:
        pred = rank(None)
        return {**_metrics(gt, pred), "score_s": time.perf_counter() - start}, pred
    rng = np.random.default_rng(seed)
    trial_metrics = [_metrics(gt, rank(_few_shot_rows(train.labels, shots, rng, train.regression)))
                     for _ in range(trials)]
    row: dict[str, Any] = {}
    for key in trial_metrics[0]:
        row[key], row[f"{key}_ci95"] = _mean_ci([t[key] for t in trial_metrics])
    row["score_s"] = (time.perf_counter() - start) / trials
    return row, None


def _zoo_embeddings(zoo: Sequence[str], setup: EmbedderSetup, seed: int, progress: bool) -> dict[str, np.ndarray]:
    """Each zoo model's embedding over the baseline on the reference set (what owners publish)."""
    reference = load_task(setup.reference, split=setup.reference_split, max_per_class=setup.max_per_class,
                          seed=seed)
    baseline = extract_features(setup.baseline, reference, progress=progress).features
    return {model_key(m): embed_model(extract_features(m, reference, progress=progress).features, baseline,
                                      steps=setup.steps, seed=seed, progress=False).vector
            for m in zoo}


def _embedder_ranking(vectors: dict[str, np.ndarray], task_features: np.ndarray, train: Task,
                      seed: int) -> Callable[[np.ndarray | None], dict[str, float]]:
    """The embedder's ranking from the baseline's features of the task: a task embedding, one sweep."""

    def rank(rows: np.ndarray | None) -> dict[str, float]:
        x = task_features if rows is None else task_features[rows]
        y = train.labels if rows is None else train.labels[rows]
        u = embed_task(x, y, regression=train.regression, seed=seed, progress=False).vector
        return dict(rank_by_embedding(u, vectors))

    return rank


def _few_shot_rows(labels: np.ndarray, shots: int, rng: np.random.Generator, regression: bool) -> np.ndarray:
    """``shots`` random rows per class; for real targets (no classes), ``10 * shots`` random rows."""
    if regression:
        return rng.choice(len(labels), size=min(len(labels), 10 * shots), replace=False)
    classes = np.unique(labels)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=min(shots, int((labels == c).sum())),
                                      replace=False) for c in classes])


def _ground_truth(target: str, zoo: Sequence[str], train: Task, test: Task, train_feats: dict[str, Features],
                  store: GroundTruthStore | None, progress: bool) -> dict[str, float]:
    store = store if store is not None else GroundTruthStore()
    values = {m: store.get(target, m) for m in train_feats}
    missing = [m for m in zoo if values[model_key(m)] is None]
    computed = {}
    for model in missing:
        test_feats = extract_features(model, test, progress=progress)
        key = model_key(model)
        computed[key] = linear_probe(train_feats[key].features, train.labels, test_feats.features, test.labels,
                                     regression=train.regression).score
    if computed:
        store.put(target, "r2" if train.regression else "accuracy", computed)
    return {m: (values[m] if values[m] is not None else computed[m]) for m in train_feats}


def render_table(report: BenchReport):
    """A rich table: one row per (target, method)."""
    from rich.table import Table

    few = report.shots is not None
    title = f"Ranking quality vs ground truth{f' ({report.shots}-shot, mean ± 95% CI)' if few else ''}"
    table = Table(title=title)
    for col in ("target", "method", "τw sfda", "τw spider", "regret@1", "regret@3", "pearson", "fwd passes",
                "wall s"):
        table.add_column(col, justify="left" if col in ("target", "method") else "right")

    def cell(row: dict[str, Any], key: str) -> str:
        value = row[key]
        if few and f"{key}_ci95" in row:
            return f"{value:.3f}±{row[f'{key}_ci95']:.3f}"
        return f"{value:.3f}"

    for row in sorted(report.rows, key=lambda r: (r["target"], -r["tau_sfda"])):
        table.add_row(row["target"], row["method"], *(cell(row, k) for k in
                      ("tau_sfda", "tau_spider", "regret_top1", "regret_top3", "pearson")),
                      str(row["forward_passes"]), f"{row['wall_s']:.1f}")
    return table


def plot(report: BenchReport, path: str | os.PathLike[str]) -> None:
    """PNG: method x target heat-map of weighted τ, and predicted-vs-ground-truth scatter per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({r["target"] for r in report.rows})
    methods = sorted({r["method"] for r in report.rows})
    tau = np.full((len(methods), len(targets)), np.nan)
    for r in report.rows:
        tau[methods.index(r["method"]), targets.index(r["target"])] = r["tau_sfda"]
    fig, axes = plt.subplots(1, 1 + len(targets), figsize=(4.5 * (1 + len(targets)), 4.5), squeeze=False)
    ax = axes[0, 0]
    im = ax.imshow(tau, cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(targets)), targets, rotation=45, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    for i, j in np.ndindex(tau.shape):
        if not np.isnan(tau[i, j]):
            ax.text(j, i, f"{tau[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("weighted τ (sfda convention)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    for ax, target in zip(axes[0, 1:], targets, strict=True):
        gt = report.ground_truth[target]
        models = sorted(gt)
        for method, pred in report.predictions.get(target, {}).items():
            p = np.array([pred[m] for m in models])
            span = np.ptp(p) or 1.0
            ax.scatter([gt[m] for m in models], (p - p.min()) / span, s=12, label=method, alpha=0.7)
        ax.set_xlabel("ground truth (linear probe)")
        ax.set_ylabel("predicted score (min-max scaled)")
        ax.set_title(target)
    if report.predictions:
        axes[0, -1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

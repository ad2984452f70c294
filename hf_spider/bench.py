"""Benchmark ranking methods on a model zoo x target tasks against ground-truth transfer.

For every target: extract each zoo model's features on the train and test splits (cached),
obtain the ground truth (stored, or computed — by a linear probe, or by fine-tuning on request —
and stored), score every model with every method, and compare each method's ranking with the
ground truth: weighted Kendall τ (both conventions), top-1/top-3 regret, Pearson, forward passes
of candidates used, wall time.
Few-shot mode scores on K examples per class (``shots``), mean ± 95% CI over ``trials`` draws.
"""

from __future__ import annotations

import functools
import hashlib
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
from ._files import write_atomic
from .backbones import Backbone, expand_model_folders, load_backbone, model_key
from .constants import MICRO_ZOO, MICRO_ZOO_BASELINE
from .embedder import embed_task, rank_by_embedding
from .embedder.zoo import EmbedderSetup, embed_zoo
from .errors import InvalidInputError
from .features import Features, extract_features
from .groundtruth import LINEAR_PROBE_PROTOCOL, GroundTruthProtocol, fine_tune, fine_tune_protocol, linear_probe
from .spider.model import SpiderRanker
from .spider.predict import order_to_scores, rank_models
from .tasks import Task, load_task, parse_dataset_spec

__all__ = ["FINE_TUNE", "GROUND_TRUTH_PROTOCOLS", "LINEAR_PROBE", "BenchInputs", "BenchReport", "EmbedderSetup",
           "GroundTruthStore", "bench_inputs", "model_id", "model_key", "run_bench", "target_id"]

EMBEDDER = "embedder"
SPIDER = "spider"
# task-agnostic priors: one fixed ordering of the zoo, whatever the target (bigger first)
PRIORS: dict[str, Callable[[Backbone], float]] = {
    "prior:params": lambda backbone: backbone.num_parameters,
    "prior:input-size": lambda backbone: backbone.input_size[0] * backbone.input_size[1],
}

LINEAR_PROBE, FINE_TUNE = "linear-probe", "fine-tune"
GROUND_TRUTH_PROTOCOLS: dict[str, GroundTruthProtocol] = {  # name -> how its scores are computed
    LINEAR_PROBE: LINEAR_PROBE_PROTOCOL,
    FINE_TUNE: fine_tune_protocol(),
}


class GroundTruthStore:
    """Versioned JSON of ground-truth scores, per target and protocol (linear probe and fine-tuning side by side)::

        {"version": 4, "protocols": {name: {"version": v, "settings": {...}, "description": "..."}},
         "targets": {target id: {name: {"metric": "accuracy" | "r2", "models": {model id: value}}}}}

    Ids name what was measured, not only what it is called (:func:`target_id`, :func:`model_id`): data or
    weights that differ under the same name get entries of their own instead of each other's scores.

    Reads what is there; :meth:`put` writes new entries back atomically, so a score computed once is
    not recomputed. A protocol's identity (:attr:`~hf_spider.groundtruth.GroundTruthProtocol.identity`: its version
    and settings) is stored with its scores, and scores computed by another one are refused rather than mixed. A
    version-3 file, which named its protocols by their descriptions, is read as the protocols whose descriptions
    match. Without a path the store lives in memory only.
    """

    VERSION = 4

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.data: dict[str, Any] = {"version": self.VERSION, "protocols": {}, "targets": {}}
        if self.path is not None and self.path.exists():
            self.data = json.loads(self.path.read_text())
            if self.data.get("version") == 3:  # protocols named by their descriptions
                self.data = {**self.data, "version": self.VERSION, "protocols": {
                    name: _upgraded(name, description) for name, description in self.data["protocols"].items()}}
            if self.data.get("version") != self.VERSION:
                raise InvalidInputError(f"{self.path}: ground-truth format version {self.data.get('version')} "
                                        f"is not {self.VERSION}")

    def get(self, target: str, model: str, protocol: str = LINEAR_PROBE) -> float | None:
        self._check(protocol)
        return self.data["targets"].get(target, {}).get(protocol, {}).get("models", {}).get(model)

    def put(self, target: str, metric: str, values: dict[str, float], protocol: str = LINEAR_PROBE) -> None:
        self._check(protocol)
        self.data["protocols"][protocol] = _stored(GROUND_TRUTH_PROTOCOLS[protocol])
        entry = self.data["targets"].setdefault(target, {}).setdefault(protocol, {"metric": metric, "models": {}})
        entry["models"].update({k: round(float(v), 6) for k, v in values.items()})
        if self.path is None:
            return
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))

    def _check(self, protocol: str) -> None:
        """A known protocol whose stored scores (if any) were computed the way this code computes them."""
        _check_protocol(protocol)
        stored = self.data["protocols"].get(protocol)
        current = GROUND_TRUTH_PROTOCOLS[protocol]
        if stored is not None and {k: stored.get(k) for k in ("version", "settings")} != current.identity:
            raise InvalidInputError(f"{self.path}: its {protocol} ground truth was computed by another version or "
                                    f"settings of the protocol ({json.dumps(stored)[:300]}; this is "
                                    f"{json.dumps(current.identity)}); use another ground-truth file")


def _stored(protocol: GroundTruthProtocol) -> dict[str, Any]:
    return {**protocol.identity, "description": protocol.description}


def _upgraded(name: str, description: str) -> dict[str, Any]:
    """A version-3 protocol entry: this code's protocol of that name if the description is its own, else an entry
    no protocol matches (its scores are refused)."""
    current = GROUND_TRUTH_PROTOCOLS.get(name)
    return _stored(current) if current is not None and current.description == description else {
        "description": description}


def target_id(name: str, train: Task, test: Task) -> str:
    """``name@digest`` of the train and test splits' fingerprints: the same name on other data is another target."""
    digest = hashlib.sha256(f"{train.fingerprint}:{test.fingerprint}".encode()).hexdigest()
    return f"{name}@{digest[:16]}"


def model_id(backbone: Backbone) -> str:
    """``name@commit`` (Hub) or ``name@sha256:digest`` of the weights (folders, builtins): the same name with other
    weights is another model."""
    return f"{model_key(backbone.model_id)}@{backbone.revision or 'sha256:' + backbone.weights_hash()[:16]}"


def _check_protocol(protocol: str) -> None:
    if protocol not in GROUND_TRUTH_PROTOCOLS:
        raise InvalidInputError(f"unknown ground-truth protocol {protocol!r}; use one of "
                                f"{', '.join(GROUND_TRUTH_PROTOCOLS)}")


@dataclass
class BenchReport:
    """Per (method, target) metrics, plus the raw predictions and ground truth behind them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # target -> method -> model
    ground_truth: dict[str, dict[str, float]] = field(default_factory=dict)  # target -> model -> value
    shots: int | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)  # (method, target) pairs that could not run
    ground_truth_protocol: str = LINEAR_PROBE
    regression_targets: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per method: weighted τ (SFDA convention) and top-3 regret per target, forward passes, and the
        mean τ over the targets it scored (``mean_tau``) and over the classification ones
        (``mean_tau_classification``, ``None`` without any): methods that cannot score real targets
        are compared on the second."""
        out: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            entry = out.setdefault(row["method"], {"forward_passes": row["forward_passes"], "tau": {},
                                                   "regret_top3": {}})
            entry["tau"][row["target"]] = row["tau_sfda"]
            entry["regret_top3"][row["target"]] = row["regret_top3"]
        for entry in out.values():
            classification = [v for t, v in entry["tau"].items() if t not in self.regression_targets]
            entry["mean_tau"] = float(np.mean(list(entry["tau"].values())))
            entry["mean_tau_classification"] = float(np.mean(classification)) if classification else None
        return out

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "summary": self.summary(), "predictions": self.predictions,
                "ground_truth": self.ground_truth, "regression_targets": self.regression_targets, "shots": self.shots,
                "skipped": self.skipped, "ground_truth_protocol": self.ground_truth_protocol,
                "ground_truth_protocol_description": GROUND_TRUTH_PROTOCOLS[self.ground_truth_protocol].description}

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


@dataclass
class BenchInputs:
    """What ``run_bench`` ranks, with what: the zoo, the target tasks, the embedder's setup and the ranker."""

    models: list[str]
    targets: list[str]
    embedder: EmbedderSetup | None
    ranker: SpiderRanker | None


def bench_inputs(*, zoo: Sequence[str] | None = None, targets: Sequence[str] | None = None,
                 data_root: str | os.PathLike[str] | None = None, baseline: str | None = None,
                 reference: str | None = None, embed_steps: int = 1000, ranker: str | None = None) -> BenchInputs:
    """The bench's inputs with their defaults: the bundled micro zoo (its ``resnet18-all-mix`` as the embedder's
    baseline, its ranker) when no ``zoo`` is given; every ``tgt-*``/``reg-*`` folder of the offline data pack
    ``data_root`` when no ``targets`` are (a name under ``data_root`` is that folder), and its ``reference-mix`` as the
    embedder's reference set. The embedder's row needs a baseline and a reference; the spider's, a ranker."""
    bundled = MICRO_ZOO / "models"
    root = Path(data_root) if data_root is not None else None
    if not targets and root is None:
        raise InvalidInputError("bench needs target tasks: --targets DATASET ... (Hub ids or folders with train and "
                                "test splits), or --data-root FOLDER (or HF_SPIDER_OFFLINE_DATA) holding tgt-*/reg-* "
                                "folders")
    if targets:
        tasks = [str(root / t) if root is not None and (root / t).is_dir() else t for t in targets]
    else:
        tasks = sorted(str(p) for p in root.glob("*") if p.name.startswith(("tgt-", "reg-")))
    if not tasks:
        raise InvalidInputError(f"no target tasks given and none found under {root}; pass --targets")
    if baseline is None and not zoo and MICRO_ZOO_BASELINE.is_dir():
        baseline = str(MICRO_ZOO_BASELINE)
    if reference is None and root is not None and (root / "reference-mix").is_dir():
        reference = str(root / "reference-mix")
    embedder = EmbedderSetup(baseline, *parse_dataset_spec(reference), steps=embed_steps) if (
        baseline and reference) else None
    if ranker is None and not zoo and (MICRO_ZOO / "ranker" / "config.json").exists():
        ranker = str(MICRO_ZOO / "ranker")
    if ranker is not None:
        from .spider.hub import load_ranker

        ranker = load_ranker(ranker)
    return BenchInputs(expand_model_folders(list(zoo or [str(bundled)])), tasks, embedder, ranker)


def run_bench(
    zoo: Sequence[str],
    targets: Sequence[str],
    *,
    methods: Sequence[str] | None = None,
    ground_truth: GroundTruthStore | None = None,
    ground_truth_protocol: str = LINEAR_PROBE,
    shots: int | None = None,
    trials: int = 10,
    max_per_class: int | None = None,
    embedder: EmbedderSetup | None = None,
    ranker: SpiderRanker | None = None,
    rerank: int | Sequence[int] | None = None,
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
        ground_truth_protocol: :data:`LINEAR_PROBE` (default) or :data:`FINE_TUNE` (slow: trains every
            model whose score is not stored yet).
        shots: few-shot mode: score on ``shots`` examples per class, ``trials`` random draws.
        max_per_class: cap the examples per class of each split (for quick runs).
        embedder: adds the Standardized Embedder's row (method ``"embedder"``) when given.
        ranker: adds Model Spider's rows: ``"spider"`` (no forward pass of candidates) and
            ``"spider+rerankK"`` for each budget K in ``rerank`` (default the ranker's validated budget). Its
            encoder and embedding baseline must be ``embedder.baseline`` (the bundled zoo's ranker is).

    Every target also gets the task-agnostic :data:`PRIORS` as rows of their own (0 forward passes), so each
    method can be read against a fixed ordering by model size; a ranker trained in this process adds
    ``"prior:mean-rank"``, each model's mean rank over the ranker's training tasks. Scores of source-head
    probabilities (LEEP, NCE) rank only the models with a classifier head, against those models' ground truth
    (a row's ``models``).
    """
    if len(zoo) < 2:
        raise InvalidInputError("bench needs at least 2 zoo models to rank")
    _check_protocol(ground_truth_protocol)
    report = BenchReport(shots=shots, ground_truth_protocol=ground_truth_protocol)
    if methods is not None and EMBEDDER in methods and embedder is None:
        raise InvalidInputError("the embedder method needs a baseline and a reference set (--baseline, --reference)")
    use_embedder = embedder is not None and (methods is None or EMBEDDER in methods)
    if ranker is not None:
        _check_ranker(ranker, embedder)
        budgets = sorted({0, *([ranker.default_rerank] if rerank is None else
                               [rerank] if isinstance(rerank, int) else rerank)})
    vectors = ({model_key(m): v for m, v in embed_zoo(zoo, embedder, seed=seed, progress=progress).items()}
               if use_embedder or ranker is not None else {})
    backbones = {model_key(m): load_backbone(m) for m in zoo}  # loaded once: priors, features, probes
    priors = _priors(backbones)
    mean_rank = (ranker.training_report or {}).get("mean_rank") if ranker is not None else None
    if mean_rank and {model_key(m) for m in mean_rank} >= set(backbones):  # lower mean rank is better
        priors["prior:mean-rank"] = {k: -v for m, v in mean_rank.items() if (k := model_key(m)) in backbones}
    for target in targets:
        train = load_task(target, split="train", max_per_class=max_per_class, seed=seed)
        test = load_task(target, split="test", max_per_class=max_per_class, seed=seed)
        name = model_key(target)
        train_feats = {key: extract_features(backbone, train, with_source_probs=backbone.num_source_classes is not None,
                                             progress=progress)
                       for key, backbone in backbones.items()}
        # a selection's forward seconds: what each extraction took when it ran (this run, or the cached one's)
        seconds = {key: f.stats["computed"] for key, f in train_feats.items()}
        gt = _ground_truth(name, zoo, backbones, train, test, train_feats, ground_truth, ground_truth_protocol,
                           progress)
        report.ground_truth[name] = gt
        if train.regression:
            report.regression_targets.append(name)
        target_methods = [m for m in methods or scores.available(regression=True if train.regression else None)
                          if m not in (EMBEDDER, SPIDER)]
        report.predictions[name] = {}

        def add(method: str, rank: Callable[[np.ndarray | None], dict[str, float]], forward_passes: int,
                forward_s: float, name: str = name, gt: dict[str, float] = gt, train: Task = train) -> None:
            row, pred = _rank_quality(rank, train, gt, shots=shots, trials=trials, seed=seed)
            report.rows.append({"method": method, **row, "target": name, "models": len(gt),
                                "forward_passes": forward_passes, "forward_s": forward_s,
                                "wall_s": forward_s + row["score_s"]})
            if pred is not None:
                report.predictions[name][method] = pred

        for prior, values in priors.items():
            if len(set(values.values())) > 1:
                add(prior, lambda rows, values=values: values, 0, 0.0)
            else:
                report.skipped.append({"method": prior, "target": name, "reason": "every model has the same value"})
        if use_embedder or ranker is not None:
            baseline = extract_features(embedder.baseline, train, progress=progress)
            task_features, baseline_s = baseline.features, baseline.stats["computed"]
        if use_embedder:
            add(EMBEDDER, _embedder_ranking(vectors, task_features, train, seed), 0, baseline_s)
        if ranker is not None:  # the encoder is the embedder's baseline (checked above): one pass serves both
            per_candidate = float(np.mean(list(seconds.values())))  # re-ranked models: the zoo's mean cost
            for k in budgets:
                add(SPIDER if k == 0 else f"{SPIDER}+rerank{k}", _spider_ranking(
                    ranker, task_features, train, train_feats, vectors, k), k, baseline_s + k * per_candidate)
        for method in target_methods:
            if train.regression and method not in scores.available(regression=True):
                continue
            feats = _scorable(method, train_feats)
            if len(feats) < 2:
                report.skipped.append({"method": method, "target": name, "reason": "needs a source classifier head; "
                                       f"{len(feats)} zoo model(s) have one"})
                continue
            rank = functools.partial(_score_all, method, feats, train.labels, regression=train.regression)
            try:
                add(method, rank, len(feats), sum(seconds[k] for k in feats), gt={k: gt[k] for k in feats})
            except InvalidInputError as e:  # e.g. GBC with one example per class: reported, not fatal
                report.skipped.append({"method": method, "target": name, "reason": str(e)})
    return report


def _priors(backbones: dict[str, Backbone]) -> dict[str, dict[str, float]]:
    """Each task-agnostic prior's value for every zoo model (no forward pass)."""
    return {name: {key: float(value(backbone)) for key, backbone in backbones.items()}
            for name, value in PRIORS.items()}


def _scorable(method: str, feats: dict[str, Features]) -> dict[str, Features]:
    """The zoo models ``method`` can score: a score of source-head probabilities ranks only the models with a
    head (ONNX feature extractors often have none), against the ground truth of those models."""
    if "source_probs" not in scores.info(method).needs:
        return feats
    return {key: f for key, f in feats.items() if f.source_probs is not None}


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


def _embedder_ranking(vectors: dict[str, np.ndarray], task_features: np.ndarray, train: Task,
                      seed: int) -> Callable[[np.ndarray | None], dict[str, float]]:
    """The embedder's ranking from the baseline's features of the task: a task embedding, one sweep."""

    def rank(rows: np.ndarray | None) -> dict[str, float]:
        x = task_features if rows is None else task_features[rows]
        y = train.labels if rows is None else train.labels[rows]
        u = embed_task(x, y, regression=train.regression, seed=seed, progress=False).vector
        return dict(rank_by_embedding(u, vectors))

    return rank


def _check_ranker(ranker: SpiderRanker, embedder: EmbedderSetup | None) -> None:
    """The bench computes one baseline pass per target and the zoo's embeddings over that baseline."""
    if embedder is None:
        raise InvalidInputError("the spider rows need the embedder setup (its baseline is the ranker's encoder)")
    for role, model in (("encoder", ranker.encoder), ("embedding baseline", ranker.baseline)):
        if model is not None and model_key(model) != model_key(embedder.baseline):
            raise InvalidInputError(f"the ranker's {role} {model} is not the bench baseline {embedder.baseline}")


def _spider_ranking(ranker: SpiderRanker, task_features: np.ndarray, train: Task, train_feats: dict[str, Features],
                    vectors: dict[str, np.ndarray], rerank: int) -> Callable[[np.ndarray | None], dict[str, float]]:
    """Model Spider's ranking of the zoo; the top ``rerank`` re-ranked with the models' own features."""
    keys = list(train_feats)
    embeddings = np.stack([vectors[k] for k in keys]) if ranker.token_source == "embedding" else None
    by_key = {model_key(m): m for m in ranker.models}
    models = [by_key.get(k, k) for k in keys] if ranker.token_source == "table" else None

    def rank(rows: np.ndarray | None) -> dict[str, float]:
        sel = slice(None) if rows is None else rows
        ranking = rank_models(ranker, task_features[sel], train.labels[sel], models=models, embeddings=embeddings,
                              regression=train.regression, rerank=rerank,
                              candidate_features=lambda i: train_feats[keys[i]].features[sel])
        return dict(zip(keys, order_to_scores(ranking.order), strict=True))

    return rank


def _few_shot_rows(labels: np.ndarray, shots: int, rng: np.random.Generator, regression: bool) -> np.ndarray:
    """``shots`` random rows per class; for real targets (no classes), ``10 * shots`` random rows."""
    if regression:
        return rng.choice(len(labels), size=min(len(labels), 10 * shots), replace=False)
    classes = np.unique(labels)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=min(shots, int((labels == c).sum())),
                                      replace=False) for c in classes])


def _ground_truth(target: str, zoo: Sequence[str], backbones: dict[str, Backbone], train: Task, test: Task,
                  train_feats: dict[str, Features], store: GroundTruthStore | None, protocol: str,
                  progress: bool) -> dict[str, float]:
    """Every zoo model's ground truth on ``target``: stored (under the ids of these weights and this data), or
    computed and stored model by model (an interrupted fine-tuning run keeps what it finished)."""
    store = store if store is not None else GroundTruthStore()
    stored_target = target_id(target, train, test)
    values = {}
    for model in zoo:
        key = model_key(model)
        stored_model = model_id(backbones[key])
        values[key] = store.get(stored_target, stored_model, protocol)
        if values[key] is None:
            if protocol == FINE_TUNE:
                values[key] = fine_tune(model, train, test).score
            else:
                test_feats = extract_features(backbones[key], test, progress=progress)
                values[key] = linear_probe(train_feats[key].features, train.labels, test_feats.features,
                                           test.labels, regression=train.regression).score
            store.put(stored_target, "r2" if train.regression else "accuracy", {stored_model: values[key]}, protocol)
    return values


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


def render_summary(report: BenchReport):
    """A rich table: one row per method, cells τw (SFDA) / top-3 regret in points; best first by the mean
    over the classification targets when some targets are regression (not every method scores those)."""
    from rich.table import Table

    summary = report.summary()
    targets = list(report.ground_truth)
    split = bool(report.regression_targets) and len(report.regression_targets) < len(targets)
    table = Table(title=f"Summary against {report.ground_truth_protocol} ground truth: τw / regret@3 (points)")
    for col in ("method", "fwd passes", *targets, "mean τw", *(["mean τw (classification)"] if split else [])):
        table.add_column(col, justify="left" if col == "method" else "right")
    key = "mean_tau_classification" if split else "mean_tau"  # compare on the targets every method scores
    for method, entry in sorted(summary.items(), key=lambda kv: -(kv[1][key] if kv[1][key] is not None
                                                                   else kv[1]["mean_tau"])):
        cells = [f"{entry['tau'][t]:.2f} / {100 * entry['regret_top3'][t]:.1f}" if t in entry["tau"] else "–"
                 for t in targets]
        cls = entry["mean_tau_classification"]
        table.add_row(method, str(entry["forward_passes"]), *cells, f"{entry['mean_tau']:.3f}",
                      *([("–" if cls is None else f"{cls:.3f}")] if split else []))
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
        for method, pred in report.predictions.get(target, {}).items():
            models = sorted(pred)  # the models the method scored (scores of source probabilities: those with a head)
            p = np.array([pred[m] for m in models])
            span = np.ptp(p) or 1.0
            ax.scatter([gt[m] for m in models], (p - p.min()) / span, s=12, label=method, alpha=0.7)
        ax.set_xlabel(f"ground truth ({report.ground_truth_protocol})")
        ax.set_ylabel("predicted score (min-max scaled)")
        ax.set_title(target)
    if axes[0, -1].get_legend_handles_labels()[0]:  # nothing drawn there, no legend
        axes[0, -1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

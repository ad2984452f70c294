"""Rank every model that published an embedding for a task, optionally re-rank the top-k.

Candidates are the models that published an embedding over the baseline (``scan``). Methods:

- ``embedder``: the task is embedded over the baseline (one forward pass of the baseline on the
  task), each published model embedding is scored by fuzzy intersection; with a budget of
  ``rerank`` forward passes, the top candidates are re-ordered by a forward-based score.
- ``spider``: a trained Model Spider ranker scores every candidate with a model token in one
  batched pass; with ``rerank`` forward passes it re-scores the top k with their own task tokens.
- ``spider+embedder``: the mean of the two methods' ranks, then the spider's re-ranking.
"""

from __future__ import annotations

import difflib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..backbones import model_key
from ..constants import DEFAULT_BASELINE
from ..embedder import TaskEmbedding, embed_task_cached, rank_rows
from ..errors import InvalidInputError, ModelLoadError
from ..features import Features, cached_features
from ..formats.embedding import PublishedEmbedding
from ..hub.candidates import skipped_on_failure
from ..hub.scan import scan
from ..tasks import Task
from ..verify import embedding_flags, verification_records, verification_status
from ._result import Candidate, Selection, rank_by_prior, timed

if TYPE_CHECKING:
    from ..backbones import Backbone
    from ..spider.model import SpiderRanker

__all__ = ["FORWARD", "METHODS", "BaselineRun", "check_selection", "select_models"]

#: The ranking methods offered to users (CLI, demo, Space), in the order they are shown.
METHODS = ("embedder", "spider", "spider+embedder")
#: The forward-based cascade's name (:func:`hf_spider.ranking.rank_candidates`): any models, published or not.
FORWARD = "forward"


def check_selection(*, method: str, rerank: int, rerank_score: str | None) -> None:
    """Refuse a selection's bad arguments before any work, with the closest valid name (``rerank_score=None``:
    none given)."""
    if rerank < 0:
        raise InvalidInputError("rerank must be >= 0")
    if method not in (*METHODS, FORWARD):
        close = difflib.get_close_matches(method, (*METHODS, FORWARD), n=1)
        raise InvalidInputError(f"unknown method {method!r}; {f'did you mean {close[0]!r}? ' if close else ''}"
                                f"available: {', '.join((*METHODS, FORWARD))}")
    if rerank_score is not None:
        from .. import scores  # the registry imports the scores, and torch

        scores.info(rerank_score)


def run_model(model: str | Backbone, task: Task, *, revision: str | None = None, with_source_probs: bool = False,
              progress: bool = True) -> Features:
    """One forward pass of ``model`` (an id, or a loaded backbone) over ``task``, through the feature cache. Torch
    is imported here, the first time a selection needs a model: a selection from cached features never does."""
    from ..backbones import load_backbone
    from ..features import extract_features

    backbone = load_backbone(model, revision=revision) if isinstance(model, str) else model
    return extract_features(backbone, task, with_source_probs=with_source_probs, progress=progress)


def select_models(
    task: Task,
    *,
    method: str = "embedder",
    ranker: str | SpiderRanker | None = None,
    baseline: str = DEFAULT_BASELINE,
    rerank: int = 0,
    rerank_score: str | None = "logme",
    filter: str = "hf-spider",
    author: str | None = None,
    search: str | None = None,
    index: str | None = None,
    verify_top: int = 10,
    gamma: float | str = "auto",
    verified_only: bool = False,
    progress: bool = True,
) -> Selection:
    """Rank the models that published an embedding over ``baseline`` for ``task``.

    Only embeddings computed over the same baseline weights and reference set as the majority are
    comparable (SPEC §3.3); the others are reported in ``skipped``. Each candidate carries the
    warnings of :func:`hf_spider.verify.embedding_flags`; ``verified_only`` keeps only the repos whose
    current commit passed ``hf_spider verify`` on this machine.

    ``method`` is one of :data:`METHODS`; the spider methods need ``ranker`` (a Hub repo id or folder,
    loaded by :func:`~hf_spider.spider.hub.load_ranker`, or a :class:`SpiderRanker`). ``rerank`` is the
    forward-pass budget: ``rerank_score`` re-orders the embedder's top k, the spider re-ranks its own.

    ``index``: read the embeddings from this index dataset (``hf_spider index build``) in one download instead of
    one per repo; each model the zero-forward ranking puts in its top ``verify_top`` is then checked against the
    file in its own repo (:func:`~hf_spider.hub.index.check_against_source`) and re-ranked by that file, or
    dropped, until the top ``verify_top`` are all checked. What each check found is in ``Selection.checked``.
    """
    check_selection(method=method, rerank=rerank, rerank_score=rerank_score)
    if method == FORWARD:
        raise InvalidInputError("the forward-based cascade ranks any models: call rank_candidates")
    if verify_top < 0:
        raise InvalidInputError("verify_top must be >= 0")
    if method != "embedder":
        if ranker is None:
            raise InvalidInputError(f"method {method} needs a trained ranker (--ranker REPO_OR_FOLDER)")
        from ..spider.hub import load_ranker

        ranker = load_ranker(ranker) if isinstance(ranker, str) else ranker
    start, timings = time.perf_counter(), {}
    with timed(timings, "scan"):
        if index is None:
            found = scan(baseline, filter=filter, author=author, search=search, progress=progress)
        else:
            from ..hub.index import scan_index

            found = scan_index(index, baseline, author=author, search=search, progress=progress)
    skipped = dict(found.skipped)
    try:
        with timed(timings, "baseline load"):
            baseline_run = BaselineRun.start(baseline, task)
    except ModelLoadError as e:
        raise ModelLoadError(f"the baseline {baseline} (the model the embeddings are over) cannot be loaded: {e}; "
                             "pass --baseline with a model that has published embeddings; by baseline (repos): "
                             f"{found.baselines_line()}") from e
    chosen = baseline_run.comparable_group(found.entries)
    if chosen is None:
        raise InvalidInputError(f"no comparable embedding over {baseline} (weights {baseline_run.weights[7:19]}) "
                                "found on the Hub" + (f" ({len(skipped)} repos skipped)" if skipped else "")
                                + f"; published embeddings by baseline (repos): {found.baselines_line()}; "
                                "pass --baseline with one of them")
    task_features, task_embedding = baseline_run.embed_task(gamma=gamma, timings=timings, progress=progress)
    records = verification_records(baseline)
    entries = []
    for e in found.entries:  # sorted by repo id
        if e.settings != chosen:
            skipped[e.repo_id] = "embedded against other baseline weights or another reference set"
        elif e.vector.shape != task_embedding.vector.shape:
            skipped[e.repo_id] = f"embedding has {e.vector.size} values, the baseline {task_embedding.vector.size}"
        elif verified_only and not verification_status(e, records):
            skipped[e.repo_id] = "not verified at its current commit (run `hf_spider verify REPO`)"
        else:
            entries.append(e)

    def own_features(repo: str, with_source_probs: bool = False) -> Features | None:
        """One forward pass of a candidate; ``None`` (and the reason in ``skipped``) when it cannot be run."""
        with skipped_on_failure(skipped, repo), timed(timings, "rerank"):
            return run_model(repo, task, revision=by_repo[repo].repo_sha, with_source_probs=with_source_probs,
                             progress=progress)
        return None

    def rank(budget: int) -> tuple[list[Candidate], str, int]:
        candidates = {e.repo_id: Candidate(e.repo_id, 0.0, e.fidelity, e.metadata["created_at"],
                                           flags=embedding_flags(e, records)) for e in entries}
        for repo, c in candidates.items():
            c.parameters, c.downloads = found.sizes.get(repo, (None, 0))
        rank_by_prior(list(candidates.values()))
        matrix = np.stack([e.vector for e in entries]) if entries else np.zeros((0, task_embedding.vector.size))
        with timed(timings, "sweep"):
            embedder_scores = dict(rank_rows(task_embedding.vector, matrix, [e.repo_id for e in entries]))
        if method == "embedder":
            return _embedder_rank(candidates, embedder_scores, task, budget, rerank_score, own_features)
        with timed(timings, "spider"):
            ranked, k = _spider_rank(ranker, method, task, baseline, task_features, entries, candidates,
                                     embedder_scores, budget, lambda repo: getattr(own_features(repo), "features",
                                                                                   None), progress)
        return ranked, method + (f"+rerank(k={k})" if k else ""), k

    by_repo = {e.repo_id: e for e in entries}
    checked: dict[str, str] = {}
    if index is not None:  # the index's word for the zero-forward top k is checked against the repos themselves
        with timed(timings, "verify top"):
            _check_top(entries, lambda: rank(0)[0], verify_top, baseline, chosen, checked, skipped)
        by_repo = {e.repo_id: e for e in entries}
    ranked, label, k = rank(rerank)
    ranked = [c for c in ranked if c.repo_id not in skipped]
    return Selection(ranked, label, k, time.perf_counter() - start, task_embedding, skipped, timings, checked)


def _embedder_rank(candidates: dict[str, Candidate], embedder_scores: dict[str, float], task: Task, rerank: int,
                   rerank_score: str | None, own_features: Callable[..., Features | None],
                   ) -> tuple[list[Candidate], str, int]:
    """The embedder's order, its top ``rerank`` that can be run re-ordered by ``rerank_score``."""
    for repo, value in embedder_scores.items():
        candidates[repo].score = value
    ranked = sorted(candidates.values(), key=lambda c: (-c.score, c.repo_id))
    rescored: list[Candidate] = []
    if rerank:
        from .. import scores  # with torch: only a selection that runs candidates needs them

        rerank_score = rerank_score or "logme"
        needs_probs = "source_probs" in scores.info(rerank_score).needs
    for c in ranked if rerank else ():  # the top k that can be run: one that cannot gives its place to the next
        if len(rescored) == rerank:
            break
        if (f := own_features(c.repo_id, needs_probs)) is not None:
            c.rerank_score = scores.score(rerank_score, features=f.features, labels=task.labels,
                                          source_probs=f.source_probs, regression=task.regression)
            rescored.append(c)
    ranked = sorted(rescored, key=lambda c: (-c.rerank_score, c.repo_id)) + [c for c in ranked if c not in rescored]
    k = len(rescored)
    return ranked, "embedder" + (f"+rerank({rerank_score}, k={k})" if k else ""), k


def _check_top(entries: list[PublishedEmbedding], order: Callable[[], list[Candidate]], k: int, baseline: str,
               chosen: tuple, checked: dict[str, str], skipped: dict[str, str]) -> None:
    """Check the top ``k`` of ``order()`` against their repos, replacing or removing ``entries`` in place, until the
    top ``k`` are all checked (each check can move other models into it)."""
    from ..hub.index import check_against_source

    while unchecked := [c.repo_id for c in order()[:k] if c.repo_id not in checked]:
        for repo in unchecked:
            i = next(i for i, e in enumerate(entries) if e.repo_id == repo)
            source, checked[repo] = check_against_source(entries[i], baseline)
            if source is not None and source.settings != chosen:
                source, checked[repo] = None, f"dropped: {checked[repo]}, and its file is not comparable any more"
            if source is None:
                skipped[repo] = checked[repo]
                del entries[i]
            else:
                entries[i] = source


@dataclass
class BaselineRun:
    """The baseline on a task: its weights id, then its features and the task's embedding over it. A task selected
    before finds its features by the baseline's commit (:func:`~hf_spider.features.cached_features`): the baseline
    is then not even loaded."""

    baseline: str
    task: Task
    weights: str  # "sha256:…", what comparable embeddings name as their baseline_weights
    backbone: Backbone | None
    cached: Features | None

    @classmethod
    def start(cls, baseline: str, task: Task) -> BaselineRun:
        if (cached := cached_features(baseline, task)) is not None:
            return cls(baseline, task, f"sha256:{cached[1]}", None, cached[0])
        from ..backbones import load_backbone

        base = load_backbone(baseline)
        return cls(baseline, task, f"sha256:{base.weights_hash()}", base, None)

    def comparable_group(self, entries: Sequence[PublishedEmbedding]) -> tuple | None:
        """The settings (:attr:`PublishedEmbedding.settings`) most embeddings over these weights share: only those are
        comparable (SPEC §3.3). None when no embedding is over these weights."""
        groups = Counter(e.settings for e in entries if e.metadata.get("baseline_weights") == self.weights)
        return groups.most_common(1)[0][0] if groups else None

    def embed_task(self, *, gamma: float | str, timings: dict[str, float], progress: bool,
                   ) -> tuple[np.ndarray, TaskEmbedding]:
        """The baseline's features on the task [n, d] and the task's embedding (both cached)."""
        with timed(timings, "baseline forward"):
            features = self.cached if self.cached is not None else run_model(self.backbone, self.task,
                                                                             progress=progress)
        with timed(timings, "task embedding"):
            embedding = embed_task_cached(features.features, self.task.labels, regression=self.task.regression,
                                          gamma=gamma, progress=progress)
        return features.features, embedding


def _spider_rank(ranker: SpiderRanker, method: str, task: Task, baseline: str, baseline_features: np.ndarray,
                 entries: list, candidates: dict[str, Candidate], embedder_scores: dict[str, float], rerank: int,
                 own_features: Callable[[str], np.ndarray | None], progress: bool) -> tuple[list[Candidate], int]:
    """Model Spider's ranking of the candidates with a model token, re-ranking the top ``rerank``.

    ``spider+embedder`` orders by the mean of the two methods' ranks (Borda; ties by the spider's
    score) before the spider re-ranks the top k with the candidates' own features.
    """
    if ranker.token_source == "embedding":
        if ranker.baseline is None or model_key(ranker.baseline) != model_key(baseline):
            raise InvalidInputError(f"the ranker's model tokens are computed over {ranker.baseline}, not {baseline}; "
                                    f"pass --baseline {ranker.baseline}")
        repos = [e.repo_id for e in entries]
        tokens = {"embeddings": np.stack([e.vector for e in entries]) if entries else None}
    else:  # table tokens: only the training zoo (matched by name)
        table = {model_key(m): m for m in ranker.models}
        repos = [e.repo_id for e in entries if model_key(e.repo_id) in table]
        tokens = {"models": [table[model_key(r)] for r in repos]}
    if not repos:
        raise InvalidInputError("no candidate has a model token for this ranker")
    encoder_features = (baseline_features if model_key(ranker.encoder) == model_key(baseline)
                        else run_model(ranker.encoder, task, progress=progress).features)
    combine_with = np.array([embedder_scores[r] for r in repos]) if method == "spider+embedder" else None
    from ..spider.predict import rank_models

    ranking = rank_models(ranker, encoder_features, task.labels, regression=task.regression, rerank=rerank,
                          candidate_features=lambda i: own_features(repos[i]), combine_with=combine_with, **tokens)
    for i, repo in enumerate(repos):
        candidates[repo].score = float(ranking.scores[i])
        candidates[repo].rerank_score = ranking.rescored.get(i)
    return [candidates[repos[i]] for i in ranking.order], ranking.forward_passes

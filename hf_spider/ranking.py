"""The user's side: rank every published model for a task, optionally re-rank the top-k.

Standardized Embedder ranking needs no forward pass of any candidate: the task is embedded over
the baseline (one forward pass of the baseline on the task), then each published model embedding
is scored by fuzzy intersection. With a budget of ``rerank`` forward passes, the top candidates are
loaded and re-ordered by a forward-based score on their own features.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import scores
from .backbones import load_backbone
from .embedder import TaskEmbedding, embed_task, rank_rows
from .embedder.pipeline import DEFAULT_BASELINE
from .errors import InvalidInputError
from .features import extract_features
from .hub.embeddings import COMPATIBILITY_KEYS
from .hub.scan import scan
from .tasks import Task

__all__ = ["Candidate", "Selection", "select_models"]


@dataclass
class Candidate:
    repo_id: str
    score: float
    fidelity: tuple[float, float]
    published: str = ""  # when the embedding was computed (ISO date)
    rerank_score: float | None = None


@dataclass
class Selection:
    """Ranked candidates (best first), what it cost, and the repos left out with their reasons."""

    candidates: list[Candidate]
    method: str
    forward_passes: int
    seconds: float
    task_embedding: TaskEmbedding | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "method": self.method, "forward_passes": self.forward_passes, "seconds": round(self.seconds, 3),
            "gamma": None if self.task_embedding is None else self.task_embedding.gamma,
            "ranking": [{"rank": i + 1, "repo_id": c.repo_id, "score": c.score, "fidelity_to": c.fidelity[0],
                         "fidelity_from": c.fidelity[1], "published": c.published,
                         "rerank_score": c.rerank_score}
                        for i, c in enumerate(self.candidates)],
            "skipped": self.skipped,
        }


def select_models(
    task: Task,
    *,
    baseline: str = DEFAULT_BASELINE,
    rerank: int = 0,
    rerank_score: str = "logme",
    filter: str = "hf-spider",
    author: str | None = None,
    search: str | None = None,
    gamma: float | str = "auto",
    progress: bool = True,
) -> Selection:
    """Rank the models that published an embedding over ``baseline`` for ``task``.

    Only embeddings computed with the same baseline revision and reference set as the majority are
    comparable (SPEC §3.3); the others are reported in ``skipped``.
    """
    if rerank < 0:
        raise InvalidInputError("rerank must be >= 0")
    start = time.perf_counter()
    found = scan(baseline, filter=filter, author=author, search=search, progress=progress)
    skipped = dict(found.skipped)
    base = load_backbone(baseline)
    revision = base.revision or f"sha256:{base.weights_hash()}"
    groups = Counter(tuple(e.metadata[k] for k in COMPATIBILITY_KEYS) for e in found.entries
                     if e.metadata["baseline_revision"] == revision)
    if not groups:
        raise InvalidInputError(f"no comparable embedding over {baseline}@{revision[:12]} found on the Hub"
                                + (f" ({len(skipped)} repos skipped)" if skipped else ""))
    chosen = groups.most_common(1)[0][0]
    task_features = extract_features(base, task, progress=progress).features
    task_embedding = embed_task(task_features, task.labels, regression=task.regression, gamma=gamma,
                                progress=progress)
    entries = []
    for e in found.entries:  # sorted by repo id
        if tuple(e.metadata[k] for k in COMPATIBILITY_KEYS) != chosen:
            skipped[e.repo_id] = "embedded against another baseline revision or reference set"
        elif e.vector.shape != task_embedding.vector.shape:
            skipped[e.repo_id] = f"embedding has {e.vector.size} values, the baseline {task_embedding.vector.size}"
        else:
            entries.append(e)
    by_repo = {e.repo_id: e for e in entries}
    matrix = np.stack([e.vector for e in entries]) if entries else np.zeros((0, task_embedding.vector.size))
    ranked = [Candidate(repo, s, by_repo[repo].fidelity, by_repo[repo].metadata["created_at"])
              for repo, s in rank_rows(task_embedding.vector, matrix, list(by_repo))]
    k = min(rerank, len(ranked))
    if k:
        head = ranked[:k]
        for c in head:
            f = extract_features(load_backbone(c.repo_id, revision=by_repo[c.repo_id].repo_sha), task,
                                 with_source_probs="source_probs" in scores.info(rerank_score).needs,
                                 progress=progress)
            c.rerank_score = scores.score(rerank_score, features=f.features, labels=task.labels,
                                          source_probs=f.source_probs, regression=task.regression)
        ranked[:k] = sorted(head, key=lambda c: (-c.rerank_score, c.repo_id))
    method = "embedder" + (f"+rerank({rerank_score}, k={k})" if k else "")
    return Selection(ranked, method, k, time.perf_counter() - start, task_embedding, skipped)

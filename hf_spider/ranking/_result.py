"""What a selection returns, whichever way it ranked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..embedder import TaskEmbedding

__all__ = ["Candidate", "Selection", "rank_by_prior", "timed"]


@dataclass
class Candidate:
    """One ranked model. Published-embedding methods fill ``fidelity`` and ``published``; the
    forward-based cascade fills ``parameters`` and ``downloads``, the task-agnostic prior's signals."""

    repo_id: str
    score: float | None  # the method's own score (forward-based: None for a candidate it did not score)
    fidelity: tuple[float, float] | None = None
    published: str = ""  # when the embedding was computed (ISO date)
    rerank_score: float | None = None
    flags: list[str] = field(default_factory=list)  # implausible vector, failed verification (hf_spider.verify)
    prior_rank: int | None = None  # 1 = the largest model (parameters, then downloads)
    parameters: int | None = None
    downloads: int | None = None
    embedder_score: float | None = None  # forward-based cascade: the score of a published embedding, if any


@dataclass
class Selection:
    """Ranked candidates (best first), what it cost, and the repos left out with their reasons."""

    candidates: list[Candidate]
    method: str
    forward_passes: int
    seconds: float
    task_embedding: TaskEmbedding | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase (scan, baseline forward...)
    checked: dict[str, str] = field(default_factory=dict)  # index entries checked against their repos: what was found

    def to_json(self) -> dict:
        return {
            "method": self.method, "forward_passes": self.forward_passes, "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "gamma": None if self.task_embedding is None else self.task_embedding.gamma,
            "ranking": [{"rank": i + 1, "repo_id": c.repo_id, "score": c.score,
                         "fidelity_to": None if c.fidelity is None else c.fidelity[0],
                         "fidelity_from": None if c.fidelity is None else c.fidelity[1], "published": c.published,
                         "rerank_score": c.rerank_score, "flags": c.flags, "prior_rank": c.prior_rank,
                         "parameters": c.parameters, "downloads": c.downloads, "embedder_score": c.embedder_score}
                        for i, c in enumerate(self.candidates)],
            "skipped": self.skipped,
            "checked": self.checked,
        }


def rank_by_prior(candidates: list[Candidate]) -> list[Candidate]:
    """Set each candidate's ``prior_rank``, the task-agnostic ordering: largest first (parameters, unknown last),
    then most downloaded, then by id. Returns them in that order."""
    ordered = sorted(candidates, key=lambda c: (-(c.parameters or -1), -(c.downloads or 0), c.repo_id))
    for i, c in enumerate(ordered):
        c.prior_rank = i + 1
    return ordered


@contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[phase]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start

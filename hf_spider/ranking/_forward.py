"""Forward-based ranking of any candidates: a budgeted cascade that needs no published embedding.

1. Every candidate is ordered by signals that cost no forward pass of it. A task-agnostic prior: its parameter
   count (from the Hub's safetensors summary; for ONNX, the file size) and then its download count. A benchmark
   critique (Singh, Hess & Vanschoren, ICLR 2026) found such an ordering hard to beat, so every row shows its
   prior rank. With a ``baseline``, the candidates that published a comparable embedding over it also get the
   embedder's score (one forward pass of the baseline, none of theirs), and the order is the mean of each
   candidate's normalised ranks under the signals it has (Borda).
2. A forward-based score (LogME by default, any registered score) re-orders the prior's top ``rerank``
   candidates, or all of them: one forward pass of each over the task. A candidate that cannot be run gives
   its place in the budget to the next.

A candidate that cannot be described, downloaded, loaded or scored is reported in ``skipped`` with the reason;
the others are ranked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backbones import parse_model_id
from ..embedder import rank_rows
from ..errors import InvalidInputError
from ..formats.embedding import PublishedEmbedding, embedding_path
from ..formats.weights import count_parameters
from ..hub.candidates import HubModel, describe_models, list_candidates, skipped_on_failure
from ..hub.embeddings import fetch_embedding
from ..tasks import Task
from ._published import BaselineRun, run_model
from ._result import Candidate, Selection, rank_by_prior, timed

__all__ = ["SECONDS_PER_PARAMETER_IMAGE", "rank_candidates"]

#: The first guess of a forward pass's cost, before any is measured: the real zoo's 47 networks (144 M parameters)
#: take 0.77 s per image at their own input sizes on a 2-core CPU (docs/realzoo.md), 5.3 ns per parameter.
SECONDS_PER_PARAMETER_IMAGE = 5e-9


def rank_candidates(
    task: Task,
    models: Sequence[str] | None = None,
    *,
    filter: str | None = None,
    author: str | None = None,
    search: str | None = None,
    limit: int | None = None,
    score: str = "logme",
    rerank: int | None = None,
    baseline: str | None = None,
    progress: bool = True,
) -> Selection:
    """Rank ``models`` (Hub ids, ``local-dir:`` folders), or the Hub models a ``list_models`` query finds,
    for ``task``: the prior (and, over ``baseline``, the published embeddings) order them all, ``score``
    re-orders the top ``rerank`` (``None``: all of them).

    The scored candidates come first, best first; the rest follow in the first stage's order with
    ``score=None``. Private and gated repos are read with the token huggingface_hub finds (``HF_TOKEN``,
    ``hf auth login``).
    """
    from .. import scores

    scores.info(score)  # an unknown score is refused before any work, with the closest name
    if rerank is not None and rerank < 0:
        raise InvalidInputError("rerank must be >= 0 (or None for every candidate)")
    if models is None and not (filter or author or search):
        raise InvalidInputError("name the candidates (--models ID ...) or a Hub query (--filter, --author, --search)")
    start, timings = time.perf_counter(), {}
    with timed(timings, "describe"):
        if models is None:
            models = list_candidates(filter=filter, author=author, search=search, limit=limit)
        described, skipped = _describe(models)
    candidates = rank_by_prior([Candidate(m.repo_id, None, parameters=m.parameters, downloads=m.downloads)
                                for m in described])
    stage_one = "prior"
    published = [m for m in described if baseline and embedding_path(baseline) in m.files]
    if published:
        with timed(timings, "published embeddings"):
            entries = _fetch_embeddings(published, baseline, {c.repo_id: c for c in candidates})
        if entries:
            _score_published(BaselineRun.start(baseline, task), entries, candidates, timings, progress=progress)
            candidates = _borda(candidates)
            stage_one = "prior+embedder"
    budget = len(candidates) if rerank is None else min(rerank, len(candidates))
    revisions = {m.repo_id: m.sha for m in described}
    with timed(timings, "forward"):
        scored = _score(task, candidates, budget, revisions, score, skipped, progress=progress)
    ranked = sorted(scored, key=lambda c: (-c.score, c.repo_id)) + [
        c for c in candidates if c.score is None and c.repo_id not in skipped]
    return Selection(ranked, f"{stage_one}+{score}(k={len(scored)})" if scored else stage_one, len(scored),
                     time.perf_counter() - start, skipped=skipped, timings=timings)


def _fetch_embeddings(published: Sequence[HubModel], baseline: str, by_id: dict[str, Candidate],
                      ) -> list[PublishedEmbedding]:
    """The candidates' embeddings over ``baseline``, validated; one that fails is flagged and left to the prior."""
    entries = []
    for model in published:
        failed: dict[str, str] = {}
        with skipped_on_failure(failed, model.repo_id):
            entries.append(fetch_embedding(model.repo_id.partition("@")[0], baseline, revision=model.sha))
        if failed:
            by_id[model.repo_id].flags.append(f"published embedding not used: {failed[model.repo_id]}")
    return entries


def _score_published(run: BaselineRun, entries: list[PublishedEmbedding], candidates: Sequence[Candidate],
                     timings: dict[str, float], *, progress: bool) -> None:
    """Each candidate with an embedding comparable to the others over ``run``'s baseline gets the embedder's
    score (SPEC §3.3); one over other weights or settings is flagged."""
    chosen = run.comparable_group(entries)
    by_id = {c.repo_id.partition("@")[0]: c for c in candidates}
    comparable = []
    for e in entries:
        if chosen is not None and e.settings == chosen:
            comparable.append(e)
        else:
            by_id[e.repo_id].flags.append(f"published embedding not used: not over {run.baseline}'s weights and "
                                          "reference set")
    if not comparable:
        return
    _, task_embedding = run.embed_task(gamma="auto", timings=timings, progress=progress)
    comparable.sort(key=lambda e: e.repo_id)
    matrix = np.stack([e.vector for e in comparable])
    with timed(timings, "sweep"):
        for repo, value in rank_rows(task_embedding.vector, matrix, [e.repo_id for e in comparable]):
            by_id[repo].embedder_score = value


def _borda(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates by the mean of their normalised ranks (rank / how many that signal ranks) under the prior and,
    for those that have one, the embedder's score; ties by the prior. ``candidates`` are in the prior's order."""
    prior = {c.repo_id: (i + 1) / len(candidates) for i, c in enumerate(candidates)}
    with_score = sorted((c for c in candidates if c.embedder_score is not None),
                        key=lambda c: (-c.embedder_score, c.repo_id))
    embedder = {c.repo_id: (i + 1) / len(with_score) for i, c in enumerate(with_score)}
    mean = {r: (p + embedder[r]) / 2 if r in embedder else p for r, p in prior.items()}
    return sorted(candidates, key=lambda c: (mean[c.repo_id], prior[c.repo_id]))


def _describe(models: Sequence[str]) -> tuple[list[HubModel], dict[str, str]]:
    """Hub ids through the Hub's model info, folders from their files; anything else is skipped."""
    kinds = {m: parse_model_id(m) for m in models}
    described, skipped = describe_models([m for m, (kind, _, _) in kinds.items() if kind == "hub"])
    for model_id, (kind, name, _) in kinds.items():
        if kind == "local":
            described.append(_describe_folder(model_id, Path(name).expanduser()))
        elif kind == "builtin":
            skipped[model_id] = "not a Hub repo id (org/name) or a folder"
    return described, skipped


def _describe_folder(model_id: str, folder: Path) -> HubModel:
    """A local candidate's parameter count from its safetensors headers (else its ONNX file size / 4)."""
    counts = [count_parameters(p) for p in sorted(folder.glob("*.safetensors"))]
    if counts and None not in counts:
        return HubModel(model_id, parameters=sum(sum(c.values()) for c in counts))
    onnx = sum(p.stat().st_size for p in folder.glob("*.onnx"))
    return HubModel(model_id, parameters=onnx // 4 or None)


def _score(task: Task, candidates: Sequence[Candidate], budget: int, revisions: dict[str, str | None], score: str,
           skipped: dict[str, str], *, progress: bool) -> list[Candidate]:
    """One forward pass and ``score`` for each of the first ``budget`` candidates that can be run: one that fails
    goes to ``skipped`` and the next takes its place. Prints the estimated time first (parameters × images at
    :data:`SECONDS_PER_PARAMETER_IMAGE`), then corrects it by what it measures."""
    from tqdm.auto import tqdm

    from .. import scores

    needs_probs = "source_probs" in scores.info(score).needs
    typical = _median([c.parameters for c in candidates if c.parameters]) or 10_000_000
    work = {c.repo_id: (c.parameters or typical) * len(task) for c in candidates}
    planned = sum(work[c.repo_id] for c in candidates[:budget])
    rate, spent, done = SECONDS_PER_PARAMETER_IMAGE, 0.0, 0.0
    bar = tqdm(total=budget, desc=f"{score} on each candidate", disable=not progress or not budget)
    if budget and progress:
        bar.write(f"{score}: {budget} candidates × {len(task)} images, about {_duration(rate * planned)} "
                  "(from parameter counts; corrected as it runs)")
    scored = []
    for candidate in candidates:
        if len(scored) == budget:
            break
        tick = time.perf_counter()
        with skipped_on_failure(skipped, candidate.repo_id):
            f = run_model(candidate.repo_id, task, revision=revisions[candidate.repo_id],
                          with_source_probs=needs_probs, progress=False)
            candidate.score = scores.score(score, features=f.features, labels=task.labels,
                                           source_probs=f.source_probs, regression=task.regression)
        if candidate.repo_id in skipped:
            continue
        scored.append(candidate)
        spent, done = spent + time.perf_counter() - tick, done + work[candidate.repo_id]
        rate = spent / done
        bar.set_postfix_str(f"about {_duration(rate * max(planned - done, 0.0))} left")
        bar.update()
    bar.close()
    return scored


def _median(values: list[int]) -> int | None:
    return sorted(values)[len(values) // 2] if values else None


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"

"""Forward-based ranking of any candidates: a budgeted cascade that needs no published embedding.

1. Every candidate is ordered by a task-agnostic prior that costs no forward pass: its parameter count (from
   the Hub's safetensors summary; for ONNX, the file size) and then its download count. A benchmark critique
   (Singh, Hess & Vanschoren, ICLR 2026) found such an ordering hard to beat, so every row shows its prior rank.
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

from .. import scores
from ..backbones import load_backbone, parse_model_id
from ..errors import InvalidInputError
from ..features import extract_features
from ..hub.candidates import HubModel, count_parameters, describe_models, list_candidates, skipped_on_failure
from ..tasks import Task
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
    progress: bool = True,
) -> Selection:
    """Rank ``models`` (Hub ids, ``local-dir:`` folders), or the Hub models a ``list_models`` query finds,
    for ``task``: the prior orders them all, ``score`` re-orders the top ``rerank`` (``None``: all of them).

    The scored candidates come first, best first; the rest follow in the prior's order with ``score=None``.
    Private and gated repos are read with the token huggingface_hub finds (``HF_TOKEN``, ``hf auth login``).
    """
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
    budget = len(candidates) if rerank is None else min(rerank, len(candidates))
    revisions = {m.repo_id: m.sha for m in described}
    with timed(timings, "forward"):
        scored = _score(task, candidates, budget, revisions, score, skipped, progress=progress)
    ranked = sorted(scored, key=lambda c: (-c.score, c.repo_id)) + [
        c for c in candidates if c.score is None and c.repo_id not in skipped]
    return Selection(ranked, f"prior+{score}(k={len(scored)})" if scored else "prior", len(scored),
                     time.perf_counter() - start, skipped=skipped, timings=timings)


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
            backbone = load_backbone(candidate.repo_id, revision=revisions[candidate.repo_id])
            f = extract_features(backbone, task, with_source_probs=needs_probs, progress=False)
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

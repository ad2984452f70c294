"""Ranking with a trained Model Spider: one batched pass, then optional re-ranking of the top k (SPEC §4.4)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidInputError
from ..rankagg import borda
from .model import SpiderRanker
from .tokens import class_means

__all__ = ["SpiderRanking", "one_thread", "order_to_scores", "rank_models"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: the ranker's matrices are tiny, and threads only add contention."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class SpiderRanking:
    """``order``: candidate indices best first; ``scores``: general-token scores; ``rescored``: index -> score
    with the candidate's own task tokens (the re-ranked top k); ``forward_passes``: candidates run on the task."""

    order: np.ndarray
    scores: np.ndarray
    rescored: dict[int, float]
    forward_passes: int = 0


@one_thread()
@torch.inference_mode()
def rank_models(ranker: SpiderRanker, encoder_features: np.ndarray, labels: np.ndarray, *,
                models: Sequence[str] | None = None, embeddings: np.ndarray | None = None, regression: bool = False,
                rerank: int = 0, candidate_features: Callable[[int], np.ndarray] | None = None,
                combine_with: np.ndarray | None = None) -> SpiderRanking:
    """Score every candidate for a task from the general encoder's features, re-rank the top ``rerank``.

    Args:
        encoder_features: the ranker's encoder's features of the task ``[n, e]``.
        labels: the task's labels (real targets with ``regression``; they are binned).
        models / embeddings: the candidates' ids (table tokens) or embedding vectors ``[M, N]``.
        rerank: forward-pass budget k; ``candidate_features(i)`` returns candidate i's own features of
            the task ``[n, d_i]`` (one forward pass), or ``None`` when it cannot be run: the next candidate
            then takes its place in the budget. Only the order among the re-scored candidates changes; a
            candidate whose feature width has no trained projection keeps its place.
        combine_with: another method's scores of the same candidates (higher is better): the order
            before re-ranking is then the mean of both rankings (Borda), ties by the ranker's score.
    """
    ranker.eval()
    general = class_means(encoder_features, labels, regression=regression)
    if general.shape[1] != ranker.task_proj.in_features:
        raise InvalidInputError(f"the ranker expects {ranker.task_proj.in_features}-wide features of its encoder "
                                f"{ranker.encoder}, got {general.shape[1]}")
    theta = ranker.model_tokens(models=models, embeddings=None if embeddings is None else torch.as_tensor(embeddings))
    if combine_with is not None and np.shape(combine_with) != (len(theta),):
        raise InvalidInputError(f"combine_with has shape {np.shape(combine_with)}, not one score per candidate "
                                f"({len(theta)})")
    scores = ranker(general, theta, regression=regression).numpy()
    prior = scores if combine_with is None else borda(np.stack([scores, np.asarray(combine_with, dtype=float)]))[0]
    order = np.lexsort((-scores, -prior))
    rescored: dict[int, float] = {}
    if rerank > 0:
        if candidate_features is None:
            raise InvalidInputError("re-ranking needs candidate_features (the candidates' own features)")
        specific, passes = {}, 0
        for i in order:
            if passes == rerank:
                break
            f = candidate_features(int(i))
            if f is None:  # the candidate could not be run: the next one takes its place in the budget
                continue
            passes += 1
            if f.shape[1] in ranker.specific_widths:
                specific[int(i)] = class_means(f, labels, regression=regression)
        if specific:
            new = ranker(general, theta, specific, regression=regression).numpy()
            rescored = {i: float(new[i]) for i in specific}
            slots = [p for p, i in enumerate(order) if int(i) in rescored]
            order[slots] = sorted(rescored, key=lambda i: -rescored[i])
        return SpiderRanking(order, scores, rescored, forward_passes=passes)
    return SpiderRanking(order, scores, rescored)


def order_to_scores(order: np.ndarray) -> np.ndarray:
    """A score per model that sorts like ``order`` (best first): M for the first, 1 for the last."""
    out = np.empty(len(order))
    out[order] = np.arange(len(order), 0, -1)
    return out

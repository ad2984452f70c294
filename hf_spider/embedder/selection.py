"""Selection by the Standardized Embedder (SPEC §3.3; Wang, Zhuang & Lyu 2024, §4.3 "Selection metric").

Task and model embeddings are fuzzy sets over the same N baseline features; a model's score is the
cardinality of their standard fuzzy intersection, I(u, v) = Σ_i min(u_i, v_i): how many of the
features the task needs the model has. Embeddings are comparable only when the baseline model, its
revision and the reference set match (checked where embeddings are loaded, not here).

    score = fuzzy_intersection(task.vector, model.vector)
    ranking = rank_by_embedding(task.vector, {"org/model-a": va, "org/model-b": vb})   # best first
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hf_spider._arrays import as_float_array
from hf_spider.errors import InvalidInputError
from hf_spider.formats.matrix import MappedMatrix

__all__ = ["fuzzy_intersection", "rank_by_embedding", "rank_rows", "sweep"]

_CHUNK = 4096  # rows per block of the sweep (a 4096 x 512 float32 temporary is 8 MiB)


def _check_embeddings(x: Any, name: str, n: int | None = None) -> np.ndarray:
    """Embedding(s) as float64 [..., N], finite and in [0, 1], with last dimension ``n`` if given."""
    arr = as_float_array(x, name)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise InvalidInputError(f"{name} must be non-empty vectors, got shape {arr.shape}")
    if n is not None and arr.shape[-1] != n:
        raise InvalidInputError(
            f"{name} have length {arr.shape[-1]} but the task embedding has {n}; "
            "embeddings are comparable only with the same baseline model"
        )
    if arr.min() < 0 or arr.max() > 1:
        raise InvalidInputError(f"{name} must lie in [0, 1], got values in [{arr.min():.4g}, {arr.max():.4g}]")
    return arr


def fuzzy_intersection(u: Any, v: Any) -> float:
    """I(u, v) = Σ_i min(u_i, v_i), the cardinality of the standard fuzzy intersection (paper §4.3).

    Args:
        u, v: embeddings [N] in [0, 1] (numpy, torch or lists).
    """
    u_arr = _check_embeddings(u, "u")
    if u_arr.ndim != 1:
        raise InvalidInputError(f"u must be 1-D [N], got shape {u_arr.shape}")
    v_arr = _check_embeddings(v, "v", n=u_arr.shape[0])
    if v_arr.ndim != 1:
        raise InvalidInputError(f"v must be 1-D [N], got shape {v_arr.shape}")
    return float(np.minimum(u_arr, v_arr).sum())


def rank_by_embedding(task_vector: Any, model_vectors: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Models ranked by I(task, model), best first; equal scores in name order.

    Args:
        task_vector: task embedding u [N] in [0, 1].
        model_vectors: model name → model embedding [N] in [0, 1].
    Returns:
        [(name, score)] for every model, scores descending.
    """
    u = _check_embeddings(task_vector, "task_vector")
    if u.ndim != 1:
        raise InvalidInputError(f"task_vector must be 1-D [N], got shape {u.shape}")
    if not model_vectors:
        return []
    names = sorted(model_vectors)
    shapes = {name: np.shape(model_vectors[name]) for name in names}
    bad = [name for name in names if shapes[name] != u.shape]
    if bad:
        raise InvalidInputError(
            f"model embedding {bad[0]!r} has shape {shapes[bad[0]]} but the task embedding {u.shape}; "
            "embeddings are comparable only with the same baseline model"
        )
    matrix = _check_embeddings(
        np.stack([np.asarray(model_vectors[k], dtype=np.float64) for k in names]), "model embeddings", n=u.shape[0]
    )  # [M, N]
    return rank_rows(u, matrix, names)


def sweep(task_vector: np.ndarray, rows: np.ndarray | MappedMatrix) -> np.ndarray:
    """I(u, v_m) for every row of ``rows`` [M, N] (validated already): scores [M] float64.

    ``rows`` is an array or a memory-mapped matrix (:class:`~hf_spider.formats.matrix.MappedMatrix`, whose pages are
    released block by block); either way it is read in blocks of 4,096 rows that keep the ``np.minimum``
    temporary in cache.
    """
    u = task_vector.astype(np.float32 if isinstance(rows, MappedMatrix) else rows.dtype)[None, :]  # [1, N]
    blocks = rows.blocks(_CHUNK) if isinstance(rows, MappedMatrix) else (
        (start, rows[start : start + _CHUNK]) for start in range(0, len(rows), _CHUNK))
    scores = np.empty(len(rows), dtype=np.float64)
    for start, block in blocks:
        scores[start : start + len(block)] = np.minimum(block, u).sum(1)  # I(u, v_m), pairwise sum
    return scores


def rank_rows(task_vector: np.ndarray, matrix: np.ndarray | MappedMatrix, names: Sequence[str],
              ) -> list[tuple[str, float]]:
    """The sweep of :func:`rank_by_embedding` on embeddings validated already (e.g. by ``scan``).

    ``matrix`` [M, N] holds one model embedding per row (see :func:`sweep`), named by ``names`` in sorted order (so
    that equal scores come out in name order); ``task_vector`` [N].
    """
    scores = sweep(task_vector, matrix)
    order = np.argsort(-scores, kind="stable")  # ties keep index order = name order
    return list(zip([names[i] for i in order], scores[order].tolist(), strict=True))

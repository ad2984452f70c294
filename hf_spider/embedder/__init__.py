"""Standardized Embedder (SPEC §3; Wang, Zhuang & Lyu 2024): isolated model embeddings over the
features of a public baseline model, task embeddings by feature sifting, selection by fuzzy intersection.

    from hf_spider.embedder import embed_model, embed_task, rank_by_embedding

    model_emb = embed_model(F, B_ref)                 # owner side: F [n, d_m], B_ref [n, N] on the reference set
    task_emb = embed_task(B_task, labels)             # user side: baseline features of the task + labels
    rank_by_embedding(task_emb.vector, {"org/model": model_emb.vector})

Everything here runs on cached feature arrays; extraction and Hub publication live elsewhere.
"""

from typing import TYPE_CHECKING

from hf_spider._lazy import lazy_attributes
from hf_spider.embedder._common import TaskEmbedding, embed_task_cached
from hf_spider.embedder.selection import fuzzy_intersection, rank_by_embedding, rank_rows, sweep

if TYPE_CHECKING:
    from hf_spider.embedder.model_embedding import AffineMaps, ModelEmbedding, embed_model, fidelity
    from hf_spider.embedder.task_embedding import DEFAULT_GAMMA_GRID, choose_gamma, embed_task

__all__ = [
    "DEFAULT_GAMMA_GRID",
    "AffineMaps",
    "ModelEmbedding",
    "TaskEmbedding",
    "choose_gamma",
    "embed_model",
    "embed_task",
    "embed_task_cached",
    "fidelity",
    "fuzzy_intersection",
    "rank_by_embedding",
    "rank_rows",
    "sweep",
]

# The optimisations need torch; selecting with cached embeddings does not.
__getattr__ = lazy_attributes(__name__, {
    **dict.fromkeys(("AffineMaps", "ModelEmbedding", "embed_model", "fidelity"), "model_embedding"),
    **dict.fromkeys(("DEFAULT_GAMMA_GRID", "choose_gamma", "embed_task"), "task_embedding"),
})

"""The owner's side end to end: embed one Hub model against a baseline and publish the vector.

``features -> embedder -> hub``: features of the model and of the baseline on the reference set
(cached, so a re-run or a second model reuses the baseline's; a killed extraction resumes from its
checkpoints), :func:`embed_model` on them, then :func:`hf_spider.hub.embeddings.publish_embedding` in one
commit. Re-running on an unchanged model and baseline is a no-op decided from the published metadata,
before any forward pass. Every download and Hub call is retried on network faults
(:func:`~hf_spider.hub.retry.with_retries`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__
from ..backbones import load_backbone
from ..constants import DEFAULT_BASELINE
from ..features import extract_features
from ..formats.embedding import FORMAT_VERSION
from ..hub.client import hub_api
from ..hub.embeddings import fetch_embedding, publish_embedding
from ..hub.retry import with_retries
from ..tasks import load_task
from .model_embedding import ModelEmbedding, embed_model

__all__ = ["DEFAULT_BASELINE", "DEFAULT_REFERENCE", "EmbedResult", "embed_repo"]

DEFAULT_REFERENCE = "imagenet-val"  # the paper's reference set: the 50,000 ImageNet validation images
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".json")


@dataclass(frozen=True)
class EmbedResult:
    """What :func:`embed_repo` did: the vector and metadata, and the commit if it published."""

    repo_id: str
    vector: np.ndarray
    metadata: dict[str, str]
    embedding: ModelEmbedding | None  # None when the published embedding was already up to date
    commit_url: str | None = None
    pr_url: str | None = None

    @property
    def up_to_date(self) -> bool:
        return self.embedding is None


def weights_digest(siblings: Any) -> str:
    """sha256 over the blob ids of a repo's weight and config files: changes iff the model changes."""
    parts = sorted(f"{s.rfilename}:{s.blob_id}" for s in siblings
                   if s.rfilename.endswith(_WEIGHT_SUFFIXES) and not s.rfilename.startswith("hf_spider/"))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def embed_repo(
    repo_id: str,
    *,
    baseline: str = DEFAULT_BASELINE,
    reference: str = DEFAULT_REFERENCE,
    reference_split: str | None = None,
    max_per_class: int | None = None,
    steps: int = 4000,
    seed: int = 0,
    revision: str | None = None,
    push: bool = True,
    create_pr: bool = False,
    force: bool = False,
    progress: bool = True,
) -> EmbedResult:
    """Embed ``repo_id`` against ``baseline`` on ``reference`` and (by default) publish it.

    Args:
        repo_id: the model repo (timm or transformers image model).
        baseline: the public baseline model every comparable embedding uses.
        reference: reference dataset (Hub id, alias or folder); ``reference_split`` defaults to the
            alias's split or ``train``; ``max_per_class`` caps it (balanced, seeded).
        steps, seed: optimisation length and seed (recorded; ``hf_spider verify`` replays them).
        revision: model revision to embed (default: the main branch).
        push: publish the result in one commit (``create_pr`` opens a pull request instead).
        force: recompute even if an up-to-date embedding is already published.
    """
    from huggingface_hub.errors import RemoteEntryNotFoundError

    info = with_retries(lambda: hub_api().model_info(repo_id, revision=revision, files_metadata=True),
                        what=f"reading {repo_id}")
    base = with_retries(lambda: load_backbone(baseline), what=f"loading the baseline {baseline}")
    task = with_retries(lambda: load_task(reference, split=reference_split, max_per_class=max_per_class, seed=seed),
                        what=f"loading the reference set {reference}")
    identity = {
        "format_version": FORMAT_VERSION,
        "baseline": baseline.removeprefix("hf-hub:"),
        "baseline_revision": base.revision or f"sha256:{base.weights_hash()}",
        "baseline_weights": f"sha256:{base.weights_hash()}",  # what selection compares (COMPATIBILITY_KEYS)
        "reference": reference,
        "reference_split": task.name.rsplit(":", 1)[-1] if ":" in task.name else (reference_split or ""),
        "reference_fingerprint": task.fingerprint,
        "max_per_class": "" if max_per_class is None else str(max_per_class),  # replayed by hf_spider verify
        "model": repo_id,
        "model_weights": weights_digest(info.siblings),
        "steps": str(steps),
        "seed": str(seed),
    }
    if not force:
        try:
            published = with_retries(lambda: fetch_embedding(repo_id, baseline, revision=info.sha),
                                     what=f"reading the published embedding of {repo_id}")
            if all(published.metadata.get(k) == v for k, v in identity.items()):
                return EmbedResult(repo_id, published.vector, published.metadata, None)
        except RemoteEntryNotFoundError:  # nothing published yet (a network failure is not "nothing")
            pass

    model = with_retries(lambda: load_backbone(repo_id, revision=info.sha), what=f"loading {repo_id}")
    model_features = extract_features(model, task, progress=progress).features
    baseline_features = extract_features(base, task, progress=progress).features
    embedding = embed_model(model_features, baseline_features, steps=steps, seed=seed, progress=progress)
    metadata = {
        **identity,
        "model_revision": info.sha,
        "fidelity_to": f"{embedding.fidelity_to:.6f}",
        "fidelity_from": f"{embedding.fidelity_from:.6f}",
        "tau": str(embedding.tau),
        "tool_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if not push:
        return EmbedResult(repo_id, embedding.vector, metadata, embedding)
    commit = publish_embedding(repo_id, embedding.vector, metadata, revision=revision, create_pr=create_pr)
    return EmbedResult(repo_id, embedding.vector, metadata, embedding, commit.commit_url, commit.pr_url)

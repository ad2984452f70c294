"""The feature cache: one safetensors file per (model + commit or weights hash, task fingerprint, source
probabilities on/off, preprocessing, precision), written atomically by the main process only. A hit does no
forward pass; a corrupt or mismatched file is ignored (with a warning) and recomputed. Nothing here imports
torch: a selection that finds its features here never loads a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .._files import atomic_path, write_atomic
from ..backbones import resolve_revision
from ..constants import cache_root
from ..tasks import Task

if TYPE_CHECKING:
    from ..backbones import Backbone

__all__ = ["CACHE_FORMAT", "Features", "cache_key", "cached_features", "default_cache_dir"]

logger = logging.getLogger(__name__)

CACHE_FORMAT = "1"


@dataclass
class Features:
    """Features of one model on one task.

    Attributes:
        features: float32 ``[n, d]``, rows in the task's order.
        source_probs: float32 ``[n, C_s]`` softmax of the source head's logits, or ``None``.
        labels: the task's labels (``int64 [n]`` or float32 targets).
        model_id, revision, task_fingerprint: provenance (``revision`` is ``None`` for local/builtin models).
        from_cache: whether the arrays were read from the cache (no forward pass).
        resumed_rows: rows read from the checkpoints of an interrupted run (no forward pass for those).
        cache_path: the cache file written or read, ``None`` when caching is off.
        stats: seconds spent ``waiting`` for batches, in ``forward`` and in ``total`` (0 on a cache hit), and
            ``computed``: the ``total`` of the extraction that produced the arrays (read from the cache on a
            hit; NaN for cache files written before it was recorded).
    """

    features: np.ndarray
    source_probs: np.ndarray | None
    labels: np.ndarray
    model_id: str = ""
    revision: str | None = None
    task_fingerprint: str = ""
    from_cache: bool = False
    resumed_rows: int = 0
    cache_path: Path | None = None
    stats: dict[str, float] = field(default_factory=dict)


def default_cache_dir() -> Path:
    """``$HF_SPIDER_CACHE/features`` if set, else ``~/.cache/hf_spider/features``."""
    return cache_root() / "features"


@dataclass(frozen=True)
class _Signature:
    """What a Hub model's cache key and cache check need, remembered per commit (``<cache>/models/``), so that
    :func:`cached_features` finds a result without downloading or loading the model."""

    model_id: str
    revision: str
    library: str
    preprocess_config: str
    feature_dim: int
    num_source_classes: int | None
    weights: str

    def weights_hash(self) -> str:
        return self.weights

    @classmethod
    def of(cls, backbone: Backbone) -> _Signature:
        return cls(backbone.model_id, backbone.revision, backbone.library, backbone.preprocess_config,
                   backbone.feature_dim, backbone.num_source_classes, backbone.weights_hash())


def _signature_path(cache: Path, model_id: str, revision: str) -> Path:
    return cache / "models" / f"{hashlib.sha256(f'{model_id}@{revision}'.encode()).hexdigest()}.json"


def cached_features(model_id: str, task: Task, *, with_source_probs: bool = False,
                    cache_dir: str | os.PathLike | None = None) -> tuple[Features, str] | None:
    """``(features, weights hash)`` of a Hub model on ``task`` if an earlier :func:`extract_features` cached them
    at the model's current commit; ``None`` otherwise. Costs one Hub call (the commit), no download or load."""
    revision = resolve_revision(model_id)
    if revision is None:  # a folder or a timm name: no commit to remember it by
        return None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        signature = _Signature(**json.loads(_signature_path(cache, model_id, revision).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    key = cache_key(signature, task, with_source_probs=with_source_probs)  # a CPU (fp32) result
    path = cache / f"{key}.safetensors"
    cached = _read_cache(path, key=key, task=task, d=signature.feature_dim, c_source=signature.num_source_classes,
                         with_source_probs=with_source_probs)
    if cached is None:
        return None
    features, probs, seconds = cached
    return Features(features, probs, task.labels, model_id, revision, task.fingerprint, from_cache=True,
                    cache_path=path, stats={"waiting": 0.0, "forward": 0.0, "total": 0.0, "computed": seconds}
                    ), signature.weights


def _remember_signature(cache: Path, backbone: Backbone) -> None:
    if backbone.revision is None:
        return
    path = _signature_path(cache, backbone.model_id, backbone.revision)
    if not path.is_file():
        write_atomic(path, json.dumps(dataclasses.asdict(_Signature.of(backbone))))


def cache_key(backbone: Backbone | _Signature, task: Task, *, with_source_probs: bool,
              precision: str = "fp32") -> str:
    """sha256 naming the result: model + commit (or weights hash), task, outputs, preprocessing, precision."""
    spec = {
        "format": CACHE_FORMAT,
        "library": backbone.library,
        "model_id": backbone.model_id,
        "weights": backbone.revision or f"sha256:{backbone.weights_hash()}",
        "task": task.fingerprint,
        "source_probs": bool(with_source_probs),
        "preprocess": backbone.preprocess_config,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, *, key: str, task: Task, d: int, c_source: int | None,
                with_source_probs: bool) -> tuple[np.ndarray, np.ndarray | None, float] | None:
    """The cached arrays and the seconds they took if ``path`` holds a valid result for ``key``; ``None`` (and a
    warning) otherwise."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    n = len(task)
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            names = set(f.keys())
            features = f.get_tensor("features")
            probs = f.get_tensor("source_probs") if with_source_probs else None
            labels = f.get_tensor("labels") if "labels" in names else None
        problems = []
        if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
            problems.append("metadata does not match the request")
        if meta.get("task_fingerprint") != task.fingerprint:
            problems.append("task fingerprint differs")
        if features.dtype != np.float32 or features.shape != (n, d):
            problems.append(f"features {features.dtype}{features.shape}, expected float32{(n, d)}")
        elif not np.isfinite(features).all():
            problems.append("features are not finite")
        if labels is None or labels.shape != task.labels.shape or not np.array_equal(labels, task.labels):
            problems.append("labels differ from the task's")
        if with_source_probs:
            if probs is None or probs.dtype != np.float32 or probs.shape != (n, c_source):
                shape = None if probs is None else probs.shape
                problems.append(f"source_probs shape {shape}, expected {(n, c_source)}")
            elif not np.isfinite(probs).all() or (n and not np.allclose(probs.sum(1), 1.0, atol=1e-3)):
                problems.append("source_probs are not probabilities")
    except Exception as exc:  # unreadable header, truncated file, missing tensor...
        problems = [f"unreadable ({type(exc).__name__}: {exc})"]
    if problems:
        logger.warning("Ignoring feature cache %s: %s; recomputing.", path, "; ".join(problems))
        return None
    try:
        seconds = float(meta.get("seconds", "nan"))
    except ValueError:
        seconds = math.nan
    return features, probs, seconds


def _write_cache(path: Path, *, key: str, backbone: Backbone, task: Task, features: np.ndarray,
                 probs: np.ndarray | None, seconds: float) -> None:
    """Write the cache file atomically; a failure only costs recomputing it next time."""
    from safetensors.numpy import save_file

    tensors = {"features": np.ascontiguousarray(features, dtype=np.float32),
               "labels": np.ascontiguousarray(task.labels)}
    if probs is not None:
        tensors["source_probs"] = np.ascontiguousarray(probs, dtype=np.float32)
    metadata = {
        "format": CACHE_FORMAT, "key": key, "model_id": backbone.model_id, "revision": backbone.revision or "",
        "library": backbone.library, "task_fingerprint": task.fingerprint, "task_name": task.name,
        "n": str(features.shape[0]), "d": str(features.shape[1]), "hf_spider_version": __version__,
        "seconds": f"{seconds:.3f}",
    }
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)
    except OSError as exc:
        logger.warning("Could not write feature cache %s: %s", path, exc)

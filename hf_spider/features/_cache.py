"""The feature cache (:class:`FeatureCache`): one safetensors file per (model + commit or weights hash, task
fingerprint, source probabilities on/off, preprocessing, precision), written atomically by the main process only,
and the checkpoints of unfinished extractions. A hit does no forward pass; a corrupt or mismatched file is ignored
(with a warning) and recomputed. Nothing here imports torch: a selection that finds its features here never loads
a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
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

__all__ = ["CACHE_FORMAT", "FeatureCache", "Features", "cache_key", "cached_features", "default_cache_dir"]

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


def cached_features(model_id: str, task: Task, *, with_source_probs: bool = False,
                    cache_dir: str | os.PathLike | None = None) -> tuple[Features, str] | None:
    """``(features, weights hash)`` of a Hub model on ``task`` if an earlier :func:`extract_features` cached them
    at the model's current commit; ``None`` otherwise. Costs one Hub call (the commit), no download or load."""
    revision = resolve_revision(model_id)
    if revision is None:  # a folder or a timm name: no commit to remember it by
        return None
    cache = FeatureCache(cache_dir)
    signature = cache.signature(model_id, revision)
    if signature is None:
        return None
    key = cache_key(signature, task, with_source_probs=with_source_probs)  # a CPU (fp32) result
    features = cache.load(key, signature, task, with_source_probs=with_source_probs)
    return None if features is None else (features, signature.weights)


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


class FeatureCache:
    """One cache folder: ``<key>.safetensors`` per result (float32 features, the task's labels, optionally source
    probabilities; provenance in the metadata), ``<key>.partial/rows-<a>-<b>.safetensors`` checkpoints of an
    unfinished one, and ``models/`` the signatures :func:`cached_features` finds results by. Every file is written
    atomically; one that does not hold what its name promises is ignored (with a warning) and recomputed, and a
    failed write only costs the recomputation.

    Args:
        folder: default :func:`default_cache_dir`.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def load(self, key: str, model: Backbone | _Signature, task: Task, *, with_source_probs: bool) -> Features | None:
        """The result named ``key`` of ``model`` on ``task`` (a hit: no forward pass), or ``None``."""
        path = self.path(key)
        arrays = _read_arrays(path, key=key, task=task, d=model.feature_dim, c_source=model.num_source_classes,
                              with_source_probs=with_source_probs)
        if arrays is None:
            return None
        features, probs, meta = arrays
        try:
            seconds = float(meta.get("seconds", "nan"))
        except ValueError:
            seconds = math.nan
        return Features(features, probs, task.labels, model.model_id, model.revision, task.fingerprint,
                        from_cache=True, cache_path=path,
                        stats={"waiting": 0.0, "forward": 0.0, "total": 0.0, "computed": seconds})

    def save(self, key: str, backbone: Backbone, task: Task, features: np.ndarray, probs: np.ndarray | None, *,
             seconds: float) -> None:
        """Store a finished result under ``key`` and drop its checkpoints."""
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
        _save(self.path(key), tensors, metadata, what="cache")
        self.drop_checkpoints(key)

    def load_checkpoint(self, key: str, rows: range, model: Backbone, *,
                        with_source_probs: bool) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The saved features (and source probabilities) of the task's ``rows`` for ``key``, or ``None``."""
        arrays = _read_arrays(self._checkpoint(key, rows), key=key, rows=len(rows), d=model.feature_dim,
                              c_source=model.num_source_classes, with_source_probs=with_source_probs)
        return None if arrays is None else arrays[:2]

    def save_checkpoint(self, key: str, rows: range, features: np.ndarray, probs: np.ndarray | None) -> None:
        """Save the finished ``rows`` of an extraction, so that a killed run resumes after them."""
        tensors = {"features": np.ascontiguousarray(features)}
        if probs is not None:
            tensors["source_probs"] = np.ascontiguousarray(probs)
        _save(self._checkpoint(key, rows), tensors, {"key": key, "rows": f"{rows.start}-{rows.stop}"},
              what="checkpoint")

    def drop_checkpoints(self, key: str) -> None:
        shutil.rmtree(self.path(key).with_suffix(".partial"), ignore_errors=True)

    def _checkpoint(self, key: str, rows: range) -> Path:
        return self.path(key).with_suffix(".partial") / f"rows-{rows.start}-{rows.stop}.safetensors"

    def remember(self, backbone: Backbone) -> None:
        """Record what :func:`cached_features` needs to find this Hub model's CPU results by its commit alone."""
        if backbone.revision is None:
            return
        path = self._signature_path(backbone.model_id, backbone.revision)
        if not path.is_file():
            write_atomic(path, json.dumps(dataclasses.asdict(_Signature.of(backbone))))

    def signature(self, model_id: str, revision: str) -> _Signature | None:
        try:
            return _Signature(**json.loads(self._signature_path(model_id, revision).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _signature_path(self, model_id: str, revision: str) -> Path:
        return self.folder / "models" / f"{hashlib.sha256(f'{model_id}@{revision}'.encode()).hexdigest()}.json"


def _read_arrays(path: Path, *, key: str, d: int, c_source: int | None, with_source_probs: bool,
                 task: Task | None = None, rows: int | None = None,
                 ) -> tuple[np.ndarray, np.ndarray | None, dict[str, str]] | None:
    """Features, source probabilities and metadata of ``path`` if it holds what ``key`` names: finite float32
    ``[rows, d]`` features and, with ``with_source_probs``, ``[rows, c_source]`` probabilities; a whole result
    (given its ``task``) also the task's labels and fingerprint. ``None`` (and a warning) otherwise."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    whole = task is not None
    rows = len(task) if whole else rows
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            names = set(f.keys())
            features = f.get_tensor("features")
            probs = f.get_tensor("source_probs") if with_source_probs else None
            labels = f.get_tensor("labels") if "labels" in names else None
        problems = []
        if meta.get("key") != key or (whole and meta.get("format") != CACHE_FORMAT):
            problems.append("metadata does not match the request")
        if whole and meta.get("task_fingerprint") != task.fingerprint:
            problems.append("task fingerprint differs")
        if features.dtype != np.float32 or features.shape != (rows, d):
            problems.append(f"features {features.dtype}{features.shape}, expected float32{(rows, d)}")
        elif not np.isfinite(features).all():
            problems.append("features are not finite")
        if whole and (labels is None or labels.shape != task.labels.shape or not np.array_equal(labels, task.labels)):
            problems.append("labels differ from the task's")
        if with_source_probs:
            if probs is None or probs.dtype != np.float32 or probs.shape != (rows, c_source):
                shape = None if probs is None else probs.shape
                problems.append(f"source_probs shape {shape}, expected {(rows, c_source)}")
            elif not np.isfinite(probs).all() or (rows and not np.allclose(probs.sum(1), 1.0, atol=1e-3)):
                problems.append("source_probs are not probabilities")
    except Exception as exc:  # unreadable header, truncated file, missing tensor...
        problems = [f"unreadable ({type(exc).__name__}: {exc})"]
    if problems:
        logger.warning("Ignoring feature %s %s: %s; recomputing.", "cache" if whole else "checkpoint", path,
                       "; ".join(problems))
        return None
    return features, probs, meta


def _save(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str], *, what: str) -> None:
    """Write a safetensors file atomically; a failure is a warning (it only costs recomputing)."""
    from safetensors.numpy import save_file

    try:
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)
    except OSError as exc:
        logger.warning("Could not write feature %s %s: %s", what, path, exc)

"""Batched, cached, data-parallel feature extraction: one model, one task, one ``[n, d]`` array.

:func:`extract_features` runs a :class:`~hf_spider.backbones.Backbone` over a :class:`~hf_spider.tasks.Task`
with a torch DataLoader (workers decode and preprocess while the model runs), under
``torch.inference_mode()``, each batch in the backbone's :attr:`~hf_spider.backbones.Backbone.memory_format`,
with bf16 autocast on CUDA only.

Data parallel with accelerate: under ``accelerate launch --num_processes N`` (or ``torchrun``) each process
takes a contiguous shard, and the shards are padded to equal length, gathered and trimmed, so every
process gets all ``n`` rows in the task's order. One process is the same code path with a no-op gather.

Cache: :mod:`hf_spider.features._cache`; a hit does no forward pass.

Checkpoints: a long extraction (more than ``checkpoint_rows`` rows, e.g. the 50,000 ImageNet validation
images of the embedder's default reference set) saves every finished chunk of rows atomically in
``<key>.partial/`` next to the cache file; a killed run resumes from them, and the folder is removed once
the cache file is written.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_path
from ..backbones import Backbone, load_backbone
from ..constants import positive_int_env
from ..errors import InvalidInputError
from ..tasks import Task
from ._cache import Features, _read_cache, _remember_signature, _write_cache, cache_key, default_cache_dir

__all__ = ["default_checkpoint_rows", "default_num_workers", "extract_features"]

logger = logging.getLogger(__name__)

CHECKPOINT_ROWS = 4096  # ~1 min of CPU work for a ResNet-50 at 224 px; 8 MB of checkpoint per 512 features


def default_checkpoint_rows() -> int:
    """Rows per checkpoint of a long extraction: ``$HF_SPIDER_CHECKPOINT_ROWS`` if set, else 4096."""
    return positive_int_env("HF_SPIDER_CHECKPOINT_ROWS", CHECKPOINT_ROWS)


def extract_features(
    backbone: Backbone | str,
    task: Task,
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    with_source_probs: bool = False,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    checkpoint_rows: int | None = None,
) -> Features:
    """Features (and optionally source-head probabilities) of ``backbone`` on every image of ``task``.

    Args:
        backbone: a :class:`Backbone` or a model id for :func:`~hf_spider.backbones.load_backbone`.
        task: the images and labels.
        batch_size: images per forward pass (per process).
        num_workers: DataLoader workers decoding and preprocessing; default ``min(4, cpus per process - 1)``,
            or none for a shard of at most 4 batches.
        with_source_probs: also return softmax of the source head's logits (the model needs a head).
        cache_dir: cache folder; default :func:`default_cache_dir`.
        use_cache: read and write the cache.
        progress: show a progress bar (main process only).
        device: device of the forward pass; default: the backbone's device (a model id is loaded on CUDA
            when available), or each process's accelerate device when several processes run.
        checkpoint_rows: with the cache on, an extraction of more rows saves each chunk of this many rows
            as it finishes, so a killed run resumes there; default :func:`default_checkpoint_rows`.

    Raises:
        InvalidInputError: bad ``batch_size``/``num_workers``, or ``with_source_probs`` without a head.
        DatasetError: an image cannot be decoded (names its index in the task).
    """
    from accelerate import PartialState

    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers is not None and num_workers < 0:
        raise InvalidInputError(f"num_workers must be >= 0, got {num_workers}")
    if checkpoint_rows is not None and checkpoint_rows < 1:
        raise InvalidInputError(f"checkpoint_rows must be >= 1, got {checkpoint_rows}")
    checkpoint_rows = checkpoint_rows or default_checkpoint_rows()
    state = _partial_state(PartialState)
    # one process: the given device, else the backbone's own (load_backbone picks CUDA when available);
    # several: each process on its accelerate device unless told otherwise
    target = torch.device(device) if device is not None else (state.device if state.num_processes > 1 else None)
    if isinstance(backbone, str):
        backbone = load_backbone(backbone, device=target)
    elif target is not None and backbone.device != target:
        backbone.to(target)
    if with_source_probs and not backbone.num_source_classes:
        raise InvalidInputError(f"{backbone.model_id} has no classifier head: with_source_probs needs one")
    on_cuda = backbone.device.type == "cuda"
    n, d = len(task), backbone.feature_dim

    path = None
    if use_cache:
        key = cache_key(backbone, task, with_source_probs=with_source_probs,
                        precision="bf16-autocast" if on_cuda else "fp32")
        path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        if state.is_main_process and not on_cuda:  # cached_features finds CPU results by the commit alone
            _remember_signature(path, backbone)
        path = path / f"{key}.safetensors"
        cached = _read_cache(path, key=key, task=task, d=d, c_source=backbone.num_source_classes,
                             with_source_probs=with_source_probs)
        if state.num_processes > 1:  # all processes must agree, or the gather below would hang
            from accelerate.utils import gather_object

            if not all(gather_object([cached is not None])):
                cached = None
        if cached is not None:
            if state.is_main_process:  # checkpoints left by a run killed after writing the cache
                shutil.rmtree(_checkpoint_dir(path), ignore_errors=True)
            features, probs, seconds = cached
            return Features(features, probs, task.labels, backbone.model_id, backbone.revision, task.fingerprint,
                            from_cache=True, cache_path=path,
                            stats={"waiting": 0.0, "forward": 0.0, "total": 0.0, "computed": seconds})

    start = time.perf_counter()
    per_process = math.ceil(n / state.num_processes)
    lo, hi = min(n, state.process_index * per_process), min(n, (state.process_index + 1) * per_process)
    chunks = [range(a, min(a + checkpoint_rows, hi)) for a in range(lo, hi, checkpoint_rows)]
    checkpoints = _checkpoint_dir(path) if path is not None and n > checkpoint_rows else None
    done: dict[range, tuple[torch.Tensor, torch.Tensor | None]] = {}
    if checkpoints is not None:
        for chunk in chunks:
            if (arrays := _read_checkpoint(checkpoints, chunk, key=key, d=d, c_source=backbone.num_source_classes,
                                           with_source_probs=with_source_probs)) is not None:
                done[chunk] = arrays
    resumed = sum(len(c) for c in done)
    if resumed:
        logger.info("Resuming features of %s on %s: %d of %d rows read from checkpoints in %s",
                    backbone.model_id, task.name, resumed, hi - lo, checkpoints)
    todo = [c for c in chunks if c not in done]

    def finished(chunk: range, chunk_features: torch.Tensor, chunk_probs: torch.Tensor | None) -> None:
        done[chunk] = (chunk_features, chunk_probs)
        if checkpoints is not None:
            _write_checkpoint(checkpoints, chunk, key=key, features=chunk_features, probs=chunk_probs)

    if num_workers is None:  # starting worker processes costs more than decoding a few batches in-line
        num_workers = default_num_workers(state.num_processes) if hi - lo - resumed > 4 * batch_size else 0
    stats = _run(backbone, task, todo, batch_size=batch_size, num_workers=num_workers,
                 with_source_probs=with_source_probs, progress=progress and state.is_main_process,
                 resumed=resumed, total=hi - lo, on_chunk=finished)
    local_features = torch.cat([done[c][0] for c in chunks]) if chunks else torch.zeros(0, d)
    local_probs = None
    if with_source_probs:
        local_probs = (torch.cat([done[c][1] for c in chunks]) if chunks
                       else torch.zeros(0, backbone.num_source_classes))
    features = _gather_rows(local_features, state, per_process=per_process, n=n, width=d)
    probs = None
    if with_source_probs:
        probs = _gather_rows(local_probs, state, per_process=per_process, n=n, width=backbone.num_source_classes)
    stats["total"] = stats["computed"] = time.perf_counter() - start

    if use_cache and path is not None and state.is_main_process:
        _write_cache(path, key=key, backbone=backbone, task=task, features=features, probs=probs,
                     seconds=stats["total"])
        if checkpoints is not None:  # every process's chunks are in: gathered above
            shutil.rmtree(checkpoints, ignore_errors=True)
    if state.num_processes > 1:
        state.wait_for_everyone()
    return Features(features, probs, task.labels, backbone.model_id, backbone.revision, task.fingerprint,
                    from_cache=False, resumed_rows=resumed, cache_path=path, stats=stats)


# ------------------------------------------------------------------------------------------- the loop


class _TaskImages(torch.utils.data.Dataset):
    """The task's images, decoded to RGB and preprocessed by the backbone's transform."""

    def __init__(self, task: Task, transform: Any) -> None:
        self.task, self.transform = task, transform

    def __len__(self) -> int:
        return len(self.task)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.task.image(i))


def _run(backbone: Backbone, task: Task, chunks: list[range], *, batch_size: int, num_workers: int,
         with_source_probs: bool, progress: bool, resumed: int, total: int,
         on_chunk: Callable[[range, torch.Tensor, torch.Tensor | None], None]) -> dict[str, float]:
    """Forward every row of ``chunks``, in batches that never straddle two chunks; ``on_chunk`` gets each
    finished chunk's features (and source probabilities). Returns seconds ``waiting`` for data and in ``forward``."""
    from tqdm.auto import tqdm

    device = backbone.device
    on_cuda = device.type == "cuda"
    batches = [list(c[i:i + batch_size]) for c in chunks for i in range(0, len(c), batch_size)]
    loader = torch.utils.data.DataLoader(
        _TaskImages(task, backbone.transform), batch_sampler=batches, num_workers=num_workers if batches else 0,
        pin_memory=on_cuda, persistent_workers=False, prefetch_factor=4 if num_workers and batches else None,
    )
    backbone.eval()
    pending = iter(chunks)
    chunk, features, probs, filled = next(pending, None), [], [], 0
    waiting = forward = 0.0
    bar = tqdm(total=total, initial=resumed, desc=f"features {backbone.model_id}", unit="img", disable=not progress)
    with torch.inference_mode():
        batches_iter = iter(loader)
        while True:
            t0 = time.perf_counter()
            x = next(batches_iter, None)
            t1 = time.perf_counter()
            waiting += t1 - t0
            if x is None:
                break
            x = x.to(device, non_blocking=on_cuda).contiguous(memory_format=backbone.memory_format)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_cuda):
                f, logits = backbone.forward(x)
            features.append(f.float().cpu())
            if with_source_probs:
                probs.append(torch.softmax(logits.float(), dim=-1).cpu())
            forward += time.perf_counter() - t1
            bar.update(len(x))
            filled += len(x)
            if filled == len(chunk):
                on_chunk(chunk, torch.cat(features), torch.cat(probs) if with_source_probs else None)
                chunk, features, probs, filled = next(pending, None), [], [], 0
    bar.close()
    return {"waiting": waiting, "forward": forward}


def _gather_rows(local: torch.Tensor, state: Any, *, per_process: int, n: int, width: int) -> np.ndarray:
    """All processes' contiguous shards, in task order: pad to ``per_process`` rows, gather, drop padding."""
    if state.num_processes == 1:
        return local.numpy().astype(np.float32, copy=False)
    from accelerate.utils import gather

    padded = torch.zeros(per_process, width, dtype=torch.float32)
    padded[: len(local)] = local
    everything = gather(padded.to(state.device)).cpu()  # [num_processes * per_process, width]
    parts = []
    for rank in range(state.num_processes):
        rows = max(0, min(n, (rank + 1) * per_process) - rank * per_process)
        parts.append(everything[rank * per_process: rank * per_process + rows])
    return torch.cat(parts).numpy().astype(np.float32, copy=False)


def _partial_state(partial_state_cls: Any) -> Any:
    """The accelerate process state (a singleton shared with any ``Accelerator``).

    ``cpu=True`` only where there is no choice (no CUDA) or the launcher asked for it: accelerate then
    sets up a gloo process group under ``torchrun``/``accelerate launch``, and plain CPU otherwise.
    """
    from accelerate.utils import parse_flag_from_env

    return partial_state_cls(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def default_num_workers(num_processes: int = 1) -> int:
    """DataLoader workers per process: ``min(4, cpus per process - 1)`` (0 on a single core)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus // max(1, num_processes) - 1))


# ------------------------------------------------------------------------------------------- checkpoints


def _checkpoint_dir(path: Path) -> Path:
    """``<key>.partial/`` next to the cache file ``<key>.safetensors``."""
    return path.with_suffix(".partial")


def _read_checkpoint(folder: Path, chunk: range, *, key: str, d: int, c_source: int | None,
                     with_source_probs: bool) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The saved rows of ``chunk`` if a valid checkpoint for ``key`` holds them, else ``None``."""
    file = folder / f"rows-{chunk.start}-{chunk.stop}.safetensors"
    if not file.is_file():
        return None
    from safetensors import safe_open

    rows = len(chunk)
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            features = f.get_tensor("features")
            probs = f.get_tensor("source_probs") if with_source_probs else None
        valid = (meta.get("key") == key and features.dtype == torch.float32 and tuple(features.shape) == (rows, d)
                 and bool(torch.isfinite(features).all())
                 and (probs is None or (probs.dtype == torch.float32 and tuple(probs.shape) == (rows, c_source))))
    except Exception as exc:  # unreadable: written by another version, or damaged on disk
        valid, meta = False, {"error": f"{type(exc).__name__}: {exc}"}
    if not valid:
        logger.warning("Ignoring feature checkpoint %s (%s); recomputing its rows.", file,
                       meta.get("error", "does not match the request"))
        return None
    return features, probs


def _write_checkpoint(folder: Path, chunk: range, *, key: str, features: torch.Tensor,
                      probs: torch.Tensor | None) -> None:
    """Save one finished chunk atomically; a failure only costs the resume."""
    from safetensors.torch import save_file

    tensors = {"features": features.contiguous()}
    if probs is not None:
        tensors["source_probs"] = probs.contiguous()
    try:
        with atomic_path(folder / f"rows-{chunk.start}-{chunk.stop}.safetensors") as tmp:
            save_file(tensors, tmp, metadata={"key": key, "rows": f"{chunk.start}-{chunk.stop}"})
    except OSError as exc:
        logger.warning("Could not write feature checkpoint in %s: %s", folder, exc)

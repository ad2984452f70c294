"""Batched, cached, data-parallel feature extraction: one model, one task, one ``[n, d]`` array.

:func:`extract_features` runs a :class:`~hf_spider.backbones.Backbone` over a :class:`~hf_spider.tasks.Task`
with a torch DataLoader (workers decode and preprocess while the model runs), under
``torch.inference_mode()``, each batch in the backbone's :attr:`~hf_spider.backbones.Backbone.memory_format`,
with bf16 autocast on CUDA only.

Data parallel with accelerate: under ``accelerate launch --num_processes N`` (or ``torchrun``) each process
takes a contiguous share of the rows (``PartialState.split_between_processes``) and the shares are gathered in
process order (``gather_object``), so every process gets all ``n`` rows in the task's order. One process is the
same code path without the gather.

Cache and checkpoints: :class:`~hf_spider.features.FeatureCache`; a hit does no forward pass. A long extraction
(more than ``checkpoint_rows`` rows, e.g. the 50,000 ImageNet validation images of the embedder's default
reference set) checkpoints every finished chunk of rows; a killed run resumes from them, and they are removed
once the result is written.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..backbones import Backbone, load_backbone
from ..constants import positive_int_env
from ..errors import InvalidInputError
from ..tasks import Task
from ._cache import FeatureCache, Features, cache_key

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
    n = len(task)

    cache = key = None
    if use_cache:
        cache = FeatureCache(cache_dir)
        key = cache_key(backbone, task, with_source_probs=with_source_probs,
                        precision="bf16-autocast" if on_cuda else "fp32")
        if state.is_main_process and not on_cuda:  # cached_features finds CPU results by the commit alone
            cache.remember(backbone)
        cached = cache.load(key, backbone, task, with_source_probs=with_source_probs)
        if state.num_processes > 1 and not all(_gathered([cached is not None], state)):
            cached = None  # all processes must agree, or the gathers below would hang
        if cached is not None:
            if state.is_main_process:  # checkpoints left by a run killed after writing the cache
                cache.drop_checkpoints(key)
            return cached

    start = time.perf_counter()
    with state.split_between_processes(list(range(n))) as mine:  # this process's contiguous share of the rows
        rows = range(mine[0], mine[-1] + 1) if mine else range(0)
    chunks = [rows[i:i + checkpoint_rows] for i in range(0, len(rows), checkpoint_rows)]
    checkpoints = cache is not None and n > checkpoint_rows
    done = {}
    for chunk in chunks if checkpoints else ():
        if (arrays := cache.load_checkpoint(key, chunk, backbone, with_source_probs=with_source_probs)) is not None:
            done[chunk] = arrays
    resumed = sum(len(c) for c in done)
    if resumed:
        logger.info("Resuming features of %s on %s: %d of %d rows read from checkpoints in %s",
                    backbone.model_id, task.name, resumed, len(rows), cache.folder)
    if num_workers is None:  # starting worker processes costs more than decoding a few batches in-line
        num_workers = default_num_workers(state.num_processes) if len(rows) - resumed > 4 * batch_size else 0
    stats = {"waiting": 0.0, "forward": 0.0}
    bar = _progress(backbone, total=len(rows), initial=resumed, enabled=progress and state.is_main_process)
    for chunk, chunk_features, chunk_probs in _forward_chunks(
            backbone, task, [c for c in chunks if c not in done], batch_size=batch_size, num_workers=num_workers,
            with_source_probs=with_source_probs, stats=stats, advance=bar.update):
        done[chunk] = (chunk_features, chunk_probs)
        if checkpoints:
            cache.save_checkpoint(key, chunk, chunk_features, chunk_probs)
    bar.close()
    features = _all_rows([done[c][0] for c in chunks], backbone.feature_dim, state)
    probs = _all_rows([done[c][1] for c in chunks], backbone.num_source_classes, state) if with_source_probs else None
    stats["total"] = stats["computed"] = time.perf_counter() - start

    if cache is not None and state.is_main_process:  # every process's chunks are in: gathered above
        cache.save(key, backbone, task, features, probs, seconds=stats["total"])
    if state.num_processes > 1:
        state.wait_for_everyone()
    return Features(features, probs, task.labels, backbone.model_id, backbone.revision, task.fingerprint,
                    from_cache=False, resumed_rows=resumed, cache_path=cache.path(key) if cache else None,
                    stats=stats)


def _gathered(local: list, state: Any) -> list:
    """Every process's list, concatenated in process order (this process's own when it runs alone)."""
    from accelerate.utils import gather_object

    return gather_object(local) if state.num_processes > 1 else local


def _all_rows(blocks: list[np.ndarray], width: int, state: Any) -> np.ndarray:
    """``[n, width]``: every process's blocks of rows in process order, i.e. the task's order."""
    return np.concatenate([np.zeros((0, width), np.float32), *_gathered(blocks, state)])


# ------------------------------------------------------------------------------------------- the loop


class _TaskImages(torch.utils.data.Dataset):
    """The task's images, decoded to RGB and preprocessed by the backbone's transform."""

    def __init__(self, task: Task, transform: Any) -> None:
        self.task, self.transform = task, transform

    def __len__(self) -> int:
        return len(self.task)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.task.image(i))


def _forward_chunks(backbone: Backbone, task: Task, chunks: list[range], *, batch_size: int, num_workers: int,
                   with_source_probs: bool, stats: dict[str, float], advance: Callable[[int], Any],
                   ) -> Iterator[tuple[range, np.ndarray, np.ndarray | None]]:
    """The forward pass over the task's rows, one chunk at a time: yields each chunk with its float32 features
    ``[len(chunk), d]`` and source probabilities ``[len(chunk), C_s]`` (or ``None``), batches never straddling two
    chunks. Adds the seconds ``waiting`` for batches and in ``forward`` to those keys of ``stats``;
    ``advance(images)`` after each batch."""
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
    with torch.inference_mode():
        batches_iter = iter(loader)
        while True:
            t0 = time.perf_counter()
            x = next(batches_iter, None)
            t1 = time.perf_counter()
            stats["waiting"] += t1 - t0
            if x is None:
                return
            x = x.to(device, non_blocking=on_cuda).contiguous(memory_format=backbone.memory_format)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_cuda):
                f, logits = backbone.forward(x)
            features.append(f.float().cpu())
            if with_source_probs:
                probs.append(torch.softmax(logits.float(), dim=-1).cpu())
            stats["forward"] += time.perf_counter() - t1
            advance(len(x))
            filled += len(x)
            if filled == len(chunk):
                yield chunk, torch.cat(features).numpy(), torch.cat(probs).numpy() if with_source_probs else None
                chunk, features, probs, filled = next(pending, None), [], [], 0


def _progress(backbone: Backbone, *, total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"features {backbone.model_id}", unit="img", disable=not enabled)


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

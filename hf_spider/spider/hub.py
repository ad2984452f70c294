"""Loading a ranker from the Hub as untrusted input: safetensors only, config and tensors validated.

``huggingface_hub``'s mixin loader would read any config and fall back to a pickled ``pytorch_model.bin``;
:func:`load_ranker`, the mixin hook ``SpiderRanker._from_pretrained``, never does. It checks the files' announced
sizes before downloading them, reads ``config.json`` (bounded size, known keys, sane types and sizes), sizes the
ranker it describes without allocating it, then builds it and loads ``model.safetensors`` strictly (every tensor
present, no extra ones, shapes equal, values finite).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidArtifactError, UnsafeArtifactError
from ..hub.retry import with_retries
from .model import SpiderRanker

__all__ = ["load_ranker"]

CONFIG, WEIGHTS = "config.json", "model.safetensors"
MAX_CONFIG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 1 << 30
MAX_WIDTH = 1 << 16
_INT_FIELDS = {"encoder_dim": (1, MAX_WIDTH), "dim": (1, 4096), "embedding_dim": (1, MAX_WIDTH),
               "default_rerank": (0, 1000)}
_LIMITS = {CONFIG: MAX_CONFIG_BYTES, WEIGHTS: MAX_WEIGHTS_BYTES}


def load_ranker(repo_id: str, *, revision: str | None = None) -> SpiderRanker:
    """A validated ranker from a Hub repo id or a local folder (``config.json`` + ``model.safetensors``).

    Raises:
        UnsafeArtifactError: there is no ``model.safetensors`` (pickled weights are never loaded).
        InvalidArtifactError: a file is missing, too large or malformed, the config does not describe a
            ranker, or the weights do not match it or are not finite.
        ModelLoadError: the repo or the revision does not exist.
        HubUnavailableError: the Hub kept failing through the retries.
    """
    config_path, weights_path = _fetch(repo_id, revision)
    weights_bytes = weights_path.stat().st_size
    _check_size(repo_id, CONFIG, config_path.stat().st_size)  # again: an announced size may be wrong
    _check_size(repo_id, WEIGHTS, weights_bytes)
    config = _read_config(config_path, where=repo_id)
    ranker = _build(config, weights_bytes=weights_bytes, where=repo_id)
    from safetensors.torch import load_model

    try:
        load_model(ranker, str(weights_path), strict=True)
    except Exception as e:  # safetensors raises several types for malformed files; all mean "invalid"
        raise InvalidArtifactError(f"{repo_id}: model.safetensors does not match its config: "
                                   f"{str(e).splitlines()[0][:300]}") from e
    if bad := [name for name, t in ranker.state_dict().items() if not torch.isfinite(t).all()]:
        raise InvalidArtifactError(f"{repo_id}: model.safetensors has NaN or infinite values in {bad[:3]}")
    return ranker.eval()


def _fetch(repo_id: str, revision: str | None) -> tuple[Path, Path]:
    """Local paths of the config and the weights: a folder's own, or downloaded from one commit of the repo."""
    folder = Path(repo_id)
    if folder.is_dir():
        files = {p.name for p in folder.iterdir() if p.is_file()}
        _check_files(repo_id, files)
        return folder / CONFIG, folder / WEIGHTS
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    from ..backbones import hub_source

    source = with_retries(lambda: hub_source(repo_id, revision), what=f"reading {repo_id}")
    _check_files(repo_id, set(source.files))
    for name in (CONFIG, WEIGHTS):  # refuse an oversized file before downloading it
        size = with_retries(lambda name=name: get_hf_file_metadata(
            hf_hub_url(repo_id, name, revision=source.revision)).size, what=f"reading {repo_id}/{name}")
        _check_size(repo_id, name, size or 0)
    config = with_retries(lambda: source.fetch(CONFIG), what=f"downloading {repo_id}/{CONFIG}")
    weights = with_retries(lambda: source.fetch(WEIGHTS), what=f"downloading {repo_id}/{WEIGHTS}")
    return config, weights


def _check_files(where: str, files: set[str]) -> None:
    if WEIGHTS not in files:
        raise UnsafeArtifactError(f"{where}: no {WEIGHTS} (pickled weights are never loaded)")
    if CONFIG not in files:
        raise InvalidArtifactError(f"{where}: no {CONFIG}, so nothing says what the weights are")


def _check_size(where: str, name: str, size: int) -> None:
    if size > _LIMITS[name]:
        raise InvalidArtifactError(f"{where}: {name} has {size} bytes, more than a ranker's {_LIMITS[name]}")


def _build(config: dict[str, Any], *, weights_bytes: int, where: str) -> SpiderRanker:
    """The ranker ``config`` describes, once its size is known to fit in the weights file.

    Each field is bounded on its own, but together they could describe gigabytes of parameters; the
    ranker is first built on the meta device (no memory) and refused if the file cannot hold it at
    2 bytes a parameter (half precision, the smallest a strict load accepts).
    """
    try:
        with torch.device("meta"):
            parameters = sum(p.numel() for p in SpiderRanker(**config).parameters())
    except (TypeError, ValueError) as e:
        raise InvalidArtifactError(f"{where}: config.json does not describe a ranker: {e}") from e
    if 2 * parameters > weights_bytes:
        raise InvalidArtifactError(f"{where}: config.json describes {parameters:,} parameters, more than "
                                   f"model.safetensors ({weights_bytes:,} bytes) can hold")
    return SpiderRanker(**config)


def _read_config(path: Path, *, where: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArtifactError(f"{where}: config.json is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise InvalidArtifactError(f"{where}: config.json must be an object")
    known = set(inspect.signature(SpiderRanker.__init__).parameters) - {"self"}
    if unknown := sorted(set(config) - known):
        raise InvalidArtifactError(f"{where}: config.json has unknown keys {unknown[:5]}")
    for key, (lo, hi) in _INT_FIELDS.items():
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi):
            raise InvalidArtifactError(f"{where}: config.json {key}={value!r} is not an integer in [{lo}, {hi}]")
    widths = config.get("specific_widths", [])
    if not isinstance(widths, list) or not all(isinstance(w, int) and 1 <= w <= MAX_WIDTH for w in widths):
        raise InvalidArtifactError(f"{where}: config.json specific_widths must be a list of integers")
    for key in ("models", "label_scores"):
        if not isinstance(config.get(key, []), list) or not all(isinstance(m, str) for m in config.get(key, [])):
            raise InvalidArtifactError(f"{where}: config.json {key} must be a list of strings")
    for key in ("encoder", "baseline", "token_source"):
        if config.get(key) is not None and not (isinstance(config[key], str) and config[key].strip()):
            raise InvalidArtifactError(f"{where}: config.json {key} must be a non-empty string")
    dropout = config.get("dropout", 0.1)
    if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise InvalidArtifactError(f"{where}: config.json dropout={dropout!r} is not a number in [0, 1)")
    return config

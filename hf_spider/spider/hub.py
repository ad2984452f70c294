"""Loading a ranker from the Hub as untrusted input: safetensors only, config and tensors validated.

``SpiderRanker.from_pretrained`` would fall back to a pickled ``pytorch_model.bin``; :func:`load_ranker`
never does. It reads ``config.json`` (bounded size, known keys, sane types and sizes), builds the
ranker, and loads ``model.safetensors`` strictly (every tensor present, no extra ones, shapes equal).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from ..errors import InvalidArtifactError, UnsafeArtifactError
from .model import SpiderRanker

__all__ = ["load_ranker"]

MAX_CONFIG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 1 << 30
MAX_WIDTH = 1 << 16
_INT_FIELDS = {"encoder_dim": (1, MAX_WIDTH), "dim": (1, 4096), "embedding_dim": (1, MAX_WIDTH),
               "default_rerank": (0, 1000)}


def load_ranker(repo_id: str, *, revision: str | None = None) -> SpiderRanker:
    """A validated ranker from a Hub repo id or a local folder (``config.json`` + ``model.safetensors``)."""
    folder = Path(repo_id)
    if folder.is_dir():
        config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        if not weights_path.exists():
            raise UnsafeArtifactError(f"{repo_id}: no model.safetensors (pickled weights are never loaded)")
    else:
        from huggingface_hub import hf_hub_download, list_repo_files

        files = list_repo_files(repo_id, revision=revision)
        if "model.safetensors" not in files:
            raise UnsafeArtifactError(f"{repo_id}: no model.safetensors (pickled weights are never loaded)")
        config_path = Path(hf_hub_download(repo_id, "config.json", revision=revision))
        weights_path = Path(hf_hub_download(repo_id, "model.safetensors", revision=revision))
    config = _read_config(config_path, where=repo_id)
    if weights_path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise InvalidArtifactError(f"{repo_id}: model.safetensors is larger than {MAX_WEIGHTS_BYTES} bytes")
    try:
        ranker = SpiderRanker(**config)
    except (TypeError, ValueError) as e:
        raise InvalidArtifactError(f"{repo_id}: config.json does not describe a ranker: {e}") from e
    from safetensors.torch import load_model

    try:
        load_model(ranker, str(weights_path), strict=True)
    except Exception as e:  # safetensors raises several types for malformed files; all mean "invalid"
        raise InvalidArtifactError(f"{repo_id}: model.safetensors does not match its config: "
                                   f"{str(e).splitlines()[0][:300]}") from e
    return ranker.eval()


def _read_config(path: Path, *, where: str) -> dict[str, Any]:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidArtifactError(f"{where}: config.json is larger than {MAX_CONFIG_BYTES} bytes")
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
    if not isinstance(config.get("dropout", 0.1), int | float):
        raise InvalidArtifactError(f"{where}: config.json dropout must be a number")
    return config

"""Model ids in, :class:`~hf_spider.backbones.Backbone` out: parse the id, resolve its files, pick the adapter."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import PIL.Image
import torch

from ..errors import ModelLoadError
from ._base import Backbone
from ._registry import detect_library, get_adapter
from ._source import ModelSource, check_weight_files, folder_source, hub_source
from ._timm import load_timm_builtin

__all__ = ["check_weight_files", "load_backbone", "model_key", "parse_model_id", "resolve_revision"]



def load_backbone(
    model_id: str,
    *,
    revision: str | None = None,
    library: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device: str | torch.device | None = None,
) -> Backbone:
    """Load an image model as a :class:`Backbone`.

    Args:
        model_id: ``"hf-hub:org/name"``, ``"org/name"``, ``"org/name@revision"``, a local folder
            (``"local-dir:path"`` or an existing path), or a timm architecture name (``"resnet18"``,
            random init: handy for tests and benchmarks).
        revision: branch, tag or commit (overrides ``@revision``); resolved to a commit sha.
        library: ``"auto"`` reads ``config.json``: an ``onnx`` section means ONNX, ``architecture`` timm,
            ``model_type`` transformers; or name one of :func:`~hf_spider.backbones.list_libraries`.
        trust_remote_code: allow a transformers repo's own modelling code to run (off by default).
        allow_pickle: allow pickle weights (``pytorch_model.bin``, ``*.pth``) when no safetensors exist.
        device: where to run the model; defaults to CUDA when available, else CPU.

    Raises:
        ModelLoadError: unknown model, no weights, unrecognised config, or the library failing to build it.
        UnsafeArtifactError: only pickle weights and ``allow_pickle=False``, or remote code without
            ``trust_remote_code=True``.
        InvalidArtifactError: an oversized, truncated or malformed file (config.json, model.onnx).
    """
    kind, name, at_revision = parse_model_id(model_id)
    if kind == "builtin":
        if library not in ("auto", "timm"):
            raise ModelLoadError(f"{model_id!r} is not a folder or a Hub repo id")
        backbone: Backbone = load_timm_builtin(name)
    else:
        source = folder_source(name) if kind == "local" else hub_source(name, revision or at_revision)
        backbone = _load(source, library=library, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone.to(device)
    backbone.feature_dim = _probe_feature_dim(backbone)
    return backbone


def _load(source: ModelSource, *, library: str, trust_remote_code: bool, allow_pickle: bool) -> Backbone:
    check_weight_files(source.files, allow_pickle=allow_pickle, where=source.where)
    config = source.read_config()
    adapter = detect_library(config, where=source.where) if library == "auto" else get_adapter(library)
    return adapter.load(source, config, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def resolve_revision(model_id: str) -> str | None:
    """The commit sha a Hub model id (``@revision`` included) resolves to now; ``None`` for a folder or a timm
    name. One Hub call, nothing downloaded."""
    kind, name, revision = parse_model_id(model_id)
    return hub_source(name, revision).revision if kind == "hub" else None


def model_key(model_id: str) -> str:
    """The zoo-wide name of a model: a Hub id's or folder's last component (revision dropped)."""
    return Path(model_id.removeprefix("hf-hub:").split("@", 1)[0].rstrip("/")).name


def expand_model_folders(entries: Sequence[str]) -> list[str]:
    """Model ids, where a folder of model folders (each with a ``config.json``) stands for all of them."""
    out: list[str] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir() and not (path / "config.json").exists():
            out += sorted(str(p.parent) for p in path.glob("*/config.json"))
        else:
            out.append(entry)
    return out


def parse_model_id(model_id: str) -> tuple[Literal["hub", "local", "builtin"], str, str | None]:
    """``(source, name, revision)`` of a model id; the one place ids with prefixes and ``@rev`` are parsed."""
    text = str(model_id).strip()
    if text.startswith("local-dir:"):
        return "local", text[len("local-dir:"):], None
    if text.startswith(("hf-hub:", "hf_hub:")):
        name, _, revision = text.split(":", 1)[1].partition("@")
        return "hub", name, revision or None
    if text.startswith("timm:"):
        return "builtin", text[len("timm:"):], None
    if os.path.isdir(os.path.expanduser(text)):
        return "local", text, None
    if "/" not in text:
        return "builtin", text, None
    name, _, revision = text.partition("@")
    return "hub", name, revision or None


def _probe_feature_dim(backbone: Backbone) -> int:
    """Feature width from one forward pass of a blank image through the model's own transform."""
    x = backbone.transform(PIL.Image.new("RGB", (64, 64), (128, 128, 128))).unsqueeze(0).to(backbone.device)
    try:
        with torch.inference_mode():
            features, logits = backbone.eval().forward(x)
    except Exception as exc:
        raise ModelLoadError(f"{backbone.model_id}: forward pass failed ({type(exc).__name__}: {exc})") from exc
    if logits is not None and backbone.num_source_classes != logits.shape[-1]:
        backbone.num_source_classes = int(logits.shape[-1])
    backbone.input_size = (int(x.shape[-2]), int(x.shape[-1]))
    return int(features.shape[-1])

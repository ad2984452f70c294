"""Model ids in, :class:`~hf_spider.backbones.Backbone` out: parse the id, resolve its files, pick the adapter."""

from __future__ import annotations

import PIL.Image
import torch

from ..errors import ModelLoadError
from . import _onnx, _timm, _transformers  # noqa: F401  (each registers its adapter, tried in this order)
from ._base import Backbone
from ._ids import parse_model_id
from ._registry import detect_library, get_adapter, list_libraries, register_library
from ._source import ModelSource, check_weight_files, folder_source, hub_source
from ._timm import load_timm_builtin

__all__ = ["list_libraries", "load_backbone", "register_library"]


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

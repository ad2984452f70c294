"""timm models: a Hub repo or folder with ``config.json`` (``architecture``) and safetensors weights."""

from __future__ import annotations

import difflib
from typing import Any

import torch

from ..errors import ModelLoadError, UnsafeArtifactError
from ._base import TorchBackbone, check_model_size
from ._registry import register_library
from ._source import SAFE_SUFFIXES, ModelSource, check_weight_files

__all__ = ["TimmBackbone", "load_timm_builtin"]


class TimmBackbone(TorchBackbone):
    """Features are ``forward_head(forward_features(x), pre_logits=True)``; logits the full head."""

    library = "timm"

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = self.model.forward_features(pixel_values)
        features = self.model.forward_head(hidden, pre_logits=True)
        logits = self.model.forward_head(hidden) if self.num_source_classes else None
        return features.flatten(1), logits


def _is_timm(config: dict[str, Any]) -> bool:
    return "architecture" in config or "pretrained_cfg" in config


@register_library("timm", detect=_is_timm)
def load_timm(source: ModelSource, config: dict[str, Any], *, allow_pickle: bool = False, **_: Any) -> TimmBackbone:
    _check_weights_file(source, config, allow_pickle=allow_pickle)
    _check_size(source, config)
    return _create(source.timm_spec, model_id=source.name, revision=source.revision)


def _check_size(source: ModelSource, config: dict[str, Any]) -> None:
    """The model the config describes, built without memory, is within the parameter limit."""
    import timm

    cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    architecture, args = config.get("architecture"), config.get("model_args") or {}
    num_classes = config.get("num_classes", cfg.get("num_classes"))
    if not isinstance(architecture, str) or not isinstance(args, dict):
        return  # timm refuses those itself
    kwargs = {**args, **({"num_classes": num_classes} if num_classes is not None else {})}
    check_model_size(lambda: timm.create_model(architecture, pretrained=False, **kwargs), where=source.where)


def _check_weights_file(source: ModelSource, config: dict[str, Any], *, allow_pickle: bool) -> None:
    """The file timm will load must be safetensors: ``pretrained_cfg.hf_hub_filename`` if the config names one,
    else ``model.safetensors`` (timm's safe alternative to ``pytorch_model.bin``). Otherwise timm would
    ``torch.load`` a pickle, which only ``allow_pickle=True`` permits (timm then loads with ``weights_only``)."""
    cfg = config.get("pretrained_cfg")
    named = cfg.get("hf_hub_filename") if isinstance(cfg, dict) else None
    if named is not None and not (isinstance(named, str) and named.endswith(".safetensors")):
        if not allow_pickle:
            raise UnsafeArtifactError(
                f"{source.where}: pretrained_cfg.hf_hub_filename names {named}, not a safetensors file; timm would "
                "unpickle it, which can run arbitrary code: pass allow_pickle=True if you trust this repo")
        return
    weights = named or "model.safetensors"
    if weights not in source.files and not allow_pickle:  # the other safe files are not what timm loads
        check_weight_files([f for f in source.files if not f.endswith(SAFE_SUFFIXES)], allow_pickle=False,
                           where=source.where)


def load_timm_builtin(name: str) -> TimmBackbone:
    """A timm architecture with random weights (``"resnet18"``): handy for tests and benchmarks."""
    import timm

    if not timm.is_model(name.split(".")[0]):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ModelLoadError(f"{name!r} is not a timm architecture, a local folder or a Hub repo id{hint}")
    return _create(name, model_id=name, revision=None, pretrained=False)


def _create(spec: str, *, model_id: str, revision: str | None, pretrained: bool = True) -> TimmBackbone:
    import timm
    from timm.data import create_transform, resolve_model_data_config

    try:
        model = timm.create_model(spec, pretrained=pretrained)
    except Exception as exc:
        raise ModelLoadError(f"timm cannot build {model_id!r}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    return TimmBackbone(model, transform, num_source_classes=num_classes or None, model_id=model_id,
                        revision=revision)

"""timm models: a Hub repo or folder with ``config.json`` (``architecture``) and safetensors weights."""

from __future__ import annotations

import difflib
from typing import Any

import torch

from ..errors import ModelLoadError
from ._base import TorchBackbone
from ._registry import register_library
from ._source import ModelSource

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
def load_timm(source: ModelSource, config: dict[str, Any], **_: Any) -> TimmBackbone:
    return _create(source.timm_spec, model_id=source.name, revision=source.revision)


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

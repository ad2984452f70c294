"""transformers image models: a repo with ``config.json`` (``model_type``) and an image processor."""

from __future__ import annotations

from typing import Any

import PIL.Image
import torch

from ..errors import ModelLoadError, UnsafeArtifactError
from ._base import TorchBackbone, check_model_size
from ._registry import register_library
from ._source import ModelSource

__all__ = ["HFImageTransform", "TransformersBackbone"]


class TransformersBackbone(TorchBackbone):
    """Features are the base model's ``pooler_output`` if it has one, else the CLS token of
    ``last_hidden_state`` (the mean over H, W for 4-D conv outputs); logits come from the classification head."""

    library = "transformers"

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.num_source_classes:
            captured: list[Any] = []
            handle = self.model.base_model.register_forward_hook(lambda _m, _i, out: captured.append(out))
            try:
                logits = self.model(pixel_values=pixel_values, return_dict=True).logits
            finally:
                handle.remove()
            return _pool(captured[-1]), logits
        return _pool(self.model(pixel_values=pixel_values, return_dict=True)), None


class HFImageTransform:
    """A transformers image processor as a PIL -> ``[3, H, W]`` tensor transform (picklable)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def describe(self) -> str:
        return f"{type(self.processor).__name__}:{self.processor.to_json_string()}"

    def __repr__(self) -> str:
        return f"HFImageTransform({type(self.processor).__name__})"


def _is_transformers(config: dict[str, Any]) -> bool:
    return "model_type" in config


@register_library("transformers", detect=_is_transformers)
def load_transformers(source: ModelSource, config: dict[str, Any], *, trust_remote_code: bool = False,
                      allow_pickle: bool = False) -> TransformersBackbone:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

    if config.get("auto_map") and not trust_remote_code:
        raise UnsafeArtifactError(
            f"{source.name} needs its own modelling code (auto_map in config.json); pass trust_remote_code=True "
            "if you trust this repo"
        )
    architectures = config.get("architectures") or []
    classifier = any(a.endswith("ForImageClassification") for a in architectures) and bool(config.get("id2label"))
    auto = AutoModelForImageClassification if classifier else AutoModel
    # allow_pickle was checked against the file list: only fall back to pickle when no safetensors exist
    kwargs: dict[str, Any] = {"revision": source.revision, "trust_remote_code": trust_remote_code,
                              "use_safetensors": None if allow_pickle else True}
    check_model_size(lambda: auto.from_config(AutoConfig.from_pretrained(source.name, revision=source.revision)),
                     where=source.where)
    try:
        model = auto.from_pretrained(source.name, **kwargs)
        processor = AutoImageProcessor.from_pretrained(source.name, revision=source.revision,
                                                       trust_remote_code=trust_remote_code)
    except Exception as exc:  # whatever the library raises on an untrusted repo, one error class for the user
        raise ModelLoadError(f"transformers cannot load {source.name!r}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    num_classes = int(model.config.num_labels) if classifier else None
    return TransformersBackbone(model, HFImageTransform(processor), num_source_classes=num_classes,
                                model_id=source.name, revision=source.revision)


def _pool(output: Any) -> torch.Tensor:
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
    if hidden.ndim == 4:
        return hidden.mean(dim=(2, 3))
    if hidden.ndim == 3:
        return hidden[:, 0]
    return hidden.flatten(1)

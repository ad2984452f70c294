"""What every backbone adapter provides: :class:`Backbone`, and :class:`TorchBackbone` for ``nn.Module`` ones."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import PIL.Image
import torch
from torch import nn

from ..constants import max_parameters
from ..errors import ModelLoadError

__all__ = ["Backbone", "TorchBackbone", "check_model_size"]


class Backbone(ABC):
    """A frozen image model used as a feature extractor; one subclass per library.

    Attributes:
        transform: the model's own preprocessing, PIL image -> float tensor ``[3, H, W]``; picklable, so
            DataLoader workers can run it.
        feature_dim: width d of the features returned by :meth:`forward`.
        num_source_classes: size C_s of the source classifier head, ``None`` without one.
        model_id: the id it was loaded from (``org/name``, a folder, or a timm architecture name).
        revision: the commit sha for Hub models; ``None`` for a local folder or a timm builtin, whose
            weights are then identified by :meth:`weights_hash`.
        library: ``"timm"``, ``"transformers"`` or ``"onnx"``.
        input_size: ``(H, W)`` of what :attr:`transform` makes of an image.
    """

    library: ClassVar[str]
    #: the layout :meth:`forward` runs fastest on; the feature loop hands batches over in it
    memory_format: ClassVar[torch.memory_format] = torch.contiguous_format

    def __init__(self, transform: Callable[[PIL.Image.Image], torch.Tensor], *, num_source_classes: int | None,
                 model_id: str, revision: str | None, feature_dim: int = 0) -> None:
        self.transform = transform
        self.num_source_classes = num_source_classes
        self.model_id = model_id
        self.revision = revision
        self.feature_dim = feature_dim
        self.input_size: tuple[int, int] = (0, 0)
        self._weights_hash: str | None = None

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where :meth:`forward` runs; inputs go there."""

    @abstractmethod
    def to(self, device: str | torch.device) -> Backbone:
        """Move the model to ``device`` (in place) and return ``self``."""

    @abstractmethod
    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features ``[B, d]`` and source logits ``[B, C_s]`` (``None`` without a head) of a batch ``[B, 3, H, W]``."""

    @property
    @abstractmethod
    def num_parameters(self) -> int:
        """Number of weights (a task-agnostic prior ranks by it)."""

    @abstractmethod
    def _hash_weights(self, digest: hashlib._Hash) -> None:
        """Feed the weights' bytes (and anything else that defines them) into ``digest``."""

    def eval(self) -> Backbone:
        """Put the model in inference mode (no-op where there is no training mode) and return ``self``."""
        return self

    @property
    def preprocess_config(self) -> str:
        """A canonical description of :attr:`transform` (part of the feature cache key)."""
        describe = getattr(self.transform, "describe", None)
        return describe() if callable(describe) else repr(self.transform)

    def weights_hash(self) -> str:
        """sha256 of the weights; computed once."""
        if self._weights_hash is None:
            digest = hashlib.sha256()
            self._hash_weights(digest)
            self._weights_hash = digest.hexdigest()
        return self._weights_hash

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model_id={self.model_id!r}, revision={self.revision!r}, "
                f"feature_dim={self.feature_dim}, num_source_classes={self.num_source_classes})")


class TorchBackbone(Backbone):
    """A backbone that is an ``nn.Module`` (timm, transformers): trainable, so fine-tuning can use it.

    Attributes:
        model: the ``nn.Module`` in eval mode.
    """

    memory_format = torch.channels_last  # convolutions run faster on it, on CPU as on CUDA (docs/realzoo.md)

    def __init__(self, model: nn.Module, transform: Callable[[PIL.Image.Image], torch.Tensor], **kwargs) -> None:
        super().__init__(transform, **kwargs)
        self.model = model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> TorchBackbone:
        self.model.to(device)
        return self

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def eval(self) -> TorchBackbone:
        self.model.eval()
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        return self

    def _hash_weights(self, digest: hashlib._Hash) -> None:
        """Parameters and buffers: names, dtypes, shapes, values."""
        for name, tensor in sorted(self.model.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def check_model_size(build: Callable[[], nn.Module], *, where: str) -> None:
    """Refuse a model its untrusted config makes larger than :func:`~hf_spider.constants.max_parameters`,
    counted on an instance ``build`` makes without memory (called under accelerate's ``init_empty_weights``).

    A config that cannot be built that way is not judged here: the library's own load then decides.
    """
    from accelerate import init_empty_weights

    try:
        with init_empty_weights(include_buffers=True):
            model = build()
    except Exception:  # an architecture that cannot be built empty
        return
    count, limit = sum(p.numel() for p in model.parameters()), max_parameters()
    if count > limit:
        raise ModelLoadError(f"{where}: its config describes a model of {count:,} parameters, above the limit of "
                             f"{limit:,} (set HF_SPIDER_MAX_PARAMETERS to allow more)")

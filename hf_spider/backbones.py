"""Any timm or transformers image model, from the Hub or a folder, as a frozen feature extractor.

:func:`load_backbone` turns a model id into a :class:`Backbone`: the model in eval mode, the model's
*own* preprocessing (timm's data config, or the repo's ``AutoImageProcessor``), its feature width and
source head size, and the commit sha it was loaded from (the feature cache key). One method,
:meth:`Backbone.forward`, returns ``(features, logits)`` whatever the library.

Safety first, as in ``timm.models._hub``: safetensors weights are preferred; a repo that only has pickle
weights is refused unless ``allow_pickle=True``; remote code never runs unless ``trust_remote_code=True``.

    >>> backbone = load_backbone("timm/resnet18.a1_in1k")          # doctest: +SKIP
    >>> backbone.library, backbone.feature_dim, backbone.num_source_classes
    ('timm', 512, 1000)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import PIL.Image
import torch
from torch import nn

from .errors import ModelLoadError, UnsafeArtifactError

__all__ = ["Backbone", "check_weight_files", "load_backbone", "model_key", "parse_model_id"]

Library = Literal["timm", "transformers"]
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pth.tar", ".ckpt", ".pkl", ".pickle")


@dataclass(eq=False)
class Backbone:
    """A frozen image model used as a feature extractor.

    Attributes:
        model: the ``nn.Module`` in eval mode.
        transform: the model's own preprocessing, PIL image -> float tensor ``[3, H, W]``; picklable, so
            DataLoader workers can run it.
        feature_dim: width d of the features returned by :meth:`forward`.
        num_source_classes: size C_s of the source classifier head, ``None`` without one.
        model_id: the id it was loaded from (``org/name``, a folder, or a timm architecture name).
        revision: the commit sha for Hub models; ``None`` for a local folder or a timm builtin, whose
            weights are then identified by :meth:`weights_hash`.
        library: ``"timm"`` or ``"transformers"``.
    """

    model: nn.Module
    transform: Callable[[PIL.Image.Image], torch.Tensor]
    feature_dim: int
    num_source_classes: int | None
    model_id: str
    revision: str | None
    library: Library
    _weights_hash: str | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Backbone:
        """Move the model to ``device`` (in place) and return ``self``."""
        self.model.to(device)
        return self

    @property
    def preprocess_config(self) -> str:
        """A canonical description of :attr:`transform` (part of the feature cache key)."""
        describe = getattr(self.transform, "describe", None)
        return describe() if callable(describe) else repr(self.transform)

    def weights_hash(self) -> str:
        """sha256 of the parameters and buffers (names, dtypes, shapes, values); computed once."""
        if self._weights_hash is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                t = tensor.detach().to("cpu").contiguous()
                digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            self._weights_hash = digest.hexdigest()
        return self._weights_hash

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features ``[B, d]`` and source logits ``[B, C_s]`` (``None`` without a head) of a batch.

        timm: ``forward_head(forward_features(x), pre_logits=True)`` and the full head for the logits.
        transformers: the base model's ``pooler_output`` if it has one, else the CLS token of
        ``last_hidden_state`` (mean over H, W for 4-D conv outputs); logits from the classification head.
        """
        if self.library == "timm":
            hidden = self.model.forward_features(pixel_values)
            features = self.model.forward_head(hidden, pre_logits=True)
            logits = self.model.forward_head(hidden) if self.num_source_classes else None
            return features.flatten(1), logits
        if self.num_source_classes:
            captured: list[Any] = []
            handle = self.model.base_model.register_forward_hook(lambda _m, _i, out: captured.append(out))
            try:
                logits = self.model(pixel_values=pixel_values, return_dict=True).logits
            finally:
                handle.remove()
            return _pool_hf_output(captured[-1]), logits
        return _pool_hf_output(self.model(pixel_values=pixel_values, return_dict=True)), None


def model_key(model_id: str) -> str:
    """The zoo-wide name of a model: a Hub id's or folder's last component (revision dropped)."""
    return Path(model_id.removeprefix("hf-hub:").split("@", 1)[0].rstrip("/")).name


def load_backbone(
    model_id: str,
    *,
    revision: str | None = None,
    library: Literal["auto", "timm", "transformers"] = "auto",
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
        library: ``"auto"`` reads ``config.json``: an ``architecture`` key means timm, ``model_type``
            means transformers.
        trust_remote_code: allow a transformers repo's own modelling code to run (off by default).
        allow_pickle: allow pickle weights (``pytorch_model.bin``, ``*.pth``) when no safetensors exist.
        device: where to put the model; defaults to CUDA when available, else CPU.

    Raises:
        ModelLoadError: unknown model, no weights, unrecognised config, or the library failing to build it.
        UnsafeArtifactError: only pickle weights and ``allow_pickle=False``, or remote code without
            ``trust_remote_code=True``.
    """
    source, name, at_revision = parse_model_id(model_id)
    revision = revision or at_revision
    if source == "builtin":
        if library == "transformers":
            raise ModelLoadError(f"{model_id!r} is not a folder or a Hub repo id")
        backbone = _load_timm_builtin(name)
    elif source == "local":
        folder = Path(name).expanduser()
        check_weight_files([str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()],
                           allow_pickle=allow_pickle, where=str(folder))
        config = _read_json(folder / "config.json", where=str(folder))
        kind = _detect_library(config, library, where=str(folder))
        if kind == "timm":
            backbone = _load_timm(f"local-dir:{folder}", model_id=str(folder), revision=None)
        else:
            backbone = _load_transformers(str(folder), config, model_id=str(folder), revision=None,
                                          trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    else:
        sha, files = _resolve_model_revision(name, revision)
        check_weight_files(files, allow_pickle=allow_pickle, where=f"{name}@{sha[:8]}")
        config = _read_json(_hub_download(name, "config.json", sha), where=f"{name}@{sha[:8]}")
        kind = _detect_library(config, library, where=name)
        if kind == "timm":
            backbone = _load_timm(f"hf-hub:{name}@{sha}", model_id=name, revision=sha)
        else:
            backbone = _load_transformers(name, config, model_id=name, revision=sha,
                                          trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone.to(device)
    backbone.feature_dim = _probe_feature_dim(backbone)
    return backbone


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


def check_weight_files(files: Iterable[str], *, allow_pickle: bool, where: str) -> None:
    """Refuse pickle-only weights unless allowed; raise :class:`ModelLoadError` when there are none."""
    names = list(files)
    safe = [f for f in names if f.endswith(SAFE_SUFFIXES)]
    pickled = [f for f in names if f.endswith(PICKLE_SUFFIXES) and not f.startswith("optimizer")]
    if safe:
        return
    if pickled:
        if allow_pickle:
            return
        raise UnsafeArtifactError(
            f"{where} only has pickle weights ({', '.join(sorted(pickled))}), which can run arbitrary code "
            "when loaded; pass allow_pickle=True if you trust this repo"
        )
    raise ModelLoadError(f"{where} has no weights file (.safetensors, .bin, .pth); files: {sorted(names)}")


# ----------------------------------------------------------------------------------------------- Hub


def _resolve_model_revision(repo_id: str, revision: str | None) -> tuple[str, list[str]]:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(repo_id, revision=revision)
    except RevisionNotFoundError as exc:
        raise ModelLoadError(f"revision {revision!r} not found in model {repo_id!r}") from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(
            f"model {repo_id!r} not found on the Hub at {constants.ENDPOINT} (or it is gated: `hf auth login`)"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelLoadError(f"cannot reach the Hub for model {repo_id!r}: {exc}") from exc
    return info.sha, [s.rfilename for s in info.siblings or []]


def _hub_download(repo_id: str, filename: str, revision: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except EntryNotFoundError as exc:
        raise ModelLoadError(f"{repo_id}@{revision[:8]} has no {filename}") from exc


def _read_json(path: Path, *, where: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{where} has no config.json") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{where}: config.json is not valid JSON ({exc})") from exc


def _detect_library(config: dict[str, Any], library: str, *, where: str) -> Library:
    if library in ("timm", "transformers"):
        return library  # type: ignore[return-value]
    if library != "auto":
        raise ModelLoadError(f"library must be 'auto', 'timm' or 'transformers', got {library!r}")
    if "architecture" in config or "pretrained_cfg" in config:
        return "timm"
    if "model_type" in config:
        return "transformers"
    raise ModelLoadError(
        f"{where}: config.json has neither 'architecture' (timm) nor 'model_type' (transformers); pass library="
    )


# ---------------------------------------------------------------------------------------------- timm


def _load_timm_builtin(name: str) -> Backbone:
    import timm

    if not timm.is_model(name.split(".")[0]):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ModelLoadError(f"{name!r} is not a timm architecture, a local folder or a Hub repo id{hint}")
    return _load_timm(name, model_id=name, revision=None, pretrained=False)


def _load_timm(spec: str, *, model_id: str, revision: str | None, pretrained: bool = True) -> Backbone:
    import timm
    from timm.data import create_transform, resolve_model_data_config

    try:
        model = timm.create_model(spec, pretrained=pretrained)
    except Exception as exc:
        raise ModelLoadError(f"timm cannot build {model_id!r}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    return Backbone(model, transform, 0, num_classes or None, model_id, revision, "timm")


# -------------------------------------------------------------------------------------- transformers


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


def _load_transformers(path: str, config: dict[str, Any], *, model_id: str, revision: str | None,
                       trust_remote_code: bool, allow_pickle: bool) -> Backbone:
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification

    if config.get("auto_map") and not trust_remote_code:
        raise UnsafeArtifactError(
            f"{model_id} needs its own modelling code (auto_map in config.json); pass trust_remote_code=True "
            "if you trust this repo"
        )
    architectures = config.get("architectures") or []
    classifier = any(a.endswith("ForImageClassification") for a in architectures) and bool(config.get("id2label"))
    auto = AutoModelForImageClassification if classifier else AutoModel
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    # allow_pickle was checked against the file list: only fall back to pickle when no safetensors exist
    kwargs["use_safetensors"] = None if allow_pickle else True
    try:
        model = auto.from_pretrained(path, **kwargs)
        processor = AutoImageProcessor.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"transformers cannot load {model_id!r}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    num_classes = int(model.config.num_labels) if classifier else None
    return Backbone(model, HFImageTransform(processor), 0, num_classes, model_id, revision, "transformers")


def _pool_hf_output(output: Any) -> torch.Tensor:
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
    if hidden.ndim == 4:
        return hidden.mean(dim=(2, 3))
    if hidden.ndim == 3:
        return hidden[:, 0]
    return hidden.flatten(1)


# ------------------------------------------------------------------------------------------- helpers


def _probe_feature_dim(backbone: Backbone) -> int:
    """Feature width from one forward pass of a blank image through the model's own transform."""
    x = backbone.transform(PIL.Image.new("RGB", (64, 64), (128, 128, 128))).unsqueeze(0).to(backbone.device)
    try:
        with torch.inference_mode():
            features, logits = backbone.forward(x)
    except Exception as exc:
        raise ModelLoadError(f"{backbone.model_id}: forward pass failed ({type(exc).__name__}: {exc})") from exc
    if logits is not None and backbone.num_source_classes != logits.shape[-1]:
        backbone.num_source_classes = int(logits.shape[-1])
    return int(features.shape[-1])
